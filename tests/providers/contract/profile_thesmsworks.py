"""The SMS Works as its doc describes it (provider-docs/thesmsworks.txt)."""

from __future__ import annotations

import json
from datetime import UTC

import httpx

from providers.backends.base import DeliveryStatus
from providers.backends.thesmsworks import TheSmsWorksBackend
from tests.providers.contract import fakes
from tests.providers.contract.profiles import ContractProfile, Hook, register

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


def messages_query(request: httpx.Request, fake: fakes.FakeProvider) -> httpx.Response:
    """``POST /messages``: the search. ``status: INCOMING`` lists the replies
    held; a ``tag`` search finds nothing here."""
    if request.headers.get("Authorization") != TOKEN:
        return httpx.Response(401, json=NOT_AUTHENTICATED)
    query = json.loads(request.content)
    if query.get("status") == "INCOMING":
        return httpx.Response(200, json=list(fake.state.get("incoming", [])))
    return httpx.Response(200, json=[])


@register
class TheSmsWorksProfile(ContractProfile):
    key = "thesmsworks"
    send_paths = ("/message/send", "/batch/send", "/message/schedule", "/batch/schedule")
    base_path = "/v1"
    credentials = CREDENTIALS
    numbers = tuple(f"+4479460000{i:02d}" for i in range(10, 29))

    def install(self, fake: fakes.FakeProvider) -> None:
        fake.route("POST", "/auth/token", token)
        fake.route("POST", "/message/send", message_send)
        fake.route("POST", "/batch/send", batch_send)
        fake.route("POST", "/messages", messages_query)

    def backend(self) -> TheSmsWorksBackend:
        credentials = dict(CREDENTIALS)
        if not self.good_credentials:
            credentials["secret"] = "wrong-secret"
        return TheSmsWorksBackend(
            credentials=credentials, transport=self.fake.transport, account_key="contract"
        )

    def refuse(self, number: str) -> None:
        self.fake.state.setdefault("refused", set()).add(number.lstrip("+"))

    # ---- statuses and replies (doc "Delivery Reports", "Incoming SMS", README)
    statuses = {
        "ACCEPTED": DeliveryStatus.SENT,
        "SENT": DeliveryStatus.SENT,
        "DELIVERED": DeliveryStatus.DELIVERED,
        "UNDELIVERED": DeliveryStatus.UNDELIVERED,
        "UNDELIVERABLE": DeliveryStatus.UNDELIVERED,
        "EXPIRED": DeliveryStatus.EXPIRED,
        "FAILED": DeliveryStatus.FAILED,
        "REJECTED": DeliveryStatus.REJECTED,
        "SCHEDULED": DeliveryStatus.QUEUED,
    }
    undocumented_status = "PARTIALLY_DELIVERED"
    webhook_reply_times = False  # the doc's incoming object has no time

    def _report(self, sent, sms, raw) -> dict:
        # A batch member has its own messageid at the provider (we only
        # know the batchid): the report carries it.
        messageid = sent.provider_ref or f"{sent.provider_batch_ref}{sms.to[-4:]}"
        return {
            "messageid": messageid,
            "status": raw,
            "destination": int(sms.to.lstrip("+")),
            "tag": sms.reference,
            "content": sms.body,
            "modified": "2026-03-14T09:26:53.229Z",
        }

    def report_status(self, sent, sms, raw) -> None:
        report = self._report(sent, sms, raw)
        path = (
            f"/batch/{sent.provider_batch_ref}"
            if sent.provider_batch_ref
            else f"/messages/{sent.provider_ref}"
        )
        answer = [report] if sent.provider_batch_ref else report
        self.fake.route("GET", path, lambda request, fake: httpx.Response(200, json=answer))

    def status_webhook(self, sent, sms, raw) -> Hook:
        return Hook(body=json.dumps(self._report(sent, sms, raw)).encode())

    def add_reply(self, *, sender, body, at, ref) -> None:
        self.fake.state.setdefault("incoming", []).append(
            {
                "messageid": ref,
                "from": sender.lstrip("+"),
                "to": "447777777778",
                "content": body,
                "messagetype": "incoming",
                "status": "INCOMING",
                "created": at.astimezone(UTC)
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z"),
            }
        )

    def reply_webhook(self, *, sender, body, at, ref, sent=None) -> Hook:
        incoming = {
            "content": body,
            "from": sender.lstrip("+"),
            "messageid": ref,
            "messagetype": "incoming",
            "to": "447777777778",
            "parts": 1,
        }
        return Hook(body=json.dumps(incoming).encode())
