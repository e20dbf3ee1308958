"""The SMS Works as its doc describes it (provider-docs/thesmsworks.txt)."""

from __future__ import annotations

import json

import httpx

from providers.backends.thesmsworks import TheSmsWorksBackend
from tests.providers.contract import fakes
from tests.providers.contract.profiles import ContractProfile, register

CREDENTIALS = {"customerid": "cust-1", "key": "key-1", "secret": "s3cret-1"}
TOKEN = "JWT eyJhbGciOiJIUzI1NiJ9.e30.contract"
NOT_AUTHENTICATED = {"message": "Not authenticated.", "errorCode": 4011, "permanent": True}
INVALID_DESTINATION = {
    "message": "Invalid destination number.",
    "errorCode": 4004,
    "status": 400,
    "permanent": True,
}


def token(request: httpx.Request, fake: fakes.FakeProvider) -> httpx.Response:
    if json.loads(request.content) != CREDENTIALS:
        return httpx.Response(401, json=NOT_AUTHENTICATED)
    return httpx.Response(200, json={"token": TOKEN})


def _refused(fake: fakes.FakeProvider, destination: str) -> bool:
    return destination in fake.state.setdefault("refused", set())


def message_send(request: httpx.Request, fake: fakes.FakeProvider) -> httpx.Response:
    if request.headers.get("Authorization") != TOKEN:
        return httpx.Response(401, json=NOT_AUTHENTICATED)
    body = json.loads(request.content)
    if _refused(fake, body["destination"]):
        return httpx.Response(400, json=INVALID_DESTINATION)
    fake.accepted.append("+" + body["destination"])
    return httpx.Response(
        201,
        json={
            "messageid": fake.next_id("1280325213959"),
            "status": "SENT",
            "credits": 50,
            "creditsUsed": 1,
        },
    )


def batch_send(request: httpx.Request, fake: fakes.FakeProvider) -> httpx.Response:
    if request.headers.get("Authorization") != TOKEN:
        return httpx.Response(401, json=NOT_AUTHENTICATED)
    body = json.loads(request.content)
    if any(_refused(fake, d) for d in body["destinations"]):
        return httpx.Response(400, json=INVALID_DESTINATION)
    fake.accepted.extend("+" + d for d in body["destinations"])
    return httpx.Response(201, json={"batchid": fake.next_id("b-"), "status": "ACCEPTED"})


@register
class TheSmsWorksProfile(ContractProfile):
    key = "thesmsworks"
    send_paths = ("/message/send", "/batch/send", "/message/schedule", "/batch/schedule")
    base_path = "/v1"
    credentials = CREDENTIALS

    def install(self, fake: fakes.FakeProvider) -> None:
        fake.route("POST", "/auth/token", token)
        fake.route("POST", "/message/send", message_send)
        fake.route("POST", "/batch/send", batch_send)

    def backend(self) -> TheSmsWorksBackend:
        credentials = dict(CREDENTIALS)
        if not self.good_credentials:
            credentials["secret"] = "wrong-secret"
        return TheSmsWorksBackend(
            credentials=credentials, transport=self.fake.transport, account_key="contract"
        )

    def refuse(self, number: str) -> None:
        self.fake.state.setdefault("refused", set()).add(number.lstrip("+"))
