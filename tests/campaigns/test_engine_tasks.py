"""django-q2 entry points and the periodic schedules."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from campaigns import engine, tasks
from campaigns.engine import batch_claim, campaign_dispatch
from campaigns.engine import enqueue as engine_enqueue
from campaigns.models import Campaign, InboundMessage, Message
from campaigns.services import campaign_schedule, campaign_send_now
from contacts.models import OptOut
from providers.backends.simulator import SimulatorBackend
from tests.campaigns.engine_helpers import (
    RecordingBackend,
    assert_books_balance,
    assert_campaign_consistent,
    make_campaign,
    new_phones,
)

pytestmark = pytest.mark.django_db
C = Campaign.Status


def _sent_on_the_simulator(account, *, recipients: int, user):
    """Send a campaign of ``recipients`` new numbers through ``account``'s
    simulator; return it and a simulator that looks an hour ahead."""
    campaign = make_campaign(account=account, phones=new_phones(recipients))
    campaign_send_now(campaign=campaign, user=user)
    tasks.dispatch_campaign(campaign.pk)
    later = SimulatorBackend(
        credentials=account.credentials,
        account_key=str(account.pk),
        clock=lambda: timezone.now().timestamp() + 3600,
    )
    return campaign, later


def test_sync_schedules_creates_each_schedule_once_by_name():
    call_command("sync_schedules")
    Schedule.objects.filter(name="smsoffice: poll replies").update(minutes=42, func="x.y")
    call_command("sync_schedules")

    schedules = {s.name: s for s in Schedule.objects.all()}
    assert set(schedules) == set(tasks.PERIODIC)
    for name, (func, minutes) in tasks.PERIODIC.items():
        assert (schedules[name].func, schedules[name].minutes) == (func, minutes)
        assert schedules[name].schedule_type == Schedule.MINUTES
        assert schedules[name].repeats == -1


def test_periodic_functions_exist():
    from django.utils.module_loading import import_string

    for func, _ in tasks.PERIODIC.values():
        assert callable(import_string(func))


def test_start_scheduled_campaigns_enqueues_only_due_ones(make_account, superuser, enqueued):
    account = make_account(balance=Decimal("10"))
    due = make_campaign(account=account, phones=new_phones(1))
    later = make_campaign(account=account, phones=new_phones(1))
    campaign_schedule(campaign=due, user=superuser, when=timezone.now() + timedelta(hours=1))
    campaign_schedule(campaign=later, user=superuser, when=timezone.now() + timedelta(hours=5))
    Campaign.objects.filter(pk=due.pk).update(scheduled_at=timezone.now() - timedelta(seconds=1))
    enqueued.clear()

    assert tasks.start_scheduled_campaigns() == 1
    assert enqueued == [(due.pk, None)]


def test_a_future_wait_becomes_a_one_off_schedule_the_earliest_wins(db):
    now = timezone.now()
    engine_enqueue._enqueue(7, now + timedelta(minutes=10))
    engine_enqueue._enqueue(7, now + timedelta(minutes=20))  # later: the earlier one stays
    engine_enqueue._enqueue(7, now + timedelta(minutes=5))  # earlier: replaces it
    schedule = Schedule.objects.get(name=engine_enqueue.dispatch_schedule_name(7))
    assert schedule.next_run == now + timedelta(minutes=5)
    assert (schedule.func, schedule.args, schedule.schedule_type, schedule.repeats) == (
        "campaigns.tasks.dispatch_campaign",
        "7",
        Schedule.ONCE,
        -1,
    )


def test_dispatch_task_runs_a_campaign_on_the_simulator(make_account, superuser, enqueued):
    account = make_account(
        balance=Decimal("100"),
        credentials={"seed": 3},
        requests_per_second=0,
        messages_per_second=0,
    )
    campaign = make_campaign(account=account, phones=new_phones(30))
    campaign_send_now(campaign=campaign, user=superuser)

    summary = tasks.dispatch_campaign(campaign.pk)

    assert summary.startswith("done: 1 batches, 30 sent")
    campaign.refresh_from_db()
    assert campaign.status == C.COMPLETED and campaign.sent_count == 30
    assert_books_balance(account)


def test_recover_stuck_batches_reconciles_and_restarts_lost_campaigns(
    make_account, superuser, enqueued, clock, monkeypatch
):
    account = make_account(balance=Decimal("100"), requests_per_second=0, messages_per_second=0)
    campaign = make_campaign(account=account, phones=new_phones(10))
    campaign_send_now(campaign=campaign, user=superuser)
    backend = RecordingBackend()
    campaign_dispatch(campaign_id=campaign.pk, backend=backend, max_batches=0)
    campaign.refresh_from_db()
    batch_claim(campaign=campaign, size=4)  # and the worker died
    monkeypatch.setattr(type(account), "get_backend", lambda self, **kw: backend)
    clock.advance(engine.STALE_AFTER.total_seconds() + 1)
    enqueued.clear()

    assert tasks.recover_stuck_batches() == 4  # never sent: requeued

    assert Message.objects.filter(campaign=campaign, status="queued").count() == 10
    assert enqueued == [(campaign.pk, None)]  # nobody was dispatching it


def test_poll_statuses_applies_reports_and_refunds(make_account, superuser, enqueued):
    account = make_account(
        balance=Decimal("100"),
        credentials={
            "seed": 5,
            "delivery_delay": 0,
            "mix": {"delivered": 0.5, "undelivered": 0.5},
        },
        requests_per_second=0,
        messages_per_second=0,
    )
    campaign, later = _sent_on_the_simulator(account, recipients=40, user=superuser)

    applied = tasks.poll_statuses(backend=later)

    campaign.refresh_from_db()
    assert applied == 40
    assert campaign.sent_count == 0
    assert campaign.delivered_count + campaign.failed_count == 40
    assert 0 < campaign.failed_count < 40
    account.refresh_from_db()
    # Undelivered messages are refunded (the simulator refunds them).
    assert account.balance == Decimal("100") - campaign.delivered_count
    assert tasks.poll_statuses(backend=later) == 0  # nothing left in flight
    assert_books_balance(account)
    assert_campaign_consistent(campaign)


def test_poll_replies_stores_them_opts_out_stop_and_honours_the_interval(
    make_account, superuser, enqueued
):
    account = make_account(
        balance=Decimal("100"),
        credentials={
            "seed": 2,
            "delivery_delay": 0,
            "reply_rate": 1,
            "stop_share": 1,
            "mix": {"delivered": 1},
        },
        requests_per_second=0,
        messages_per_second=0,
    )
    campaign, later = _sent_on_the_simulator(account, recipients=5, user=superuser)
    tasks.poll_statuses(backend=later)

    assert tasks.poll_replies(backend=later) == 5
    assert tasks.poll_replies(backend=later) == 0  # too soon: not even asked

    assert InboundMessage.objects.filter(account=account, body="STOP").count() == 5
    assert (
        OptOut.objects.filter(
            phone__in=list(
                Message.objects.filter(campaign=campaign).values_list("phone", flat=True)
            )
        ).count()
        == 5
    )


def test_poll_statuses_asks_for_batch_members_that_have_no_id_of_their_own(
    make_account, superuser, enqueued
):
    # The SMS Works answers a batch send with a batch id only: its members get
    # their own id from their first report, so polling must include them.
    account = make_account(balance=Decimal("100"), requests_per_second=0, messages_per_second=0)
    campaign = make_campaign(account=account, phones=new_phones(5))
    campaign_send_now(campaign=campaign, user=superuser)
    tasks.dispatch_campaign(campaign.pk)
    Message.objects.filter(campaign=campaign).update(provider_ref="", provider_batch_ref="B-1")

    asked = []

    class Recording(SimulatorBackend):
        def fetch_statuses(self, refs):
            asked.extend(refs)
            return []

    tasks.poll_statuses(
        backend=Recording(credentials=account.credentials, account_key=str(account.pk))
    )

    assert sorted(r.to for r in asked) == sorted(
        Message.objects.filter(campaign=campaign).values_list("phone", flat=True)
    )
    assert {r.provider_batch_ref for r in asked} == {"B-1"}
