"""Planning and dispatch: exactly once, credits, failures, crash recovery."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from decimal import Decimal

import pytest

from campaigns import engine
from campaigns.engine import (
    Batch,
    batch_claim,
    batch_record,
    batch_send,
    batches_recover,
    campaign_dispatch,
    campaign_plan,
)
from campaigns.engine import lease as engine_lease
from campaigns.engine import plan as engine_plan
from campaigns.models import Campaign, CampaignEvent, Message
from campaigns.services import campaign_send_now, messages_resolve_unknown
from contacts.models import OptOut
from providers.backends.base import ProviderError
from providers.models import CreditTransaction
from tests.campaigns.engine_helpers import (
    BlindBackend,
    RecordingBackend,
    assert_books_balance,
    assert_campaign_consistent,
    make_campaign,
    new_phones,
    timeout_error,
)

pytestmark = pytest.mark.django_db

S = Message.Status
C = Campaign.Status


def statuses(campaign) -> dict[str, int]:
    from collections import Counter

    return dict(Counter(Message.objects.filter(campaign=campaign).values_list("status", flat=True)))


def test_plan_materialises_one_message_per_recipient_with_counters(sending, clock):
    campaign = sending(130)
    Campaign.objects.filter(pk=campaign.pk).update(status=C.SENDING)

    assert campaign_plan(campaign_id=campaign.pk)

    campaign.refresh_from_db()
    assert campaign.planned
    assert (campaign.recipients_total, campaign.queued_count) == (130, 130)
    messages = Message.objects.filter(campaign=campaign)
    assert messages.count() == 130
    first = messages.order_by("id").first()
    assert first.body == "Hi N0, sale on now" and first.credits == Decimal("1.00")
    assert_campaign_consistent(campaign)


def test_plan_after_a_crash_adds_only_what_is_missing(sending, clock, monkeypatch):
    campaign = sending(130)
    Campaign.objects.filter(pk=campaign.pk).update(status=C.SENDING)
    monkeypatch.setattr(engine_plan, "PLAN_CHUNK", 50)
    real_finalize = engine_plan._plan_finalize

    def crash(*args, **kwargs):
        raise RuntimeError("worker killed")

    monkeypatch.setattr(engine_plan, "_plan_finalize", crash)
    with pytest.raises(RuntimeError):
        campaign_plan(campaign_id=campaign.pk)
    assert Message.objects.filter(campaign=campaign).count() == 130
    Message.objects.filter(
        campaign=campaign,
        id__in=Message.objects.filter(campaign=campaign).order_by("-id").values("id")[:60],
    ).delete()  # died mid-way

    monkeypatch.setattr(engine_plan, "_plan_finalize", real_finalize)
    assert campaign_plan(campaign_id=campaign.pk)

    campaign.refresh_from_db()
    assert Message.objects.filter(campaign=campaign).count() == 130
    assert campaign.recipients_total == 130
    assert_campaign_consistent(campaign)


def test_plan_releases_credits_when_fewer_recipients_than_quoted(sending, account, clock):
    campaign = sending(10)
    OptOut.objects.create(phone=campaign.lists.first().contacts.first().phone)
    run = campaign_dispatch(campaign_id=campaign.pk, backend=RecordingBackend(), max_batches=0)

    campaign.refresh_from_db()
    assert run.state == "slice_over"
    assert campaign.recipients_total == 9
    assert campaign.credits_reserved == Decimal("9.00")
    release = CreditTransaction.objects.get(account=account, kind="release")
    assert release.reserved_change == Decimal("-1.00")
    assert_books_balance(account)


def test_plan_pauses_with_the_numbers_when_the_account_cannot_cover_more(
    make_account, superuser, enqueued, clock
):
    account = make_account(balance=Decimal("3"), requests_per_second=0, messages_per_second=0)
    campaign = make_campaign(account=account, phones=new_phones(3))
    campaign_send_now(campaign=campaign, user=superuser)
    extra = new_phones(2)
    campaign.extra_numbers = "\n".join(extra)
    campaign.save(update_fields=["extra_numbers"])

    run = campaign_dispatch(campaign_id=campaign.pk, backend=RecordingBackend())

    campaign.refresh_from_db()
    assert run.state == C.PAUSED and campaign.status == C.PAUSED
    assert "needs 5.00 credits, 2.00 more than reserved" in campaign.status_reason
    assert campaign.credits_reserved == Decimal("3.00")
    assert Message.objects.filter(campaign=campaign, status=S.QUEUED).count() == 5
    assert_books_balance(account)


def test_dispatch_sends_every_recipient_once_charges_and_completes(sending, account, clock):
    campaign = sending(120)
    backend = RecordingBackend()

    run = campaign_dispatch(campaign_id=campaign.pk, backend=backend)

    assert run.state == "done" and run.sent == 120
    assert [len(call) for call in backend.calls] == [50, 50, 20]
    assert sorted(backend.sent.values()) == [1] * 120
    assert {sms.reference for call in backend.calls for sms in call} == {
        f"m{pk}" for pk in Message.objects.filter(campaign=campaign).values_list("pk", flat=True)
    }
    campaign.refresh_from_db()
    assert campaign.status == C.COMPLETED and campaign.sent_count == 120
    assert (campaign.credits_charged, campaign.credits_reserved) == (Decimal("120.00"), 0)
    sent = Message.objects.filter(campaign=campaign).first()
    assert sent.provider_ref == f"p-m{sent.pk}" and sent.sent_at is not None
    account.refresh_from_db()
    assert (account.balance, account.reserved) == (Decimal("880.00"), Decimal("0.00"))
    assert_books_balance(account)
    assert_campaign_consistent(campaign)


def test_opt_out_after_planning_skips_the_recipient_and_releases_its_credit(
    sending, account, clock
):
    campaign = sending(60)
    backend = RecordingBackend()
    campaign_dispatch(campaign_id=campaign.pk, backend=backend, max_batches=0)  # planned only
    late = Message.objects.filter(campaign=campaign).order_by("id")[55]
    OptOut.objects.create(phone=late.phone, source="keyword")

    campaign_dispatch(campaign_id=campaign.pk, backend=backend)

    late.refresh_from_db()
    assert late.status == S.SKIPPED and "Opted out" in late.status_reason
    assert late.phone not in backend.sent and len(backend.sent) == 59
    campaign.refresh_from_db()
    assert (campaign.skipped_count, campaign.credits_charged) == (1, Decimal("59.00"))
    assert campaign.status == C.COMPLETED and campaign.credits_reserved == 0
    assert_books_balance(account)


def test_refused_numbers_fail_with_the_provider_code_and_are_released(sending, account, clock):
    campaign = sending(10)
    backend = RecordingBackend()
    barred = campaign.lists.first().contacts.order_by("id").first().phone
    backend.refuse = {barred}

    campaign_dispatch(campaign_id=campaign.pk, backend=backend)

    message = Message.objects.get(campaign=campaign, phone=barred)
    assert (message.status, message.error_code, message.raw_error) == (
        S.REJECTED,
        "21",
        "Number barred",
    )
    campaign.refresh_from_db()
    assert (campaign.failed_count, campaign.credits_charged) == (1, Decimal("9.00"))
    assert_books_balance(account)
    assert_campaign_consistent(campaign)


def test_transient_errors_retry_with_backoff_then_fail_at_the_cap(sending, account, clock):
    campaign = sending(10)
    backend = RecordingBackend()
    outage = ProviderError("HTTP 503 provider unavailable", code="503", kind="unavailable")
    backend.fail_next = [outage] * engine.MAX_ATTEMPTS

    run = campaign_dispatch(campaign_id=campaign.pk, backend=backend)
    assert run.state == "waiting"
    message = Message.objects.filter(campaign=campaign).first()
    assert (message.status, message.attempts) == (S.QUEUED, 1)
    assert message.next_attempt_at == clock.now() + timedelta(seconds=engine.backoff(1))

    for _ in range(engine.MAX_ATTEMPTS + 2):
        clock.advance(engine.BACKOFF_MAX)
        campaign_dispatch(campaign_id=campaign.pk, backend=backend)

    assert len(backend.calls) == engine.MAX_ATTEMPTS
    message.refresh_from_db()
    assert message.status == S.FAILED and message.attempts == engine.MAX_ATTEMPTS
    assert "Gave up after 5 attempts" in message.status_reason
    campaign.refresh_from_db()
    assert campaign.status == C.COMPLETED and campaign.failed_count == 10
    assert campaign.credits_charged == 0 and campaign.credits_reserved == 0
    assert backend.sent == {}
    assert_books_balance(account)


def test_transient_error_then_success_sends_each_once(sending, clock):
    campaign = sending(60)
    backend = RecordingBackend()
    backend.fail_next = [ProviderError("HTTP 502", code="502", kind="unavailable")]

    for _ in range(10):
        run = campaign_dispatch(campaign_id=campaign.pk, backend=backend)
        if run.state == "done":
            break
        clock.advance(engine.BACKOFF_MAX)

    assert run.state == "done"
    assert sorted(backend.sent.values()) == [1] * 60
    assert_campaign_consistent(campaign)


def test_auth_failure_pauses_the_campaign_with_a_clear_reason(sending, clock):
    campaign = sending(60)
    backend = RecordingBackend()
    backend.fail_next = [
        ProviderError("HTTP 401: bad credentials", code="401", kind="auth", permanent=True)
    ]

    run = campaign_dispatch(campaign_id=campaign.pk, backend=backend)

    campaign.refresh_from_db()
    assert run.state == C.PAUSED and campaign.status == C.PAUSED
    assert "authentication failed" in campaign.status_reason
    assert statuses(campaign) == {S.QUEUED: 60}  # nothing lost, nothing failed
    assert Message.objects.filter(campaign=campaign, attempts__gt=0).count() == 0
    assert CampaignEvent.objects.filter(campaign=campaign, action="auto_pause").exists()


def test_provider_out_of_credit_pauses_too(sending, clock):
    campaign = sending(10)
    backend = RecordingBackend()
    backend.fail_next = [
        ProviderError("HTTP 402: insufficient credit", code="402", kind="credit", permanent=True)
    ]
    campaign_dispatch(campaign_id=campaign.pk, backend=backend)
    campaign.refresh_from_db()
    assert campaign.status == C.PAUSED and "out of credit" in campaign.status_reason


def test_permanent_errors_fail_the_batch_then_the_campaign(sending, account, clock):
    campaign = sending(200)
    backend = RecordingBackend()
    refusal = ProviderError(
        "HTTP 400: Originator not allowed", code="4012", kind="validation", permanent=True
    )
    backend.fail_next = [refusal] * engine.FAIL_CAMPAIGN_AFTER

    run = campaign_dispatch(campaign_id=campaign.pk, backend=backend)

    campaign.refresh_from_db()
    assert run.state == C.FAILED and campaign.status == C.FAILED
    assert "refused 3 batches in a row" in campaign.status_reason
    first = Message.objects.filter(campaign=campaign).order_by("id").first()
    assert (first.status, first.error_code) == (S.FAILED, "4012")
    assert "Originator not allowed" in first.raw_error
    assert statuses(campaign) == {S.FAILED: 200}
    assert campaign.credits_reserved == 0 and campaign.credits_charged == 0
    assert backend.sent == {}
    assert_books_balance(account)
    assert_campaign_consistent(campaign)


def test_timeout_is_reconciled_by_reference_and_never_resent(sending, account, clock):
    campaign = sending(60)
    backend = RecordingBackend()
    backend.fail_next = [timeout_error()]  # accepted, but the answer is lost

    run = campaign_dispatch(campaign_id=campaign.pk, backend=backend)
    assert run.state == "waiting"
    assert Message.objects.filter(campaign=campaign, status=S.SUBMITTING).count() == 50

    clock.advance(engine.STALE_AFTER.total_seconds() + 1)
    run = campaign_dispatch(campaign_id=campaign.pk, backend=backend)

    assert run.state == "done"
    assert sorted(backend.sent.values()) == [1] * 60
    assert statuses(campaign) == {S.SENT: 60}
    recovered = Message.objects.filter(campaign=campaign).order_by("id").first()
    assert recovered.provider_ref == f"p-m{recovered.pk}"
    assert CampaignEvent.objects.filter(campaign=campaign, action="recover").exists()
    assert_books_balance(account)
    assert_campaign_consistent(campaign)


def test_worker_dying_after_the_provider_accepted_is_recovered_not_resent(sending, account, clock):
    campaign = sending(60)
    backend = RecordingBackend()
    campaign_dispatch(campaign_id=campaign.pk, backend=backend, max_batches=0)
    campaign.refresh_from_db()
    batch = batch_claim(campaign=campaign, size=50)
    batch_send(campaign=campaign, batch=batch, backend=backend)  # ... and the worker dies

    # The same task, delivered again right away, leaves the batch alone.
    campaign_dispatch(campaign_id=campaign.pk, backend=backend)
    assert Message.objects.filter(claim_token=batch.token, status=S.SUBMITTING).count() == 50
    assert sum(backend.sent.values()) == 60

    clock.advance(engine.STALE_AFTER.total_seconds() + 1)
    assert batches_recover(backend=backend) == 50
    campaign_dispatch(campaign_id=campaign.pk, backend=backend)

    assert sorted(backend.sent.values()) == [1] * 60
    campaign.refresh_from_db()
    assert campaign.status == C.COMPLETED and campaign.sent_count == 60
    assert_books_balance(account)
    assert_campaign_consistent(campaign)


def test_without_lookup_a_lost_batch_becomes_unknown_for_a_person(
    sending, account, superuser, clock
):
    campaign = sending(10)
    backend = BlindBackend()
    backend.fail_next = [timeout_error()]
    campaign_dispatch(campaign_id=campaign.pk, backend=backend)
    clock.advance(engine.STALE_AFTER.total_seconds() + 1)

    run = campaign_dispatch(campaign_id=campaign.pk, backend=backend)

    assert run.state == "done" and len(backend.calls) == 1  # never re-sent
    campaign.refresh_from_db()
    assert campaign.status == C.COMPLETED and campaign.unknown_count == 10
    assert "need a decision" in campaign.status_reason
    assert campaign.credits_charged == Decimal("10.00")  # charged: most likely sent
    message = Message.objects.filter(campaign=campaign).first()
    assert "mark it sent, failed or to send again" in message.status_reason

    ids = list(Message.objects.filter(campaign=campaign).values_list("pk", flat=True)[:4])
    assert (
        messages_resolve_unknown(
            campaign=campaign, user=superuser, outcome="failed", message_ids=ids
        )
        == 4
    )
    assert messages_resolve_unknown(campaign=campaign, user=superuser, outcome="sent") == 6
    campaign.refresh_from_db()
    assert (campaign.failed_count, campaign.sent_count, campaign.unknown_count) == (4, 6, 0)
    assert campaign.credits_charged == Decimal("6.00")
    account.refresh_from_db()
    assert account.balance == Decimal("994.00") and account.reserved == 0
    assert_books_balance(account)
    assert_campaign_consistent(campaign)


def test_resend_of_unknown_refunds_reserves_again_and_sends(sending, account, superuser, clock):
    campaign = sending(10)
    backend = BlindBackend()
    campaign_dispatch(campaign_id=campaign.pk, backend=backend, max_batches=0)
    campaign.refresh_from_db()
    batch = batch_claim(campaign=campaign, size=3)
    clock.advance(engine.STALE_AFTER.total_seconds() + 1)
    batches_recover(backend=backend)  # the worker died before calling the provider
    assert campaign.__class__.objects.get(pk=campaign.pk).unknown_count == 3

    messages_resolve_unknown(campaign=campaign, user=superuser, outcome="requeue")
    campaign_dispatch(campaign_id=campaign.pk, backend=backend)

    assert sorted(backend.sent.values()) == [1] * 10
    assert batch.token  # the claimed batch is the one that went unknown
    campaign.refresh_from_db()
    assert campaign.sent_count == 10 and campaign.credits_charged == Decimal("10.00")
    assert_books_balance(account)
    assert_campaign_consistent(campaign)


def test_recording_twice_changes_nothing(sending, account, clock):
    campaign = sending(5)
    backend = RecordingBackend()
    campaign_dispatch(campaign_id=campaign.pk, backend=backend, max_batches=0)
    campaign.refresh_from_db()
    batch = batch_claim(campaign=campaign, size=5)
    outcomes, error = batch_send(campaign=campaign, batch=batch, backend=backend)
    assert error is None

    first = batch_record(campaign=campaign, token=batch.token, outcomes=outcomes)
    second = batch_record(campaign=campaign, token=batch.token, outcomes=outcomes)

    assert first == {S.SENT: 5} and not second
    assert CreditTransaction.objects.filter(account=account, kind="charge").count() == 1
    assert_campaign_consistent(campaign)


def test_a_second_worker_finds_the_lease_taken_and_leaves(sending, clock):
    campaign = sending(10)
    token = engine_lease.lease_take(campaign.pk)
    Campaign.objects.filter(pk=campaign.pk).update(status=C.SENDING)
    backend = RecordingBackend()

    assert campaign_dispatch(campaign_id=campaign.pk, backend=backend).state == "busy"
    assert backend.calls == []

    clock.advance(engine.LEASE.total_seconds() + 1)  # that worker died
    assert token is not None
    assert campaign_dispatch(campaign_id=campaign.pk, backend=backend).state == "done"


def test_a_run_stops_at_its_time_slice_and_enqueues_the_next(sending, enqueued, clock):
    campaign = sending(120)
    enqueued.clear()
    run = campaign_dispatch(campaign_id=campaign.pk, backend=RecordingBackend(), max_batches=1)
    assert run.state == "slice_over" and run.sent == 50
    assert enqueued == [(campaign.pk, None)]


def test_claims_never_overlap(sending, clock):
    campaign = sending(30)
    campaign_dispatch(campaign_id=campaign.pk, backend=RecordingBackend(), max_batches=0)
    campaign.refresh_from_db()
    first = batch_claim(campaign=campaign, size=20)
    second = batch_claim(campaign=campaign, size=20)
    third = batch_claim(campaign=campaign, size=20)
    assert isinstance(first, Batch) and len(first.rows) == 20 and len(second.rows) == 10
    assert third is None
    assert not {r[0] for r in first.rows} & {r[0] for r in second.rows}


def test_a_lost_batch_of_a_cancelled_campaign_is_cancelled_not_requeued(
    sending, account, superuser, clock
):
    from campaigns.services import campaign_cancel

    campaign = sending(10)
    backend = RecordingBackend()
    campaign_dispatch(campaign_id=campaign.pk, backend=backend, max_batches=0)
    campaign.refresh_from_db()
    batch_claim(campaign=campaign, size=4)  # the worker dies before calling the provider
    campaign_cancel(campaign=campaign, user=superuser)
    clock.advance(engine.STALE_AFTER.total_seconds() + 1)

    batches_recover(backend=backend)

    assert statuses(campaign) == {S.CANCELLED: 10}
    campaign.refresh_from_db()
    assert campaign.credits_reserved == 0 and backend.sent == {}
    assert_books_balance(account)
    assert_campaign_consistent(campaign)


def test_claims_go_on_from_the_cursor_and_come_back_for_what_was_queued_again(sending, clock):
    """A run's claims walk forward from the last id claimed (so PostgreSQL
    never re-walks what was sent), and once nothing is left ahead, claim
    from the start: a message queued again behind the cursor (not attempted
    by the provider) is still sent in the same run, exactly once."""
    from campaigns.engine.batch import ClaimCursor, Outcome, batch_claim_next

    campaign = sending(30)
    campaign_dispatch(campaign_id=campaign.pk, backend=RecordingBackend(), max_batches=0)
    campaign.refresh_from_db()
    ids = sorted(Message.objects.filter(campaign=campaign).values_list("id", flat=True))
    cursor = ClaimCursor()

    first = batch_claim_next(campaign=campaign, size=10, zones=None, cursor=cursor)
    assert [r[0] for r in first.rows] == ids[:10] and cursor.after == ids[9]
    # The provider did not attempt them: queued again, behind the cursor.
    not_tried = Outcome(status=S.QUEUED, reason="Not attempted by the provider call; requeued.")
    batch_record(
        campaign=campaign, token=first.token, outcomes={r[0]: not_tried for r in first.rows}
    )

    second = batch_claim_next(campaign=campaign, size=10, zones=None, cursor=cursor)
    assert [r[0] for r in second.rows] == ids[10:20]
    third = batch_claim_next(campaign=campaign, size=20, zones=None, cursor=cursor)
    assert [r[0] for r in third.rows] == ids[20:30] and cursor.after == ids[29]
    again = batch_claim_next(campaign=campaign, size=20, zones=None, cursor=cursor)
    assert [r[0] for r in again.rows] == ids[:10]
    assert cursor.after == ids[29]  # a high-water mark: the fallback does not move it back
    assert batch_claim_next(campaign=campaign, size=20, zones=None, cursor=cursor) is None


def test_a_message_leaving_submitting_drops_its_claim_token(sending, clock):
    """The token's index is partial (tokens not null): it stays small and the
    record and report writes skip it only if every settled message's token
    is cleared, whatever it became (sent, requeued, skipped)."""
    OptOut.objects.create(phone=new_phones(1)[0])  # not one of ours: nothing skipped by it
    campaign = sending(30)
    campaign_dispatch(campaign_id=campaign.pk, backend=RecordingBackend(), max_batches=0)
    campaign.refresh_from_db()
    batch = batch_claim(campaign=campaign, size=10)
    assert Message.objects.filter(claim_token=batch.token).count() == 10
    campaign_dispatch(campaign_id=campaign.pk, backend=RecordingBackend())
    assert statuses(campaign) == {S.SENT: 20, S.SUBMITTING: 10}
    assert not Message.objects.exclude(status=S.SUBMITTING).filter(claim_token__isnull=False)
    assert Message.objects.filter(claim_token=batch.token, status=S.SUBMITTING).count() == 10


@pytest.mark.skipif(
    __import__("django.db").db.connection.vendor != "postgresql", reason="PostgreSQL's ANALYZE"
)
def test_a_large_plan_refreshes_postgresql_statistics(sending, monkeypatch, clock):
    from django.db import connection

    def estimated_rows() -> float:
        # What ANALYZE writes, in this transaction (the statistics views
        # only count it after commit).
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT reltuples FROM pg_class WHERE oid = %s::regclass",
                [Message._meta.db_table],
            )
            return cursor.fetchone()[0]

    monkeypatch.setattr(engine_plan, "ANALYZE_AFTER", 10)
    small, large = sending(5), sending(40)
    before = estimated_rows()
    campaign_plan(campaign_id=small.pk)
    assert estimated_rows() == before  # under ANALYZE_AFTER: left to autovacuum
    campaign_plan(campaign_id=large.pk)
    assert estimated_rows() == Message.objects.count() == 45


def test_provider_ids_are_recorded_exactly_whatever_they_contain(sending):
    tricky = ['a"b', "c\\d", "x,y", "{z}", "o'k", "NULL", " spaced ", "Zoë", '\\"', "p"]

    class OddIds(RecordingBackend):
        def _accept(self, batch):
            return [
                dataclasses.replace(result, provider_ref=f"{tricky[n % len(tricky)]}{n}")
                for n, result in enumerate(super()._accept(batch))
            ]

    campaign = sending(60)
    assert campaign_dispatch(campaign_id=campaign.pk, backend=OddIds()).state == "done"
    refs = sorted(Message.objects.filter(campaign=campaign).values_list("provider_ref", flat=True))
    expected = sorted(f"{tricky[n % len(tricky)]}{n}" for size in (50, 10) for n in range(size))
    assert refs == expected
