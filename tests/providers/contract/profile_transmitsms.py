"""TransmitSMS as its doc describes it (provider-docs/transmitsms.txt)."""

from __future__ import annotations

import base64

import httpx

from providers.backends.transmitsms import TransmitSmsBackend
from tests.providers.contract import fakes
from tests.providers.contract.profiles import ContractProfile, register

CREDENTIALS = {"api_key": "3cbb4a6bd8d4d9cd2d5a5a2b4f0e7f41", "secret": "transmit-secret"}
SUCCESS = {"code": "SUCCESS", "description": "OK"}


def error(code: str, description: str) -> dict:
    return {"error": {"code": code, "description": description}}


def authorised(request: httpx.Request) -> bool:
    token = base64.b64encode(f"{CREDENTIALS['api_key']}:{CREDENTIALS['secret']}".encode())
    return request.headers.get("Authorization") == f"Basic {token.decode()}"


def send_sms(request: httpx.Request, fake: fakes.FakeProvider) -> httpx.Response:
    """``send-sms``: one message_id for every number of the call."""
    if not authorised(request):
        return httpx.Response(401, json=error("AUTH_FAILED", "Invalid api key or secret"))
    form = dict(httpx.QueryParams(request.content.decode()))
    if not form.get("message"):
        return httpx.Response(400, json=error("FIELD_EMPTY", "message"))
    numbers = form.get("to", "").split(",")
    refused = fake.state.setdefault("refused", set())
    if any(n in refused for n in numbers):
        return httpx.Response(400, json=error("FIELD_INVALID", "to: invalid number"))
    fake.accepted.extend("+" + n for n in numbers)
    message_id = int(fake.next_id()) + 3400957
    fake.state.setdefault("sends", {})[str(message_id)] = numbers
    return httpx.Response(
        200,
        json={
            "message_id": message_id,
            "send_at": "2014-01-10 04:08:10",
            "recipients": len(numbers),
            "cost": round(0.07 * len(numbers), 2),
            "sms": 1,
            "error": SUCCESS,
        },
    )


@register
class TransmitSmsProfile(ContractProfile):
    key = "transmitsms"
    numbers = tuple(f"+614001234{i:02d}" for i in range(1, 20))
    send_paths = ("/send-sms.json",)

    def install(self, fake: fakes.FakeProvider) -> None:
        fake.route("POST", "/send-sms.json", send_sms)

    def backend(self) -> TransmitSmsBackend:
        credentials = dict(CREDENTIALS)
        if not self.good_credentials:
            credentials["secret"] = "wrong-secret"
        return TransmitSmsBackend(
            credentials=credentials, transport=self.fake.transport, account_key="contract"
        )

    def refuse(self, number: str) -> None:
        self.fake.state.setdefault("refused", set()).add(number.lstrip("+"))

    def fault(self, kind: str, *, retry_after: float = 7) -> fakes.Fault:
        if kind == "rate_limit":
            return fakes.answer(
                429,
                error("OVER_LIMIT", "You have exceeded the request limit."),
                headers={"Retry-After": str(retry_after)},
            )
        return super().fault(kind, retry_after=retry_after)
