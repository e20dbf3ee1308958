"""The simulator has no HTTP: faults are its knobs."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Sequence

from providers.backends.base import DeliveryStatus, OutboundSms
from providers.backends.simulator import SimulatorBackend
from tests.providers.contract.profiles import ContractProfile, Hook, register

_accounts = itertools.count(1)


@register
class SimulatorProfile(ContractProfile):
    key = "simulator"
    # Numbers a reply can be read from (the default +447700900xxx are
    # fiction numbers, which phone normalisation refuses).
    numbers = tuple(f"+614001234{i:02d}" for i in range(1, 20))
    not_applicable = {
        "after_accepted": "one simulated call carries the whole batch",
        "credentials": "the simulator has no credentials",
        "connect": "the simulator makes no network connection",
        "echo": "the simulator has no credentials to leak",
        "reply_poll": "its replies are drawn from the seed (reply_rate, stop_share): their "
        "text and time cannot be chosen; tests/providers/test_simulator.py covers them",
    }
    # Its own words (module docstring, RAW_STATUS); a receipt that never
    # comes (mix "unknown") is reported NO_RECEIPT.
    statuses = {
        "DELIVERED": DeliveryStatus.DELIVERED,
        "UNDELIVERED": DeliveryStatus.UNDELIVERED,
        "EXPIRED": DeliveryStatus.EXPIRED,
        "REJECTED": DeliveryStatus.REJECTED,
        "FAILED": DeliveryStatus.FAILED,
    }
    undocumented_status = "NO_RECEIPT"
    webhook_reply_times = False  # {"type": "reply"} carries no time

    def install(self, fake) -> None:
        self.knobs: dict = {
            "seed": 3,
            "initial_balance": 1000,
            "reply_rate": 0,
            "delivery_delay": 0,
        }
        self.account = f"contract-{next(_accounts)}"

    def backend(self) -> SimulatorBackend:
        return SimulatorBackend(credentials=dict(self.knobs), account_key=self.account)

    def refuse(self, number: str) -> None:
        self.knobs.setdefault("fail_numbers", []).append(number)

    def fail_send(self, kind: str, *, after: int = 0, retry_after: float = 7) -> None:
        assert after == 0, "the simulator fails every call of a knob"
        self.knobs.update(
            {
                "rate_limit": {"rate_limited": retry_after},
                "unavailable": {"unavailable": True},
                "timeout": {"timeout_rate": 1},
            }[kind]
        )

    def accepted(self, batch: Sequence[OutboundSms]) -> Counter[str]:
        by_ref = {sms.reference: sms.to for sms in batch}
        # Without the fault knobs, which would refuse this look-up too.
        clean = {
            k: self.knobs[k] for k in ("seed", "initial_balance", "reply_rate", "delivery_delay")
        }
        reader = SimulatorBackend(credentials=clean, account_key=self.account)
        found = reader.lookup_by_reference(list(by_ref))
        return Counter(by_ref[r.reference] for r in found if r.accepted)

    def report_status(self, sent, sms, raw) -> None:
        # The outcome is drawn against the mix when polled: one outcome only.
        self.knobs["mix"] = {"unknown" if raw == "NO_RECEIPT" else raw.lower(): 1}

    def status_webhook(self, sent, sms, raw) -> Hook:
        event = {"type": "status", "provider_ref": sent.provider_ref, "status": raw}
        return Hook(body=json.dumps(event).encode())

    def reply_webhook(self, *, sender, body, at, ref, sent=None) -> Hook:
        event = {"type": "reply", "from": sender, "body": body, "id": ref}
        return Hook(body=json.dumps(event).encode())
