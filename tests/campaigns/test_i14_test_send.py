"""Test send: a draft's message, rendered for one contact, goes to a staff
member's number as a one-recipient campaign of kind "test": charged once,
logged on the draft, and never counted in the draft's counters."""

from __future__ import annotations

from decimal import Decimal

import pytest

from campaigns.engine import campaign_dispatch
from campaigns.models import Campaign, CampaignEvent, Message
from campaigns.services import CampaignError, campaign_cancel
from campaigns.test_send import campaign_test_send
from contacts.models import Contact
from providers.models import CreditTransaction
from tests.campaigns.engine_helpers import assert_books_balance, make_campaign, new_phones

pytestmark = pytest.mark.django_db

OWN = "+61400999999"


@pytest.fixture
def account(make_account):
    return make_account(balance=Decimal("1000"), requests_per_second=0, messages_per_second=0)


def test_the_test_message_is_sent_charged_once_and_the_draft_does_not_move(
    account, superuser, enqueued
):
    draft = make_campaign(account=account, phones=new_phones(3))
    contact = Contact.objects.get(first_name="N1")
    test = campaign_test_send(campaign=draft, contact=contact, phone=OWN, user=superuser)
    assert test.kind == Campaign.Kind.TEST and test.status == Campaign.Status.SCHEDULED
    campaign_dispatch(campaign_id=test.pk)

    message = Message.objects.get(campaign=test)
    assert message.phone == OWN
    assert message.body == "Hi N1, sale on now"
    assert message.provider_ref  # the simulator accepted it
    charges = CreditTransaction.objects.filter(account=account, kind="charge")
    assert charges.count() == 1 and charges.get().reference == f"campaign:{test.pk}"
    assert_books_balance(account)

    draft.refresh_from_db()
    assert draft.status == Campaign.Status.DRAFT
    assert not Message.objects.filter(campaign=draft).exists()
    assert (draft.recipients_total, draft.sent_count, draft.credits_charged) == (0, 0, 0)
    event = CampaignEvent.objects.get(campaign=draft, action="test_send")
    assert OWN in event.detail and contact.phone in event.detail


def test_only_a_draft_can_be_tested(account, superuser, enqueued):
    campaign = make_campaign(account=account, phones=new_phones(1))
    campaign_cancel(campaign=campaign, user=superuser)
    campaign.refresh_from_db()
    with pytest.raises(CampaignError, match="Only a draft"):
        campaign_test_send(
            campaign=campaign, contact=Contact.objects.get(), phone=OWN, user=superuser
        )
    assert not Campaign.objects.filter(kind=Campaign.Kind.TEST).exists()


def test_a_short_balance_refuses_and_keeps_nothing(make_account, superuser, enqueued):
    account = make_account(balance=Decimal("0"))
    draft = make_campaign(account=account, phones=new_phones(1))
    with pytest.raises(CampaignError):
        campaign_test_send(campaign=draft, contact=Contact.objects.get(), phone=OWN, user=superuser)
    assert not Campaign.objects.filter(kind=Campaign.Kind.TEST).exists()
    assert not CampaignEvent.objects.filter(campaign=draft, action="test_send").exists()


def test_the_draft_page_has_the_button_and_the_page_sends(client, superuser, account, enqueued):
    draft = make_campaign(account=account, phones=new_phones(2))
    client.force_login(superuser)
    page = client.get(f"/admin/campaigns/campaign/{draft.pk}/change/").content.decode()
    url = f"/admin/campaigns/campaign/{draft.pk}/test-send/"
    assert f'href="{url}"' in page and "Send a test…" in page
    form = client.get(url)
    assert form.status_code == 200 and "not</strong> counted" in form.content.decode()
    contact = Contact.objects.get(first_name="N0")
    response = client.post(url, {"contact": contact.pk, "phone": "0400 999 999"})
    assert response.status_code == 302
    test = Campaign.objects.get(kind=Campaign.Kind.TEST)
    assert test.extra_numbers == OWN and test.body == "Hi N0, sale on now"


def test_a_bad_number_is_a_form_error(client, superuser, account, enqueued):
    draft = make_campaign(account=account, phones=new_phones(1))
    client.force_login(superuser)
    url = f"/admin/campaigns/campaign/{draft.pk}/test-send/"
    response = client.post(url, {"contact": Contact.objects.get().pk, "phone": "hello"})
    assert response.status_code == 200
    assert "is not a number we can send to" in response.content.decode()
    assert not Campaign.objects.filter(kind=Campaign.Kind.TEST).exists()
