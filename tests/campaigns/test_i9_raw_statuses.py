"""Provider reports we cannot map keep their raw code and text, and messages
in flight are polled on a decaying schedule (issue 9)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from django.test import override_settings
from django.utils import timezone

from campaigns import tasks
from campaigns.counters import counters_recount
from campaigns.engine.polling import POLL_MAX_AGE
from campaigns.models import Campaign, Message
from campaigns.reports import poll_interval, statuses_apply
from providers.backends.base import Capability, ProviderRef, SmsBackend, StatusUpdate
from providers.backends.smseveryone import SmsEveryoneBackend

pytestmark = pytest.mark.django_db

MS = Message.Status


def dr_status(receipt_id: int, code: int):
    """/api/DRStatus as the doc shows it, for one destination."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "CampaignId": 11967218,
                "Count": 1,
                "Destinations": [
                    {
                        "Destination": "61400123456",
                        "TimeStamp": "2020-07-28T11:29:16",
                        "Status": {"DeliveryReceiptStatusId": receipt_id, "Code": code},
                    }
                ],
            },
        )

    return handler


def sent_message(account, *, sent_at=None, **fields) -> Message:
    campaign = Campaign.objects.create(name="Promo", account=account, body="Hi", status="sending")
    message = Message.objects.create(
        campaign=campaign,
        phone="+61400123456",
        body="Hi",
        status=MS.SENT,
        credits=Decimal("1"),
        provider_ref="11967218-61400123456",
        provider_batch_ref="11967218",
        raw_status="0",
        sent_at=sent_at or timezone.now(),
        **fields,
    )
    counters_recount(campaign_id=campaign.pk)
    return message


def test_an_unmapped_receipt_keeps_the_providers_code_and_text(make_account):
    account = make_account(backend="smseveryone")
    message = sent_message(account)
    backend = SmsEveryoneBackend(
        credentials={"username": "u", "password": "p"},
        transport=httpx.MockTransport(dr_status(7, 300)),
    )
    updates = backend.fetch_statuses([ProviderRef(provider_ref=message.provider_ref)])

    counts = statuses_apply(account=account, updates=updates)

    message.refresh_from_db()
    assert counts["raw_kept"] == 1
    assert (message.status, message.raw_status, message.error_code) == (MS.SENT, "7", "300")
    assert message.report_unmapped
    # A later receipt we know moves it on and clears the flag.
    backend = SmsEveryoneBackend(
        credentials={"username": "u", "password": "p"},
        transport=httpx.MockTransport(dr_status(1, 0)),
    )
    statuses_apply(
        account=account,
        updates=backend.fetch_statuses([ProviderRef(provider_ref=message.provider_ref)]),
    )
    message.refresh_from_db()
    assert (message.status, message.raw_status, message.report_unmapped) == (
        MS.DELIVERED,
        "1",
        False,
    )


class Asking(SmsBackend):
    """Answers every poll with nothing (no receipt yet) and counts who was asked."""

    name = "asking"
    capabilities = frozenset({Capability.DLR_POLL})

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.asked: list[str] = []

    def fetch_statuses(self, refs: list[ProviderRef]) -> list[StatusUpdate]:
        self.asked += [ref.provider_ref for ref in refs]
        return []


@override_settings(SMS_BACKENDS={"asking": "tests.campaigns.test_i9_raw_statuses.Asking"})
def test_messages_without_a_receipt_are_polled_less_and_less_often(make_account):
    account = make_account(backend="asking", requests_per_second=0, messages_per_second=0)
    fresh = sent_message(account)
    old = sent_message(account, sent_at=timezone.now() - timedelta(days=2))
    backend = Asking()

    tasks.poll_statuses(backend=backend)
    assert sorted(backend.asked) == sorted([fresh.provider_ref, old.provider_ref])
    backend.asked.clear()
    tasks.poll_statuses(backend=backend)  # a minute later on the schedule: nobody is due
    assert backend.asked == []

    fresh.refresh_from_db()
    old.refresh_from_db()
    assert fresh.next_poll_at - fresh.sent_at < timedelta(minutes=2)
    assert old.next_poll_at - timezone.now() > timedelta(hours=3)

    Message.objects.filter(pk=fresh.pk).update(next_poll_at=timezone.now() - timedelta(seconds=1))
    tasks.poll_statuses(backend=backend)
    assert backend.asked == [fresh.provider_ref]


def test_the_poll_interval_grows_with_the_age_of_the_message():
    ages = [timedelta(minutes=1), timedelta(minutes=30), timedelta(hours=3), timedelta(hours=12)]
    intervals = [poll_interval(age) for age in [*ages, timedelta(days=2)]]
    assert intervals == sorted(intervals)
    assert intervals[0] == timedelta(minutes=1)
    assert intervals[-1] >= timedelta(hours=4)
    # Under a hundred polls over the three days a message is followed, where a
    # poll every minute asked 4,320 times.
    now = datetime(2030, 1, 1, tzinfo=UTC)
    t, polls = now, 0
    while t - now < POLL_MAX_AGE:
        t += poll_interval(t - now)
        polls += 1
    assert polls < 100
