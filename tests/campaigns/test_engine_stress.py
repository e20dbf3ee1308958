"""Exactly once under stress: a hypothesis state machine interleaving
dispatch steps, pause, resume, cancel, provider errors, a worker dying
between "provider accepted" and "recorded", the same task delivered twice
(and at once) and STOP replies arriving mid-campaign.

Invariants after every step: no number is sent to twice, nobody is sent to
after their STOP, counters match the messages, the reservation matches what
is still open and the ledger explains every balance. At the end (time passes,
the recovery task and the dispatch task run until the campaign is finished):
every recipient neither cancelled nor opted out was sent to exactly once,
and nothing is left reserved.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from campaigns import engine, pacing
from campaigns.engine import batch_claim, batch_send, batches_recover, campaign_dispatch
from campaigns.engine import clock as engine_clock
from campaigns.engine import enqueue as engine_enqueue
from campaigns.engine import lease as engine_lease
from campaigns.models import Campaign, Message
from campaigns.reports import inbound_apply
from campaigns.services import (
    CampaignError,
    campaign_cancel,
    campaign_pause,
    campaign_resume,
    campaign_send_now,
)
from providers.backends.base import InboundSms, ProviderError
from providers.models import ProviderAccount
from providers.services import credits_top_up
from tests.campaigns.engine_helpers import (
    FakeClock,
    RecordingBackend,
    assert_books_balance,
    assert_campaign_consistent,
    make_campaign,
    new_phones,
    timeout_error,
)

RECIPIENTS = 240
C = Campaign.Status
S = Message.Status
_ids = itertools.count(1)


class StressBackend(RecordingBackend):
    max_batch = 40


class CampaignMachine(RuleBasedStateMachine):
    clock: FakeClock  # set by the test

    def __init__(self) -> None:
        super().__init__()
        n = next(_ids)
        self.account = ProviderAccount.objects.create(
            name=f"stress {n}", requests_per_second=0, messages_per_second=0
        )
        credits_top_up(account=self.account, amount=Decimal("1000"))
        self.account.refresh_from_db()
        self.phones = new_phones(RECIPIENTS)
        self.campaign = make_campaign(account=self.account, phones=self.phones)
        self.user = None
        campaign_send_now(campaign=self.campaign, user=self.user)
        self.backend = StressBackend()
        self.sent_at_stop: dict[str, int] = {}

    # ------------------------------------------------------------ helpers
    def status(self) -> str:
        return Campaign.objects.values_list("status", flat=True).get(pk=self.campaign.pk)

    def refreshed(self) -> Campaign:
        return Campaign.objects.select_related("account").get(pk=self.campaign.pk)

    # -------------------------------------------------------------- rules
    @rule()
    def dispatch_one_batch(self):
        campaign_dispatch(campaign_id=self.campaign.pk, backend=self.backend, max_batches=1)

    @rule()
    def dispatch_a_whole_run(self):
        campaign_dispatch(campaign_id=self.campaign.pk, backend=self.backend)

    @rule()
    def same_task_delivered_twice(self):
        for _ in range(2):
            campaign_dispatch(campaign_id=self.campaign.pk, backend=self.backend, max_batches=2)

    @rule()
    def same_task_while_another_worker_holds_it(self):
        token = engine_lease.lease_take(self.campaign.pk)
        if token is None:
            return
        before = len(self.backend.calls)
        run = campaign_dispatch(campaign_id=self.campaign.pk, backend=self.backend)
        assert run.state in ("busy", C.PAUSED, C.CANCELLED, C.COMPLETED, C.FAILED)
        assert len(self.backend.calls) == before
        engine_lease.lease_release(self.campaign.pk, token)

    @rule()
    def worker_dies_after_the_provider_accepted(self):
        campaign = self.refreshed()
        if campaign.status != C.SENDING or not campaign.planned:
            return
        batch = batch_claim(campaign=campaign, size=StressBackend.max_batch)
        if batch is not None and batch.rows:
            batch_send(campaign=campaign, batch=batch, backend=self.backend)  # never recorded

    @rule()
    def worker_dies_after_claiming(self):
        campaign = self.refreshed()
        if campaign.status == C.SENDING and campaign.planned:
            batch_claim(campaign=campaign, size=7)  # never sent

    @rule(error=st.sampled_from(["timeout", "503", "429", "auth"]))
    def provider_fails_next_call(self, error):
        self.backend.fail_next.append(
            {
                "timeout": timeout_error(),
                "503": ProviderError("HTTP 503", code="503", kind="unavailable"),
                "429": ProviderError("HTTP 429", code="429", kind="rate_limit", retry_after=2.0),
                "auth": ProviderError("HTTP 401", code="401", kind="auth", permanent=True),
            }[error]
        )

    @rule(seconds=st.sampled_from([1.0, 30.0, engine.STALE_AFTER.total_seconds() + 1]))
    def time_passes(self, seconds):
        self.clock.advance(seconds)

    @rule()
    def recovery_task_runs(self):
        batches_recover(backend=self.backend)

    @rule()
    def pause(self):
        with contextlib.suppress(CampaignError):
            campaign_pause(campaign=self.refreshed(), user=self.user)

    @rule()
    def resume(self):
        with contextlib.suppress(CampaignError):
            campaign_resume(campaign=self.refreshed(), user=self.user)

    @rule(chance=st.integers(0, 9))
    def cancel(self, chance):
        if chance == 0:  # rarely: it ends the story
            with contextlib.suppress(CampaignError):
                campaign_cancel(campaign=self.refreshed(), user=self.user)

    @rule(index=st.integers(0, RECIPIENTS - 1), text=st.sampled_from(["STOP", " stop! ", "Quit"]))
    def stop_reply_arrives(self, index, text):
        phone = self.phones[index]
        inbound_apply(
            account=self.account,
            messages=[
                InboundSms(
                    from_number=phone,
                    body=text,
                    received_at=self.clock.now(),
                    provider_ref=f"r{next(_ids)}",
                )
            ],
        )
        self.sent_at_stop.setdefault(phone, self.backend.sent[phone])

    # --------------------------------------------------------- invariants
    @invariant()
    def nobody_is_sent_to_twice(self):
        assert all(n <= 1 for n in self.backend.sent.values()), self.backend.sent.most_common(3)

    @invariant()
    def nobody_is_sent_to_after_stop(self):
        for phone, before in self.sent_at_stop.items():
            assert self.backend.sent[phone] == before, phone

    @invariant()
    def the_books_balance(self):
        assert_books_balance(self.account)
        assert_campaign_consistent(self.campaign)

    # --------------------------------------------------------------- end
    def teardown(self):
        self.backend.fail_next.clear()
        for _ in range(60):
            status = self.status()
            if (
                status in (C.COMPLETED, C.CANCELLED, C.FAILED)
                and not Message.objects.filter(campaign=self.campaign, status=S.SUBMITTING).exists()
            ):
                break
            if status == C.PAUSED:
                campaign_resume(campaign=self.refreshed(), user=self.user)
            self.clock.advance(engine.STALE_AFTER.total_seconds() + engine.BACKOFF_MAX)
            batches_recover(backend=self.backend)
            campaign_dispatch(campaign_id=self.campaign.pk, backend=self.backend)
        status = self.status()
        assert status in (C.COMPLETED, C.CANCELLED), status

        for phone, message_status in Message.objects.filter(campaign=self.campaign).values_list(
            "phone", "status"
        ):
            sends = self.backend.sent[phone]
            if message_status in (S.CANCELLED, S.SKIPPED):
                assert sends == 0, (phone, message_status)
            else:
                assert message_status == S.SENT and sends == 1, (phone, message_status, sends)
            if message_status == S.SKIPPED:
                assert phone in self.sent_at_stop
        if status == C.COMPLETED:
            planned = set(
                Message.objects.filter(campaign=self.campaign).values_list("phone", flat=True)
            )
            never_planned = set(self.phones) - planned
            assert never_planned <= set(self.sent_at_stop)  # opted out before planning
        campaign = self.refreshed()
        assert campaign.credits_reserved == 0
        self.account.refresh_from_db()
        assert self.account.reserved == 0
        assert campaign.credits_charged == Decimal(sum(self.backend.sent.values()))
        assert_books_balance(self.account)
        assert_campaign_consistent(campaign)


@pytest.mark.django_db
def test_every_recipient_exactly_once_whatever_happens(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(engine_clock, "now", clock.now)
    monkeypatch.setattr(engine_clock, "monotonic", clock.time)
    monkeypatch.setattr(engine_enqueue, "_enqueue", lambda campaign_id, at: None)
    monkeypatch.setattr(pacing, "_now", clock.time)
    monkeypatch.setattr(pacing, "_sleep", clock.sleep)
    CampaignMachine.clock = clock
    run_state_machine_as_test(
        CampaignMachine,
        settings=settings(
            max_examples=int(os.environ.get("ENGINE_STRESS_EXAMPLES", "25")),
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )


def test_the_stress_machine_would_catch_a_double_send():
    """The invariant is real: a backend that sends a number twice fails it."""
    machine = CampaignMachine.__new__(CampaignMachine)
    machine.backend = StressBackend()
    machine.backend.sent["+61400000001"] = 2
    with pytest.raises(AssertionError):
        machine.nobody_is_sent_to_twice()
