"""The simulator has no HTTP: faults are its knobs."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence

from providers.backends.base import OutboundSms
from providers.backends.simulator import SimulatorBackend
from tests.providers.contract.profiles import ContractProfile, register

_accounts = itertools.count(1)


@register
class SimulatorProfile(ContractProfile):
    key = "simulator"
    not_applicable = {
        "after_accepted": "one simulated call carries the whole batch",
        "credentials": "the simulator has no credentials",
        "connect": "the simulator makes no network connection",
        "echo": "the simulator has no credentials to leak",
    }

    def install(self, fake) -> None:
        self.knobs: dict = {"seed": 3, "initial_balance": 1000, "reply_rate": 0}
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
        clean = {k: self.knobs[k] for k in ("seed", "initial_balance", "reply_rate")}
        reader = SimulatorBackend(credentials=clean, account_key=self.account)
        found = reader.lookup_by_reference(list(by_ref))
        return Counter(by_ref[r.reference] for r in found if r.accepted)
