"""A draft's page does not re-quote a big draft on every load (cached, on demand)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from campaigns import quote as quote_module
from campaigns.models import Campaign
from contacts.models import Contact, ContactList, ListMembership

pytestmark = pytest.mark.django_db


@pytest.fixture
def draft(make_account):
    account = make_account(balance=Decimal("100"))
    audience = ContactList.objects.create(name="Audience")
    for i in range(3):
        contact = Contact.objects.create(phone=f"+6141230010{i}")
        ListMembership.objects.create(contact=contact, contact_list=audience)
    campaign = Campaign.objects.create(name="Draft", account=account, body="Hi", sender="Shop")
    campaign.lists.add(audience)
    return campaign


@pytest.fixture
def quotes(monkeypatch):
    calls = []
    real = quote_module.campaign_quote

    def counting(*, campaign):
        calls.append(campaign.pk)
        return real(campaign=campaign)

    monkeypatch.setattr(quote_module, "campaign_quote", counting)
    return calls


def _page(client, campaign, query=""):
    response = client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/{query}")
    assert response.status_code == 200
    return response.content.decode()


def test_small_draft_is_quoted_once_then_served_from_the_cache(admin_client, draft, quotes):
    first = _page(admin_client, draft)
    assert 'class="quote-recipients">3<' in first and "Quote again" in first
    _page(admin_client, draft)
    assert quotes == [draft.pk]


def test_big_draft_is_quoted_only_on_demand(admin_client, draft, quotes, monkeypatch):
    monkeypatch.setattr(quote_module, "LIVE_QUOTE_LIMIT", 2)
    page = _page(admin_client, draft)
    assert "Quote it now" in page and "quote-recipients" not in page
    assert quotes == []
    page = _page(admin_client, draft, "?quote=refresh")
    assert 'class="quote-recipients">3<' in page
    page = _page(admin_client, draft)  # from the cache
    assert 'class="quote-recipients">3<' in page
    assert quotes == [draft.pk]


def test_an_edit_of_the_draft_is_quoted_again(admin_client, draft, quotes):
    _page(admin_client, draft)
    draft.body = "Hello there"
    draft.save()
    _page(admin_client, draft)
    assert quotes == [draft.pk, draft.pk]
