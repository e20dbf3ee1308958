"""Opt-outs only grow: START lifts only an opt-out made by a STOP of the same
number on the same account; staff entries stay; every change is kept in the
number's history, removals included."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from campaigns.reports import inbound_apply
from contacts.models import OptOut, OptOutEvent
from contacts.services import optout_add, optout_opt_in, optout_remove
from providers.backends.base import InboundSms

pytestmark = pytest.mark.django_db

PHONE = "+447911100100"


def reply(body: str, ref: str) -> InboundSms:
    return InboundSms(
        from_number=PHONE,
        body=body,
        received_at=datetime(2024, 1, 2, 10, tzinfo=UTC),
        provider_ref=ref,
    )


@pytest.fixture
def two_accounts(make_account):
    return make_account(name="Tenant A"), make_account(name="Tenant B")


def test_start_never_lifts_a_staff_opt_out_with_a_reason(two_accounts, superuser):
    a, _ = two_accounts
    legal = "Legal: customer complaint, never contact"
    optout_add(phone=PHONE, source=OptOut.Source.MANUAL, reason=legal, user=superuser)
    [start] = inbound_apply(account=a, messages=[reply("START", "s1")])
    optout = OptOut.objects.get(phone=PHONE)
    assert (optout.source, optout.reason, optout.created_by) == ("manual", legal, superuser)
    event = OptOutEvent.objects.get(action="opt_in")
    assert (event.outcome, event.source_reference, event.account_id) == (
        "kept",
        f"inbound:{start.pk}",
        a.pk,
    )
    assert legal in event.reason


def test_start_on_another_account_does_not_lift_a_stop(two_accounts):
    a, b = two_accounts
    inbound_apply(account=a, messages=[reply("STOP", "a1")])
    inbound_apply(account=b, messages=[reply("START", "b1")])
    assert OptOut.objects.filter(phone=PHONE, source="keyword").exists()
    assert OptOutEvent.objects.get(action="opt_in").outcome == "kept"


def test_start_on_the_same_account_lifts_its_stop_and_the_history_keeps_both(two_accounts):
    a, _ = two_accounts
    [stop] = inbound_apply(account=a, messages=[reply("STOP", "a1")])
    [start] = inbound_apply(account=a, messages=[reply("start", "a2")])
    assert not OptOut.objects.filter(phone=PHONE).exists()
    history = list(
        OptOutEvent.objects.filter(phone=PHONE)
        .order_by("id")
        .values_list("action", "outcome", "source_reference")
    )
    assert history == [
        ("opt_out", "opted_out", f"inbound:{stop.pk}"),
        ("opt_in", "lifted", f"inbound:{start.pk}"),
    ]


@pytest.mark.parametrize("source", ["manual", "import", "provider"])
def test_only_keyword_opt_outs_can_be_lifted_by_start(source):
    optout_add(phone=PHONE, source=source, account_id=7)
    assert optout_opt_in(phone=PHONE, account_id=7) is False
    assert OptOut.objects.filter(phone=PHONE).exists()


def test_a_second_stop_is_recorded_but_keeps_the_first_opt_out(two_accounts):
    a, b = two_accounts
    inbound_apply(account=a, messages=[reply("STOP", "a1")])
    inbound_apply(account=b, messages=[reply("STOP", "b1")])
    # The first STOP (account A) still decides which START may lift it.
    assert OptOut.objects.get(phone=PHONE).source_account_id == a.pk
    assert list(OptOutEvent.objects.order_by("id").values_list("outcome", flat=True)) == [
        "opted_out",
        "already",
    ]


def test_removing_an_opt_out_keeps_who_removed_it_and_what_it_was(superuser):
    optout_add(phone=PHONE, source=OptOut.Source.MANUAL, reason="asked by phone")
    assert optout_remove(phone=PHONE, user=superuser, reason="consent form signed")
    assert not OptOut.objects.exists()
    event = OptOutEvent.objects.get(action="removed")
    assert event.created_by == superuser
    assert event.reason == "consent form signed (was entered by staff: asked by phone)"


def test_deleting_in_the_admin_keeps_a_record(client, superuser):
    optout = optout_add(phone=PHONE, source=OptOut.Source.MANUAL, reason="complaint")
    client.force_login(superuser)
    url = reverse("admin:contacts_optout_delete", args=[optout.pk])
    assert client.post(url, {"post": "yes"}).status_code == 302
    assert OptOutEvent.objects.filter(phone=PHONE, action="removed", created_by=superuser).exists()


def test_staff_see_the_history_of_a_number(client, operator, two_accounts):
    a, _ = two_accounts
    optout_add(phone=PHONE, source=OptOut.Source.MANUAL, reason="Legal: never contact")
    inbound_apply(account=a, messages=[reply("START", "s1")])
    client.force_login(operator)
    optout = OptOut.objects.get()
    page = client.get(reverse("admin:contacts_optout_change", args=[optout.pk]))
    assert page.status_code == 200
    text = page.content.decode()
    assert "History of this number" in text
    assert "Opt-out kept" in text and "Legal: never contact" in text
    listing = client.get(reverse("admin:contacts_optoutevent_changelist"), {"q": PHONE})
    assert listing.status_code == 200
    assert listing.content.decode().count(PHONE) >= 2


def test_the_history_cannot_be_edited_or_deleted(client, superuser):
    optout_add(phone=PHONE, source=OptOut.Source.MANUAL)
    event = OptOutEvent.objects.get()
    client.force_login(superuser)
    assert client.get(reverse("admin:contacts_optoutevent_add")).status_code == 403
    url = reverse("admin:contacts_optoutevent_delete", args=[event.pk])
    assert client.post(url, {"post": "yes"}).status_code == 403
    assert OptOutEvent.objects.filter(pk=event.pk).exists()
