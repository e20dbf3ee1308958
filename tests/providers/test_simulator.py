"""The simulator: deterministic outcomes, replies with STOP, every capability.

Simulated provider state lives in the cache (the database cache on SQLite),
hence the database marker.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.test import RequestFactory

from providers.backends.base import (
    Capability,
    DeliveryStatus,
    InboundSms,
    OutboundSms,
    ProviderError,
    ProviderRef,
    SendOutcome,
    SendResult,
    StatusUpdate,
    WebhookError,
)
from providers.backends.simulator import SimulatorBackend

pytestmark = pytest.mark.django_db

T0 = 1_900_000_000.0  # 2030-03-17, a fixed "now"
ALL_OUTCOMES = {
    "delivered": 0.5,
    "undelivered": 0.1,
    "expired": 0.1,
    "rejected": 0.1,
    "failed": 0.1,
    "unknown": 0.1,
}


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sim(clock: Clock | None = None, account: str = "1", **knobs) -> SimulatorBackend:
    # Credits at the simulated provider unless a test says otherwise (it starts at 0).
    knobs.setdefault("initial_balance", 1000)
    return SimulatorBackend(
        credentials={"seed": 7, **knobs}, account_key=account, clock=clock or Clock()
    )


def batch(n: int, prefix: str = "m", **kw) -> list[OutboundSms]:
    return [
        OutboundSms(reference=f"{prefix}{i}", to=f"+6140{i:07d}", body="Hello", **kw)
        for i in range(n)
    ]


def refs(results: list[SendResult]) -> list[ProviderRef]:
    return [
        ProviderRef(
            provider_ref=r.provider_ref,
            provider_batch_ref=r.provider_batch_ref,
            reference=r.reference,
        )
        for r in results
        if r.accepted
    ]


def final_statuses(backend: SimulatorBackend, clock: Clock, results) -> dict[str, DeliveryStatus]:
    clock.now += 3600
    return {u.reference: u.status for u in backend.fetch_statuses(refs(results))}


def test_every_status_is_produced_under_a_fixed_seed():
    clock = Clock()
    backend = sim(clock, mix=ALL_OUTCOMES, delivery_delay=10)
    now_results = backend.send(batch(60))
    later = backend.send(batch(1, prefix="s", send_at=datetime.fromtimestamp(T0 + 600, UTC)))
    assert {r.status for r in now_results} == {DeliveryStatus.SENT}
    assert later[0].status == DeliveryStatus.QUEUED
    seen = {u.status for u in backend.fetch_statuses(refs(now_results + later))}
    assert seen == {DeliveryStatus.SENT, DeliveryStatus.QUEUED}
    finals = set(final_statuses(backend, clock, now_results).values())
    assert finals == {
        DeliveryStatus.DELIVERED,
        DeliveryStatus.UNDELIVERED,
        DeliveryStatus.EXPIRED,
        DeliveryStatus.REJECTED,
        DeliveryStatus.FAILED,
        DeliveryStatus.UNKNOWN,
    }


def test_same_seed_same_outcomes_other_seed_other_outcomes():
    def outcomes(seed, account):
        clock = Clock()
        backend = sim(clock, account=account, seed=seed, mix=ALL_OUTCOMES)
        return final_statuses(backend, clock, backend.send(batch(40)))

    first = outcomes(7, "a")
    assert outcomes(7, "b") == first
    assert outcomes(8, "c") != first


def test_outcome_depends_on_our_reference_not_on_when_it_was_sent():
    clock = Clock()
    backend = sim(clock, mix=ALL_OUTCOMES)
    first = final_statuses(backend, clock, backend.send(batch(20)))
    again = final_statuses(backend, clock, backend.send(batch(20)))
    assert again == first


def test_default_mix_is_mostly_delivered_with_a_few_failures():
    clock = Clock()
    backend = sim(clock)
    counts = Counter(final_statuses(backend, clock, backend.send(batch(300))).values())
    assert counts[DeliveryStatus.DELIVERED] > 240
    assert counts[DeliveryStatus.UNDELIVERED] + counts[DeliveryStatus.EXPIRED] > 0
    assert sum(counts.values()) == 300


def test_replies_include_stop_arrive_after_delivery_and_come_once():
    clock = Clock()
    backend = sim(clock, reply_rate=0.5, stop_share=0.3, mix={"delivered": 1})
    results = backend.send(
        [
            OutboundSms(reference=f"r{i}", to=f"+6141{i:07d}", body="Hi", sender="+61400000999")
            for i in range(40)
        ]
    )
    assert backend.fetch_replies() == []  # nothing delivered yet
    clock.now += 3600
    replies = backend.fetch_replies()
    assert "STOP" in {r.body for r in replies}
    assert 5 < len(replies) < 40
    sent_to = {r.reference: r.provider_ref for r in results}
    for reply in replies:
        assert isinstance(reply, InboundSms)
        assert reply.in_reply_to_provider_ref in sent_to.values()
        assert reply.to_number == "+61400000999"
        assert reply.provider_ref.startswith("simr-")
    assert backend.fetch_replies() == []


def test_nobody_replies_to_a_message_that_was_not_delivered():
    clock = Clock()
    backend = sim(clock, reply_rate=1, mix={"undelivered": 1})
    backend.send(batch(10))
    clock.now += 3600
    assert backend.fetch_replies() == []


def test_fail_numbers_are_rejected_permanently_and_others_go():
    backend = sim(fail_numbers=["+61400000001"])
    ok, refused = backend.send(
        [
            OutboundSms(reference="a", to="+61400000002", body="x"),
            OutboundSms(reference="b", to="+61400000001", body="x"),
        ]
    )
    assert ok.accepted
    assert (refused.accepted, refused.status, refused.permanent, refused.error_code) == (
        False,
        DeliveryStatus.REJECTED,
        True,
        "SIM-REJECTED",
    )


def only(results: list[SendResult]) -> SendResult:
    """The one shape every result of ``results`` shares."""
    shapes = {(r.outcome, r.error_kind, r.permanent, r.retry_after) for r in results}
    assert len(shapes) == 1, shapes
    return results[0]


def test_unavailable_and_error_rate_refuse_transiently():
    result = only(sim(unavailable=True).send(batch(2)))
    assert (result.outcome, result.error_kind, result.retry_after) == (
        SendOutcome.REFUSED_TRANSIENT,
        "unavailable",
        30.0,
    )
    result = only(sim(error_rate=1).send(batch(2)))
    assert (result.outcome, result.error_kind) == (SendOutcome.REFUSED_TRANSIENT, "unavailable")


def test_rate_limited_knob_holds_messages_back_with_retry_after():
    result = only(sim(rate_limited=7).send(batch(2)))
    assert (result.outcome, result.error_kind, result.retry_after) == (
        SendOutcome.NOT_ATTEMPTED,
        "rate_limit",
        7.0,
    )


def test_error_rate_fails_some_calls_and_retries_eventually_succeed():
    backend = sim(error_rate=0.5)
    outcomes = {only(backend.send(batch(1))).outcome for _ in range(12)}
    assert outcomes == {SendOutcome.ACCEPTED, SendOutcome.REFUSED_TRANSIENT}


def test_a_lost_answer_can_be_reconciled_by_reference():
    clock = Clock()
    backend = sim(clock, timeout_rate=1)
    result = only(backend.send(batch(3)))
    assert (result.outcome, result.error_kind, result.outcome_unknown) == (
        SendOutcome.UNKNOWN,
        "timeout",
        True,
    )
    found = backend.lookup_by_reference(["m0", "m1", "m2", "never-sent"])
    assert sorted(r.reference for r in found) == ["m0", "m1", "m2"]
    assert all(r.accepted and r.provider_ref.startswith("sim-") for r in found)
    assert {r.status for r in found} == {DeliveryStatus.SENT}


def test_balance_is_charged_per_segment_and_refunded_once_for_failures():
    clock = Clock()
    backend = sim(clock, initial_balance=100, mix={"undelivered": 1})
    long_body = "x" * 200  # two segments
    results = backend.send(
        [
            OutboundSms(reference="a", to="+61400000001", body="short"),
            OutboundSms(reference="b", to="+61400000002", body=long_body),
        ]
    )
    assert [r.credits for r in results] == [Decimal(1), Decimal(2)]
    assert backend.balance() == Decimal(97)
    clock.now += 3600
    updates = backend.fetch_statuses(refs(results))
    assert all(u.refunded and u.status == DeliveryStatus.UNDELIVERED for u in updates)
    backend.fetch_statuses(refs(results))  # the same reports again
    assert backend.balance() == Decimal(100)


def test_the_provider_balance_starts_at_zero_and_grows_only_with_top_ups():
    # Like a new account at a real provider: what it holds is what we bought,
    # so reconcile compares like with like.
    backend = SimulatorBackend(credentials={"seed": 7}, account_key="9", clock=Clock())
    assert backend.balance() == Decimal(0)
    result = only(backend.send(batch(1)))
    assert (result.outcome, result.error_kind) == (SendOutcome.NOT_ATTEMPTED, "credit")
    assert "has 0 credits and this batch needs 1" in result.error_message
    assert backend.top_up(Decimal("25")) == Decimal(25)
    backend.send(batch(3))
    assert backend.balance() == Decimal(22)


def test_initial_balance_is_a_knob_and_balance_its_old_name():
    assert sim(initial_balance="12.50").balance() == Decimal("12.50")
    old = SimulatorBackend(credentials={"balance": 7}, account_key="2", clock=Clock())
    assert old.balance() == Decimal(7)


def test_the_provider_charges_and_refunds_its_price_per_segment_by_country():
    clock = Clock()
    backend = sim(
        clock,
        initial_balance=100,
        credits_per_segment="1.5",
        country_rates={"gb": "2"},
        mix={"undelivered": 1},
    )
    results = backend.send(
        [
            OutboundSms(reference="a", to="+61400000001", body="short"),
            OutboundSms(reference="b", to="+447400123190", body="x" * 200),  # 2 segments
        ]
    )
    assert [r.credits for r in results] == [Decimal("1.5"), Decimal(4)]
    assert backend.balance() == Decimal("94.5")
    clock.now += 3600
    backend.fetch_statuses(refs(results))
    backend.fetch_statuses(refs(results))  # the same reports again
    assert backend.balance() == Decimal(100)


def test_a_balance_too_low_refuses_the_whole_call_and_charges_nothing():
    backend = sim(initial_balance=2)
    result = only(backend.send(batch(3)))
    assert (result.outcome, result.error_kind) == (SendOutcome.NOT_ATTEMPTED, "credit")
    assert "has 2 credits and this batch needs 3" in result.error_message
    assert backend.balance() == Decimal(2)
    assert backend.lookup_by_reference(["m0"]) == []
    assert backend.top_up(10) == Decimal(12)
    assert len(backend.send(batch(3))) == 3


def test_every_capability_is_supported_without_any_network():
    backend = sim()
    assert backend.capabilities == frozenset(Capability)
    backend.optouts_add(["+61400000005"])
    assert [o.number for o in backend.optouts_list()] == ["+61400000005"]
    [refused] = backend.send([OutboundSms(reference="o", to="+61400000005", body="x")])
    assert (refused.outcome, refused.error_kind, refused.error_code) == (
        SendOutcome.REFUSED_PERMANENT,
        "opted_out",
        "SIM-OPTED-OUT",
    )
    backend.optouts_remove(["+61400000005"])
    assert backend.optouts_list() == []
    assert backend._client is None  # never built an HTTP client


def test_state_is_per_account():
    backend = sim(account="1", initial_balance=10)
    other = sim(account="2", initial_balance=10)
    backend.send(batch(3))
    assert (backend.balance(), other.balance()) == (Decimal(7), Decimal(10))


def test_webhook_lets_staff_play_the_provider():
    body = json.dumps(
        [
            {"type": "status", "provider_ref": "sim-abc-1-1-d", "status": "delivered"},
            {"type": "status", "provider_ref": "sim-abc-1-1-e", "status": "bounced"},
            {"type": "reply", "from": "+61400000001", "body": "STOP", "id": "r1"},
        ]
    )
    request = RequestFactory().post("/hooks/simulator/t/", body, content_type="application/json")
    delivered, bounced, reply = sim().parse_webhook(request)
    assert isinstance(delivered, StatusUpdate)
    assert delivered.status == DeliveryStatus.DELIVERED
    assert (bounced.status, bounced.raw_status) == (DeliveryStatus.UNKNOWN, "bounced")
    assert (reply.from_number, reply.body, reply.provider_ref) == ("+61400000001", "STOP", "r1")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "not JSON"),
        ('{"type": "status"}', "needs 'provider_ref' and 'status'"),
        ('{"type": "reply", "from": "nobody"}', "needs 'from'"),
        ('{"type": "other"}', "'type' must be"),
        ("[1]", "JSON object"),
    ],
)
def test_malformed_webhook_bodies_are_refused_with_a_reason(body, reason):
    request = RequestFactory().post("/hooks/simulator/t/", body, content_type="application/json")
    with pytest.raises(WebhookError, match=reason):
        sim().parse_webhook(request)


@pytest.mark.parametrize(
    ("knobs", "reason"),
    [
        ({"mix": {"lost": 1}}, "unknown outcome"),
        ({"mix": {"delivered": 0}}, "add up to more than zero"),
        ({"reply_rate": 2}, "'reply_rate' must be between"),
        ({"delivery_delay": "soon"}, "'delivery_delay' must be a number"),
        ({"unavailable": "yes"}, "'unavailable' must be true or false"),
        ({"latency": 60}, "'latency' must be between"),
        ({"initial_balance": "lots"}, "'initial_balance' must be a number"),
        ({"initial_balance": -5}, "'initial_balance' must be 0 or more"),
        ({"credits_per_segment": 0}, "'credits_per_segment' must be more than zero"),
        ({"country_rates": {"GB": "x"}}, "'country_rates' GB must be a number"),
        ({"country_rates": {"United Kingdom": 2}}, "two-letter country codes"),
        ({"country_rates": ["GB"]}, "'country_rates' must be an object"),
    ],
)
def test_bad_knobs_are_a_permanent_error_naming_the_knob(knobs, reason):
    result = only(sim(**knobs).send(batch(2)))
    assert (result.outcome, result.error_kind) == (SendOutcome.REFUSED_PERMANENT, "validation")
    assert reason in result.error_message
    with pytest.raises(ProviderError, match=reason) as caught:
        sim(**knobs).balance()
    assert (caught.value.permanent, caught.value.kind) == (True, "validation")


def test_latency_is_spent_through_the_injected_sleep():
    slept = []
    backend = SimulatorBackend(
        credentials={"latency": 2, "initial_balance": 1}, account_key="1", sleep=slept.append
    )
    backend.send(batch(1))
    assert slept == [2.0]
