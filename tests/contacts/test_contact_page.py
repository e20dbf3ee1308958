"""The contact page: may the number be texted, its lists, what it received
and said; the list finds a number typed in any format."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, InboundMessage, Message
from contacts.models import Contact, ContactList, ListMembership
from contacts.services import optout_add

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client, superuser):
    client.force_login(superuser)
    return client


def test_search_finds_a_number_typed_in_national_format(staff):
    wanted = Contact.objects.create(phone="+61412300100", first_name="Ann")
    Contact.objects.create(phone="+61412300199", first_name="Bob")

    page = staff.get(reverse("admin:contacts_contact_changelist"), {"q": "0412 300 100"})

    assert list(page.context["cl"].result_list) == [wanted]


def test_search_by_name_still_works(staff):
    ann = Contact.objects.create(phone="+61412300100", first_name="Ann")
    Contact.objects.create(phone="+61412300199", first_name="Bob")

    page = staff.get(reverse("admin:contacts_contact_changelist"), {"q": "Ann"})

    assert list(page.context["cl"].result_list) == [ann]


def test_the_list_shows_and_filters_the_opt_out_state(staff, superuser):
    out = Contact.objects.create(phone="+61412300100", first_name="Out")
    ok = Contact.objects.create(phone="+61412300199", first_name="Ok")
    optout_add(phone=out.phone, source="manual", user=superuser, reason="Asked by phone")
    url = reverse("admin:contacts_contact_changelist")

    page = staff.get(url).content.decode()
    assert "No — opted out" in page and "Asked by phone" in page

    assert list(staff.get(url, {"opted_out": "yes"}).context["cl"].result_list) == [out]
    assert list(staff.get(url, {"opted_out": "no"}).context["cl"].result_list) == [ok]


def test_the_page_shows_lists_messages_and_replies(staff, make_account, superuser):
    account = make_account(balance=Decimal("10"))
    contact = Contact.objects.create(phone="+61412300100", first_name="Ann")
    members = ContactList.objects.create(name="VIPs")
    ListMembership.objects.create(contact=contact, contact_list=members)
    campaign = Campaign.objects.create(name="Spring sale", account=account, body="Hi")
    Message.objects.create(
        campaign=campaign,
        phone=contact.phone,
        body="Hi Ann, spring sale on now",
        status=Message.Status.DELIVERED,
        sent_at=timezone.now(),
    )
    InboundMessage.objects.create(
        account=account,
        phone=contact.phone,
        body="STOP",
        action="opt_out",
        campaign=campaign,
        received_at=timezone.now(),
    )
    optout_add(phone=contact.phone, source="keyword", user=superuser)

    page = staff.get(reverse("admin:contacts_contact_change", args=[contact.pk])).content.decode()

    assert "VIPs" in page
    assert "Hi Ann, spring sale on now" in page and "Delivered" in page
    assert reverse("admin:campaigns_campaign_change", args=[campaign.pk]) in page
    assert "STOP (opted out)" in page
    assert "No — opted out" in page
    assert "q=%2B61412300100" in page  # the links to all messages and replies
