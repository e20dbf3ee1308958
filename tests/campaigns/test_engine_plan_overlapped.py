"""PostgreSQL: planning renders chunks while a writer thread inserts them.

Transactional tests (``transaction=True``): the writer has its own
connection, which sees only what is committed; inside the usual test
transaction planning takes the two-phase path instead.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.db import connection

from campaigns.engine import campaign_plan
from campaigns.engine import plan as engine_plan
from campaigns.engine.lease import Heartbeat
from campaigns.models import Campaign, Message
from campaigns.services import campaign_send_now
from contacts.models import Contact
from tests.campaigns.engine_helpers import (
    assert_books_balance,
    assert_campaign_consistent,
    make_campaign,
    new_phones,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="the overlapped plan is PostgreSQL's"
    ),
]

#: Every character COPY's text format must escape, and some it must not touch.
TRICKY = ["tab\there", "line\nbreak", "back\\slash", "cr\rhere", "\\N", "Zoë 😀 'q' \"d\"", ""]


@pytest.fixture
def campaign(make_account, superuser, enqueued, monkeypatch):
    # Several chunks, several queued, both writers busy.
    monkeypatch.setattr(engine_plan, "PLAN_COPY_CHUNK", 100)
    account = make_account(balance=Decimal("10000"), requests_per_second=0)
    phones = new_phones(350)
    campaign = make_campaign(
        account=account,
        phones=phones,
        body="{{ first_name }}|x",
        extra_numbers=new_phones(1)[0],  # a recipient without a contact (NULL)
    )
    for i, phone in enumerate(phones):
        Contact.objects.filter(phone=phone).update(first_name=TRICKY[i % len(TRICKY)])
    campaign_send_now(campaign=campaign, user=superuser)
    return Campaign.objects.get(pk=campaign.pk)


def test_every_recipient_planned_once_with_its_exact_text(campaign):
    used: list[bool] = []
    real = engine_plan._plan_overlapped

    def spy(*args):
        used.append(True)
        return real(*args)

    engine_plan._plan_overlapped = spy
    try:
        assert campaign_plan(campaign_id=campaign.pk) is True
    finally:
        engine_plan._plan_overlapped = real
    assert used == [True]

    messages = Message.objects.filter(campaign=campaign)
    assert messages.count() == 351
    expected = {
        c.phone: f"{c.first_name}|x"
        for c in Contact.objects.filter(lists__campaigns=campaign).only("phone", "first_name")
    }
    stored = dict(messages.exclude(contact=None).values_list("phone", "body"))
    assert stored == expected  # every tab, newline, backslash and "\N" as written
    assert messages.filter(contact=None).count() == 1
    campaign.refresh_from_db()
    assert campaign.planned and campaign.recipients_total == 351
    assert_campaign_consistent(campaign)
    assert_books_balance(campaign.account)


def test_a_writer_error_is_raised_and_a_rerun_completes_the_plan_once(campaign, monkeypatch):
    real = engine_plan._PlanCopy.insert_block
    calls = []

    def fail_third(self, block):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the database went away")
        return real(self, block)

    monkeypatch.setattr(engine_plan._PlanCopy, "insert_block", fail_third)
    with pytest.raises(RuntimeError, match="went away"):
        campaign_plan(campaign_id=campaign.pk)
    # Two chunks went in before; the other writer may have been inserting one
    # more when the error came: whole chunks, and then nothing.
    written = Message.objects.filter(campaign=campaign).count()
    assert written % 100 == 0 and 200 <= written <= 200 + 100 * (engine_plan.PLAN_WRITERS - 1)
    assert not Campaign.objects.get(pk=campaign.pk).planned

    monkeypatch.setattr(engine_plan._PlanCopy, "insert_block", real)
    assert campaign_plan(campaign_id=campaign.pk) is True
    assert Message.objects.filter(campaign=campaign).count() == 351
    assert len(set(Message.objects.filter(campaign=campaign).values_list("phone"))) == 351
    assert_campaign_consistent(campaign)


def test_a_lost_lease_stops_the_writer_and_plans_nothing_more(campaign):
    not_ours = Heartbeat(campaign.pk, uuid.uuid4(), enabled=False)  # renews at every chunk
    assert campaign_plan(campaign_id=campaign.pk, lease=not_ours) is False
    # The first chunk of each writer only (each checks the lease after it).
    written = Message.objects.filter(campaign=campaign).count()
    assert written % 100 == 0 and 100 <= written <= 100 * engine_plan.PLAN_WRITERS
    assert not Campaign.objects.get(pk=campaign.pk).planned
