"""TransmitSMS as its doc describes it (provider-docs/transmitsms.txt)."""

from __future__ import annotations

import base64
from datetime import UTC

import httpx

from providers.backends.base import DeliveryStatus
from providers.backends.transmitsms import TransmitSmsBackend
from tests.providers.contract import fakes
from tests.providers.contract.profiles import ContractProfile, Hook, register

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


def sms_sent(request: httpx.Request, fake: fakes.FakeProvider) -> httpx.Response:
    """``get-sms-sent``: the recipients of a send with ``delivery_status``."""
    form = dict(httpx.QueryParams(request.content.decode() or request.url.query.decode()))
    message_id = str(form.get("message_id"))
    numbers = fake.state.setdefault("sends", {}).get(message_id)
    if numbers is None:
        return httpx.Response(400, json=error("NOT_FOUND", "message_id"))
    statuses = fake.state.setdefault("statuses", {})
    recipients = [
        {
            "mobile": int(n),
            "delivery_status": statuses.get((message_id, n), "pending"),
            "datetime": "2026-03-14 09:26:53",
        }
        for n in numbers
    ]
    return httpx.Response(
        200,
        json={"recipients": recipients, "page": {"count": 1, "number": 1}, "error": SUCCESS},
    )


def responses(request: httpx.Request, fake: fakes.FakeProvider) -> httpx.Response:
    """``get-user-sms-responses``: the replies held."""
    held = list(fake.state.get("responses", []))
    return httpx.Response(
        200, json={"responses": held, "page": {"count": 1, "number": 1}, "error": SUCCESS}
    )


@register
class TransmitSmsProfile(ContractProfile):
    key = "transmitsms"
    numbers = tuple(f"+614001234{i:02d}" for i in range(1, 20))
    send_paths = ("/send-sms.json",)

    def install(self, fake: fakes.FakeProvider) -> None:
        fake.route("POST", "/send-sms.json", send_sms)
        fake.route("POST", "/get-sms-sent.json", sms_sent)
        fake.route("GET", "/get-sms-sent.json", sms_sent)
        fake.route("POST", "/get-user-sms-responses.json", responses)
        fake.route("GET", "/get-user-sms-responses.json", responses)

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

    # ---- statuses and replies (README "TransmitSMS": DLR and reply parameters)
    statuses = {
        "delivered": DeliveryStatus.DELIVERED,
        "pending": DeliveryStatus.SENT,
        "soft-bounce": DeliveryStatus.UNDELIVERED,
        "hard-bounce": DeliveryStatus.UNDELIVERED,
    }
    undocumented_status = "carrier-hold"

    def report_status(self, sent, sms, raw) -> None:
        message_id = sent.provider_batch_ref or sent.provider_ref.split("-")[0]
        self.fake.state.setdefault("statuses", {})[(message_id, sms.to.lstrip("+"))] = raw

    def status_webhook(self, sent, sms, raw) -> Hook:
        return Hook(
            method="GET",
            query={
                "message_id": sent.provider_batch_ref or sent.provider_ref.split("-")[0],
                "mobile": sms.to.lstrip("+"),
                "datetime": "2026-03-14 09:26:53",
                "status": raw,
                "user_id": "1",
            },
        )

    def _reply(self, sender, body, at, ref, sent=None) -> dict[str, str]:
        message_id = ""
        if sent is not None:
            message_id = sent.provider_batch_ref or sent.provider_ref.split("-")[0]
        return {
            "message_id": message_id,
            "mobile": sender.lstrip("+"),
            "longcode": "61422222222",
            # UTC, as every TransmitSMS time.
            "datetime_entry": at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "response": body,
            "response_id": ref,
            "is_optout": "no",
        }

    def add_reply(self, *, sender, body, at, ref) -> None:
        self.fake.state.setdefault("responses", []).append(self._reply(sender, body, at, ref))

    def reply_webhook(self, *, sender, body, at, ref, sent=None) -> Hook:
        return Hook(method="GET", query=self._reply(sender, body, at, ref, sent))
