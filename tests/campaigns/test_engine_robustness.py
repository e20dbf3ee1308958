"""The engine under trouble: a pause during a wait, a transient database
error, planning beside other writers, and reasons that tell the truth."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import OperationalError

from campaigns import engine, pacing
from campaigns.engine import campaign_dispatch
from campaigns.engine import plan as engine_plan
from campaigns.engine import run as engine_run
from campaigns.models import Campaign, Message
from campaigns.services import campaign_pause
from providers.backends.base import (
    Capability,
    DeliveryStatus,
    ProviderError,
    SendResult,
    StatusUpdate,
)
from providers.models import CreditTransaction
from tests.campaigns.engine_helpers import (
    RecordingBackend,
    assert_books_balance,
    assert_campaign_consistent,
    timeout_error,
)

pytestmark = pytest.mark.django_db

S = Message.Status
C = Campaign.Status


def test_no_claim_after_a_pause_recorded_while_waiting_for_the_rate_limit(
    sending, account, superuser, clock, monkeypatch
):
    account.requests_per_second = 1
    account.save()
    campaign = sending(150)
    backend = RecordingBackend()
    real_sleep = pacing._sleep

    def sleep_and_pause(seconds):
        # A person pauses while the engine waits for its next pacing slot.
        if backend.calls and Campaign.objects.get(pk=campaign.pk).status == C.SENDING:
            campaign_pause(campaign=Campaign.objects.get(pk=campaign.pk), user=superuser)
        real_sleep(seconds)

    monkeypatch.setattr(pacing, "_sleep", sleep_and_pause)

    run = campaign_dispatch(campaign_id=campaign.pk, backend=backend)

    assert run.state == C.PAUSED
    assert len(backend.calls) == 1  # the batch before the pause, nothing after
    counts = Message.objects.filter(campaign=campaign).values_list("status", flat=True)
    assert sorted(set(counts)) == [S.QUEUED, S.SENT]
    assert Message.objects.filter(campaign=campaign, status=S.SENT).count() == len(backend.calls[0])
    assert_campaign_consistent(campaign)


def test_a_transient_database_error_requeues_the_run_with_backoff(
    sending, clock, enqueue_calls, monkeypatch
):
    campaign = sending(60)
    backend = RecordingBackend()
    real_inserter = engine_plan.plan_inserter
    failures = iter([OperationalError("database is locked")])

    def inserter(campaign_id):
        insert = real_inserter(campaign_id)

        def insert_once_locked(rows):
            error = next(failures, None)
            if error is not None:
                raise error
            return insert(rows)

        return insert_once_locked

    monkeypatch.setattr(engine_plan, "plan_inserter", inserter)
    enqueue_calls.clear()

    run = campaign_dispatch(campaign_id=campaign.pk, backend=backend)

    assert run.state == "db_error"
    assert enqueue_calls == [(campaign.pk, clock.now() + timedelta(seconds=2))]
    campaign.refresh_from_db()
    assert campaign.status == C.SENDING and campaign.dispatch_token is None  # lease handed back

    clock.advance(2)
    assert campaign_dispatch(campaign_id=campaign.pk, backend=backend).state == "done"
    assert len(backend.sent) == 60 and set(backend.sent.values()) == {1}
    assert_campaign_consistent(campaign)
    assert_books_balance(campaign.account)


def test_planning_reads_every_recipient_before_its_first_write(sending, clock, monkeypatch):
    """SQLite refuses a write from a connection whose read cursor is still
    open once another connection has committed: planning must never write
    while the recipient query is open."""
    import campaigns.quote

    campaign = sending(130)
    Campaign.objects.filter(pk=campaign.pk).update(status=C.SENDING)
    monkeypatch.setattr(engine_plan, "PLAN_CHUNK", 50)
    reading = {"open": False}
    real_recipients = campaigns.quote.campaign_recipients

    def watched_recipients(*, campaign):
        reading["open"] = True
        yield from real_recipients(campaign=campaign)
        reading["open"] = False

    writes_while_reading = []
    real_inserter = engine_plan.plan_inserter

    def inserter(campaign_id):
        insert = real_inserter(campaign_id)

        def watched_insert(rows):
            writes_while_reading.append(reading["open"])
            return insert(rows)

        return watched_insert

    monkeypatch.setattr(campaigns.quote, "campaign_recipients", watched_recipients)
    monkeypatch.setattr(engine_plan, "plan_inserter", inserter)

    assert engine_plan.campaign_plan(campaign_id=campaign.pk)

    assert writes_while_reading == [False, False, False]
    assert Message.objects.filter(campaign=campaign).count() == 130


def test_a_message_sent_after_a_failed_attempt_no_longer_reads_failed(sending, clock):
    campaign = sending(20)
    backend = RecordingBackend()
    backend.fail_next = [ProviderError("HTTP 503 provider unavailable", kind="unavailable")]

    campaign_dispatch(campaign_id=campaign.pk, backend=backend)
    retried = Message.objects.filter(campaign=campaign).first()
    assert retried.status == S.QUEUED and retried.status_reason.startswith("Attempt 1 failed")

    clock.advance(3600)
    campaign_dispatch(campaign_id=campaign.pk, backend=backend)

    sent = Message.objects.filter(campaign=campaign)
    assert {m.status for m in sent} == {S.SENT}
    assert [(m.status_reason, m.error_code, m.raw_error) for m in sent] == [("", "", "")] * 20
    assert {m.attempts for m in sent} == {1}  # the history is kept where it belongs


class ReportingBackend(RecordingBackend):
    """Like RecordingBackend, but the provider also reports delivery by poll:
    every message ends ``failed`` and the provider refunds it (only its
    report says so: ``refunds_failed`` is off, as for The SMS Works)."""

    name = "reporting"
    capabilities = frozenset({Capability.LOOKUP_BY_REFERENCE, Capability.DLR_POLL})
    refunds_failed = False

    def lookup_by_reference(self, references, *, numbers=None):
        return [
            SendResult(
                reference=r,
                accepted=True,
                status=DeliveryStatus.FAILED,
                provider_ref=self.accepted[r],
                raw_status="FAILED",
            )
            for r in references
            if r in self.accepted
        ]

    def fetch_statuses(self, refs):
        return [
            StatusUpdate(
                status=DeliveryStatus.FAILED,
                provider_ref=ref.provider_ref,
                reference=ref.reference,
                raw_status="FAILED",
                refunded=True,
            )
            for ref in refs
        ]


def test_a_refund_found_during_recovery_is_applied(sending, account, clock):
    campaign = sending(10)
    backend = ReportingBackend()
    backend.fail_next = [timeout_error()]  # accepted, but the answer is lost
    campaign_dispatch(campaign_id=campaign.pk, backend=backend)
    assert Message.objects.filter(campaign=campaign, status=S.SUBMITTING).count() == 10

    clock.advance(engine.STALE_AFTER.total_seconds() + 1)
    assert campaign_dispatch(campaign_id=campaign.pk, backend=backend).state == "done"

    assert set(Message.objects.filter(campaign=campaign).values_list("status", flat=True)) == {
        S.FAILED
    }
    refunds = CreditTransaction.objects.filter(account=account, kind="refund")
    assert sum(r.amount for r in refunds) == Decimal("10.00")  # as the provider did
    campaign.refresh_from_db()
    # credits_charged is net of refunds: all ten were charged, then refunded.
    assert campaign.credits_charged == Decimal("0.00") and campaign.credits_reserved == 0
    assert_books_balance(account)
    assert sorted(backend.sent.values()) == [1] * 10  # never re-sent


def test_pause_and_resume_while_another_run_holds_the_lease_still_requeues(
    sending, superuser, clock, enqueue_calls
):
    from campaigns.engine import lease as engine_lease
    from campaigns.services import campaign_resume

    campaign = sending(30)
    backend = RecordingBackend()
    campaign_dispatch(campaign_id=campaign.pk, backend=backend, max_batches=0)  # planned
    engine_lease.lease_take(campaign.pk)  # a run is still finishing its batch (or died)
    lease_until = Campaign.objects.get(pk=campaign.pk).dispatch_lease_until
    campaign_pause(campaign=Campaign.objects.get(pk=campaign.pk), user=superuser)
    campaign_resume(campaign=Campaign.objects.get(pk=campaign.pk), user=superuser)
    enqueue_calls.clear()

    run = campaign_dispatch(campaign_id=campaign.pk, backend=backend)  # the resume's run

    assert run.state == "busy"
    assert enqueue_calls == [(campaign.pk, lease_until + timedelta(seconds=2))]
    clock.set(lease_until + timedelta(seconds=2))
    assert campaign_dispatch(campaign_id=campaign.pk, backend=backend).state == "done"
    assert sorted(backend.sent.values()) == [1] * 30


def test_a_run_that_stopped_for_a_pause_hands_over_when_resumed_meanwhile(
    sending, superuser, clock, enqueue_calls, monkeypatch
):
    from campaigns.services import campaign_resume

    campaign = sending(100)

    class PausedAndResumedDuringTheBatch(RecordingBackend):
        def send(self, batch):
            results = super().send(batch)
            if len(self.calls) == 1:
                # The run reads "paused" after this batch; the resume comes
                # in before it hands the lease back.
                campaign_pause(campaign=Campaign.objects.get(pk=campaign.pk), user=superuser)
            return results

    backend = PausedAndResumedDuringTheBatch()
    real_release = engine_run.lease_release

    def resume_then_release(campaign_id, token):
        campaign_resume(campaign=Campaign.objects.get(pk=campaign_id), user=superuser)
        assert campaign_dispatch(campaign_id=campaign_id, backend=backend).state == "busy"
        real_release(campaign_id, token)

    monkeypatch.setattr(engine_run, "lease_release", resume_then_release)
    enqueue_calls.clear()
    run = campaign_dispatch(campaign_id=campaign.pk, backend=backend)
    monkeypatch.setattr(engine_run, "lease_release", real_release)

    assert run.state == "resumed"
    assert (campaign.pk, None) in enqueue_calls  # at once, not at the lease's expiry
    assert campaign_dispatch(campaign_id=campaign.pk, backend=backend).state == "done"
    assert sorted(backend.sent.values()) == [1] * 100


def test_a_stalled_campaign_says_why_and_is_restarted_by_the_sweep(sending, clock, enqueue_calls):
    from campaigns import tasks
    from campaigns.models import CampaignEvent

    campaign = sending(10)
    campaign_dispatch(campaign_id=campaign.pk, backend=RecordingBackend(), max_batches=0)
    # Its worker died a while ago and the watchdog run was lost too.
    Campaign.objects.filter(pk=campaign.pk).update(
        dispatch_lease_until=clock.now() - timedelta(minutes=5), next_dispatch_at=None
    )
    enqueue_calls.clear()

    tasks.recover_stuck_batches()
    tasks.recover_stuck_batches()

    assert enqueue_calls == [(campaign.pk, None), (campaign.pk, None)]
    notes = CampaignEvent.objects.filter(campaign=campaign, action="stalled")
    assert [n.detail for n in notes] == [
        "Stalled: no worker was dispatching it (its worker stopped or its task was lost); "
        "the recovery sweep restarted it."
    ]  # said once, not once a minute
