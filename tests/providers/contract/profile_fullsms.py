"""FullSMS as its doc describes it (provider-docs/fullsms.txt)."""

from __future__ import annotations

import json

import httpx

from providers.backends.fullsms import FullSmsBackend
from tests.providers.contract import fakes
from tests.providers.contract.profiles import ContractProfile, register

TOKEN = "20|YLuvWkTILYKhq365kCuXQW1aCqJe71BbKgzqsGlq"
UNAUTHENTICATED = {"status_code": 403, "message": "Unauthenticated - Missing/Invalid API key"}


def to_numbers(request: httpx.Request, fake: fakes.FakeProvider) -> httpx.Response:
    """``messages/send/to_numbers``: numbers in ``fake.state["invalid"]`` come
    back in ``invalid.numbers``, the others are sent."""
    if request.headers.get("Authorization") != f"Bearer {TOKEN}":
        return httpx.Response(403, json=UNAUTHENTICATED)
    body = json.loads(request.content)
    refused = fake.state.setdefault("invalid", set())
    numbers = body["to_numbers"]
    invalid = [n for n in numbers if n in refused]
    taken = [n for n in numbers if n not in refused]
    fake.accepted.extend("+" + n for n in taken)
    return httpx.Response(
        200,
        json={
            "status": "approved",
            "campaign_id": f"68a6ce95-03b2-11ee-910d-{int(fake.next_id()):012d}",
            "total_sent": len(taken),
            "invalid": {"count": len(invalid), "numbers": invalid},
        },
    )


@register
class FullSmsProfile(ContractProfile):
    key = "fullsms"
    numbers = tuple(f"+9725411111{i:02d}" for i in range(1, 20))
    send_paths = ("/messages/send/to_numbers",)
    not_applicable = {
        case: "the doc has no status, report, webhook or inbound call (provider-docs/README: "
        "'No delivery-report or inbound mechanism is documented')"
        for case in ("status_poll", "status_webhook", "reply_poll", "reply_webhook")
    }

    def install(self, fake: fakes.FakeProvider) -> None:
        fake.route("POST", "/messages/send/to_numbers", to_numbers)

    def fault(self, kind: str, *, retry_after: float = 7) -> fakes.Fault:
        if kind == "unavailable":
            # The doc's own 500 body.
            return fakes.answer(500, {"status_code": 500, "message": "Internal Error"})
        return super().fault(kind, retry_after=retry_after)

    def backend(self) -> FullSmsBackend:
        token = TOKEN if self.good_credentials else "20|wrong"
        return FullSmsBackend(
            credentials={"api_token": token}, transport=self.fake.transport, account_key="contract"
        )

    def refuse(self, number: str) -> None:
        self.fake.state.setdefault("invalid", set()).add(number.lstrip("+"))
