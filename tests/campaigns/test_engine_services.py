"""The campaign services: state machine, audit trail, reservation, refusals."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from campaigns.models import Campaign, CampaignEvent, Message
from campaigns.services import (
    CampaignError,
    campaign_cancel,
    campaign_pause,
    campaign_resume,
    campaign_schedule,
    campaign_send_now,
)
from providers.models import CreditTransaction
from tests.campaigns.engine_helpers import (
    assert_books_balance,
    assert_campaign_consistent,
    make_campaign,
    new_phones,
)

pytestmark = pytest.mark.django_db

S = Campaign.Status


@pytest.fixture
def account(make_account):
    return make_account(balance=Decimal("1000"), requests_per_second=0, messages_per_second=0)


def reserves(account):
    return list(
        CreditTransaction.objects.filter(account=account, kind="reserve").values_list(
            "reserved_change", flat=True
        )
    )


def test_send_now_reserves_the_quote_and_schedules_for_now(account, superuser, enqueued):
    campaign = make_campaign(account=account, phones=new_phones(3), user=superuser)

    campaign_send_now(campaign=campaign, user=superuser)

    campaign.refresh_from_db()
    account.refresh_from_db()
    assert campaign.status == S.SCHEDULED
    assert campaign.scheduled_at <= timezone.now()
    assert campaign.credits_reserved == Decimal("3.00")
    assert campaign.confirmed_quote["recipients"] == 3
    assert account.reserved == Decimal("3.00") and account.available == Decimal("997.00")
    event = campaign.events.get()
    assert (event.action, event.from_status, event.to_status, event.user) == (
        "send_now",
        S.DRAFT,
        S.SCHEDULED,
        superuser,
    )


def test_dispatch_is_enqueued_only_after_commit(
    account, superuser, enqueue_calls, django_capture_on_commit_callbacks
):
    campaign = make_campaign(account=account, phones=new_phones(2))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        campaign_send_now(campaign=campaign, user=superuser)
    assert enqueue_calls == []  # nothing before the commit
    for callback in callbacks:
        callback()
    assert [cid for cid, _ in enqueue_calls] == [campaign.pk]


def test_double_click_on_send_reserves_once_and_refuses_the_second(account, superuser, enqueued):
    campaign = make_campaign(account=account, phones=new_phones(5))
    stale_copy = Campaign.objects.get(pk=campaign.pk)  # the second click's page

    campaign_send_now(campaign=campaign, user=superuser)
    with pytest.raises(CampaignError, match="it is scheduled"):
        campaign_send_now(campaign=stale_copy, user=superuser)

    assert reserves(account) == [Decimal("5.00")]
    assert CampaignEvent.objects.filter(campaign=campaign, action="send_now").count() == 1


def test_short_balance_refuses_with_the_numbers(make_account, superuser, enqueued):
    poor = make_account(balance=Decimal("2"))
    campaign = make_campaign(account=poor, phones=new_phones(3))

    with pytest.raises(CampaignError) as excinfo:
        campaign_send_now(campaign=campaign, user=superuser)

    text = " ".join(excinfo.value.messages)
    assert "needs 3.00 credits" in text and "2.00 available" in text
    campaign.refresh_from_db()
    assert campaign.status == S.DRAFT and campaign.credits_reserved == 0
    assert reserves(poor) == []


def test_a_quote_with_problems_refuses(account, superuser, enqueued):
    campaign = make_campaign(account=account, phones=new_phones(1), body="")
    with pytest.raises(CampaignError, match="empty"):
        campaign_send_now(campaign=campaign, user=superuser)
    assert Campaign.objects.get(pk=campaign.pk).status == S.DRAFT


def test_a_quote_that_changed_since_confirmation_must_be_confirmed_again(
    account, superuser, enqueued
):
    campaign = make_campaign(account=account, phones=new_phones(4))
    seen = {"recipients": 3, "credits_needed": "3.00"}  # one contact added since
    with pytest.raises(CampaignError, match="changed since you confirmed"):
        campaign_send_now(campaign=campaign, user=superuser, confirmed_quote=seen)
    campaign_send_now(
        campaign=campaign,
        user=superuser,
        confirmed_quote={"recipients": 4, "credits_needed": "4.00"},
    )
    assert Campaign.objects.get(pk=campaign.pk).credits_reserved == Decimal("4.00")


def test_schedule_needs_a_future_aware_time_and_can_be_moved(account, superuser, enqueued):
    campaign = make_campaign(account=account, phones=new_phones(2))
    with pytest.raises(CampaignError, match="not in the future"):
        campaign_schedule(campaign=campaign, user=superuser, when=timezone.now())
    with pytest.raises(CampaignError, match="time zone"):
        campaign_schedule(
            campaign=campaign,
            user=superuser,
            when=(timezone.now() + timedelta(days=1)).replace(tzinfo=None),
        )

    when = timezone.now() + timedelta(hours=2)
    campaign_schedule(campaign=campaign, user=superuser, when=when)
    later = when + timedelta(hours=1)
    campaign_schedule(campaign=campaign, user=superuser, when=later)

    campaign.refresh_from_db()
    assert campaign.status == S.SCHEDULED and campaign.scheduled_at == later
    assert reserves(account) == [Decimal("2.00")]  # moving it reserves nothing more
    assert [at for _, at in enqueued] == [when, later]
    assert list(campaign.events.order_by("id").values_list("action", flat=True)) == [
        "schedule",
        "schedule",
    ]


@pytest.mark.parametrize(
    ("operation", "status"),
    [
        (campaign_pause, S.DRAFT),
        (campaign_pause, S.COMPLETED),
        (campaign_resume, S.SENDING),
        (campaign_resume, S.DRAFT),
        (campaign_cancel, S.COMPLETED),
        (campaign_cancel, S.CANCELLED),
        (campaign_cancel, S.FAILED),
    ],
)
def test_operations_refuse_states_they_do_not_apply_to(account, superuser, operation, status):
    campaign = make_campaign(account=account, phones=new_phones(1))
    Campaign.objects.filter(pk=campaign.pk).update(status=status)
    campaign.refresh_from_db()
    with pytest.raises(CampaignError, match="Cannot"):
        operation(campaign=campaign, user=superuser)
    assert Campaign.objects.get(pk=campaign.pk).status == status
    assert not CampaignEvent.objects.filter(campaign=campaign).exists()


def test_pause_then_resume_returns_to_sending_and_enqueues(account, superuser, enqueued, clock):
    from campaigns.engine import campaign_dispatch
    from tests.campaigns.engine_helpers import RecordingBackend

    campaign = make_campaign(account=account, phones=new_phones(120))
    campaign_send_now(campaign=campaign, user=superuser)
    backend = RecordingBackend()
    campaign_dispatch(campaign_id=campaign.pk, backend=backend, max_batches=1)

    campaign_pause(campaign=campaign, user=superuser, reason="Checking the link")
    assert campaign.status == S.PAUSED and campaign.status_reason == "Checking the link"
    run = campaign_dispatch(campaign_id=campaign.pk, backend=backend)
    assert run.state == S.PAUSED and len(backend.calls) == 1  # nothing claimed while paused

    enqueued.clear()
    campaign_resume(campaign=campaign, user=superuser)
    assert campaign.status == S.SENDING
    assert enqueued == [(campaign.pk, None)]
    run = campaign_dispatch(campaign_id=campaign.pk, backend=backend)
    assert run.state == "done"
    assert sorted(backend.sent.values()) == [1] * 120
    assert list(campaign.events.order_by("id").values_list("action", flat=True)) == [
        "send_now",
        "start",
        "plan",
        "pause",
        "resume",
        "complete",
    ]


def test_resume_before_the_start_goes_back_to_scheduled(account, superuser, enqueued):
    campaign = make_campaign(account=account, phones=new_phones(1))
    when = timezone.now() + timedelta(days=1)
    campaign_schedule(campaign=campaign, user=superuser, when=when)
    campaign_pause(campaign=campaign, user=superuser)
    campaign_resume(campaign=campaign, user=superuser)
    assert campaign.status == S.SCHEDULED and campaign.scheduled_at == when


def test_cancel_before_planning_releases_the_whole_reservation(account, superuser, enqueued):
    campaign = make_campaign(account=account, phones=new_phones(7))
    campaign_send_now(campaign=campaign, user=superuser)

    campaign_cancel(campaign=campaign, user=superuser)

    campaign.refresh_from_db()
    account.refresh_from_db()
    assert campaign.status == S.CANCELLED and campaign.finished_at is not None
    assert campaign.credits_reserved == 0 and account.reserved == 0
    assert account.balance == Decimal("1000.00")
    assert_books_balance(account)


def test_cancel_mid_campaign_cancels_the_queue_and_releases_its_credits(
    account, superuser, enqueued, clock
):
    from campaigns.engine import campaign_dispatch
    from tests.campaigns.engine_helpers import RecordingBackend

    campaign = make_campaign(account=account, phones=new_phones(80))
    campaign_send_now(campaign=campaign, user=superuser)
    backend = RecordingBackend()
    campaign_dispatch(campaign_id=campaign.pk, backend=backend, max_batches=1)  # 50 sent

    campaign_cancel(campaign=campaign, user=superuser)

    campaign.refresh_from_db()
    account.refresh_from_db()
    assert (campaign.sent_count, campaign.cancelled_count) == (50, 30)
    assert campaign.credits_charged == Decimal("50.00") and campaign.credits_reserved == 0
    assert (account.balance, account.reserved) == (Decimal("950.00"), Decimal("0.00"))
    assert Message.objects.filter(campaign=campaign, status="cancelled").count() == 30
    assert campaign_dispatch(campaign_id=campaign.pk, backend=backend).state == S.CANCELLED
    assert len(backend.calls) == 1
    assert_books_balance(account)
    assert_campaign_consistent(campaign)
    event = campaign.events.get(action="cancel")
    assert "30 queued message(s) cancelled, 30.00 credits released" in event.detail
