"""Quiet hours in the recipient's local time, across zones and DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, time
from decimal import Decimal

import pytest

from campaigns.engine import campaign_dispatch
from campaigns.models import Campaign, Message
from campaigns.quiet_hours import next_window_open, recipient_time_zone, window_open
from campaigns.services import campaign_send_now
from tests.campaigns.engine_helpers import RecordingBackend, make_campaign

EIGHT, NINE_PM = time(8, 0), time(21, 0)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("phone", "expected"),
    [
        ("+12125550123", "America/New_York"),  # a Manhattan number: one zone
        ("+13105550123", "America/Los_Angeles"),
        ("+33612345678", "Europe/Paris"),  # France: one zone for the country
        ("+61412345678", "Australia/Perth"),  # AU mobile: several zones -> the account's
        ("+447911123456", "Australia/Perth"),  # UK mobile: Guernsey/Jersey/... -> the account's
        ("not a number", "Australia/Perth"),
    ],
)
def test_recipient_time_zone_from_the_number_else_the_account(phone, expected):
    assert recipient_time_zone(phone, default="Australia/Perth") == expected


@pytest.mark.parametrize(
    ("at", "tz", "is_open"),
    [
        (utc(2025, 6, 2, 12, 0), "America/New_York", True),  # 08:00 EDT
        (utc(2025, 6, 2, 11, 59), "America/New_York", False),  # 07:59 EDT
        (utc(2025, 6, 3, 0, 59), "America/New_York", True),  # 20:59 EDT
        (utc(2025, 6, 3, 1, 0), "America/New_York", False),  # 21:00 EDT: closed
        (utc(2025, 6, 2, 12, 0), "Australia/Sydney", False),  # 22:00 AEST
        (utc(2025, 6, 2, 0, 0), "Australia/Sydney", True),  # 10:00 AEST
        (utc(2025, 1, 15, 12, 59), "America/New_York", False),  # 07:59 EST (winter)
        (utc(2025, 1, 15, 13, 0), "America/New_York", True),  # 08:00 EST
    ],
)
def test_window_in_local_time(at, tz, is_open):
    assert window_open(start=EIGHT, end=NINE_PM, tz=tz, at=at) is is_open


def test_window_over_midnight():
    start, end = time(22, 0), time(6, 0)
    assert window_open(start=start, end=end, tz="UTC", at=utc(2025, 6, 2, 23, 0))
    assert window_open(start=start, end=end, tz="UTC", at=utc(2025, 6, 2, 5, 59))
    assert not window_open(start=start, end=end, tz="UTC", at=utc(2025, 6, 2, 6, 0))
    assert next_window_open(start=start, end=end, tz="UTC", after=utc(2025, 6, 2, 12)) == utc(
        2025, 6, 2, 22
    )


def test_no_window_means_always_open():
    assert window_open(start=None, end=None, tz="UTC", at=utc(2025, 6, 2, 3))
    assert window_open(start=EIGHT, end=EIGHT, tz="UTC", at=utc(2025, 6, 2, 3))


@pytest.mark.parametrize(
    ("tz", "after", "opening"),
    [
        # New York springs forward on Sun 9 Mar 2025 (02:00 EST -> 03:00 EDT):
        # 08:00 that morning is 12:00 UTC, the day before 13:00 UTC.
        ("America/New_York", utc(2025, 3, 9, 2, 0), utc(2025, 3, 9, 12, 0)),
        ("America/New_York", utc(2025, 3, 8, 2, 0), utc(2025, 3, 8, 13, 0)),
        # ... and falls back on Sun 2 Nov 2025: 08:00 EST is 13:00 UTC.
        ("America/New_York", utc(2025, 11, 2, 3, 0), utc(2025, 11, 2, 13, 0)),
        # Sydney springs forward on Sun 5 Oct 2025 (02:00 AEST -> 03:00 AEDT):
        # 08:00 AEDT is 21:00 UTC the day before; a day earlier 22:00 UTC.
        ("Australia/Sydney", utc(2025, 10, 4, 12, 0), utc(2025, 10, 4, 21, 0)),
        ("Australia/Sydney", utc(2025, 10, 3, 12, 0), utc(2025, 10, 3, 22, 0)),
        # Already open: now.
        ("Europe/Paris", utc(2025, 3, 30, 10, 0), utc(2025, 3, 30, 10, 0)),
    ],
)
def test_next_opening_on_dst_change_days(tz, after, opening):
    assert next_window_open(start=EIGHT, end=NINE_PM, tz=tz, after=after) == opening


def test_opening_inside_a_dst_gap_opens_when_the_gap_ends():
    # 02:30 does not exist in New York on 9 Mar 2025: the window opens at 03:00 EDT.
    start, end = time(2, 30), time(4, 0)
    opening = next_window_open(
        start=start, end=end, tz="America/New_York", after=utc(2025, 3, 9, 5, 0)
    )
    assert opening == utc(2025, 3, 9, 7, 0)
    assert window_open(start=start, end=end, tz="America/New_York", at=opening)


@pytest.mark.django_db
def test_dispatch_sends_each_recipient_in_its_own_window_and_drops_nobody(
    make_account, superuser, enqueued, clock
):
    account = make_account(
        balance=Decimal("100"),
        requests_per_second=0,
        messages_per_second=0,
        send_window_start=EIGHT,
        send_window_end=NINE_PM,
        time_zone="Australia/Sydney",
    )
    new_york = ["+12125550101", "+12125550102"]
    paris = ["+33612345601"]
    sydney_mobiles = ["+61412345601", "+61412345602"]  # AU mobile: the account's zone
    campaign = make_campaign(account=account, phones=new_york + paris + sydney_mobiles)
    backend = RecordingBackend()
    # Sat 4 Oct 2025 23:30 UTC = Sun 09:30 AEDT (the DST change day in Sydney),
    # 01:30 CEST in Paris, 19:30 EDT in New York.
    clock.set(utc(2025, 10, 4, 23, 30))
    campaign_send_now(campaign=campaign, user=superuser)
    Campaign.objects.filter(pk=campaign.pk).update(scheduled_at=clock.now())

    run = campaign_dispatch(campaign_id=campaign.pk, backend=backend)
    assert run.state == "waiting"
    assert set(backend.sent) == set(new_york + sydney_mobiles)
    assert run.next_at == utc(2025, 10, 5, 6, 0)  # 08:00 CEST in Paris
    assert enqueued[-1] == (campaign.pk, utc(2025, 10, 5, 6, 0))
    waiting = Message.objects.get(campaign=campaign, phone=paris[0])
    assert waiting.status == Message.Status.QUEUED and waiting.time_zone == "Europe/Paris"
    zones = dict(Message.objects.filter(campaign=campaign).values_list("phone", "time_zone"))
    assert zones[new_york[0]] == "America/New_York"
    assert zones[sydney_mobiles[0]] == "Australia/Sydney"

    clock.set(utc(2025, 10, 5, 5, 59))
    assert campaign_dispatch(campaign_id=campaign.pk, backend=backend).state == "waiting"
    assert paris[0] not in backend.sent

    clock.set(utc(2025, 10, 5, 6, 0))
    assert campaign_dispatch(campaign_id=campaign.pk, backend=backend).state == "done"
    assert sorted(backend.sent.values()) == [1] * 5
