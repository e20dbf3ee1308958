"""Replying from a thread: one message through the same account, refused for
opted-out numbers, charged like any other message — once."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from campaigns.inbox import conversation_reply
from campaigns.models import Campaign, Conversation, Message
from campaigns.reports import inbound_apply
from campaigns.states import CampaignError
from contacts.models import OptOut
from providers.backends.base import InboundSms
from providers.models import CreditTransaction

pytestmark = pytest.mark.django_db
PHONE = "+61412300100"


def _conversation(account, body="Is the shop open Sunday?"):
    sms = InboundSms(
        from_number=PHONE,
        body=body,
        received_at=datetime(2024, 1, 2, 9, tzinfo=UTC),
        provider_ref="r1",
    )
    inbound_apply(account=account, messages=[sms])
    return Conversation.objects.get(account=account, phone=PHONE)


def test_a_reply_to_an_opted_out_number_is_refused_and_nothing_is_written(make_account, superuser):
    account = make_account(balance=10)
    conversation = _conversation(account, body="STOP")
    assert OptOut.objects.filter(phone=PHONE).exists()
    with pytest.raises(CampaignError, match="opted out"):
        conversation_reply(conversation=conversation, user=superuser, body="Sorry to see you go")
    assert not Campaign.objects.exists()
    assert not CreditTransaction.objects.filter(kind="reserve").exists()


def test_a_reply_is_one_message_on_the_same_account_reserved_and_charged_once(
    make_account, superuser
):
    from campaigns.tasks import dispatch_campaign

    account = make_account(balance=10)
    conversation = _conversation(account)
    campaign = conversation_reply(conversation=conversation, user=superuser, body="Yes, 10 to 4")
    assert (campaign.kind, campaign.account_id) == (Campaign.Kind.REPLY, account.pk)
    assert campaign.credits_reserved == Decimal("1")
    for _ in range(3):  # a retried dispatch must not send or charge again
        dispatch_campaign(campaign.pk)
    assert Message.objects.filter(campaign=campaign, phone=PHONE).count() == 1
    reserves = CreditTransaction.objects.filter(account=account, kind="reserve")
    assert reserves.count() == 1
    charges = CreditTransaction.objects.filter(account=account, kind="charge")
    assert sum(c.amount for c in charges) == Decimal("-1")
    conversation.refresh_from_db()
    assert conversation.handled
