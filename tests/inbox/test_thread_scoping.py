"""A reseller sees only the conversations of its own accounts: the list,
its filters, the thread and every action of the thread; an opt-out made
outside its accounts is not its to lift. Operators see every conversation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from campaigns.inbox import conversation_opt_in
from campaigns.models import Campaign, Conversation
from campaigns.reports import inbound_apply
from campaigns.states import CampaignError
from contacts.models import OptOut
from providers.backends.base import InboundSms

pytestmark = pytest.mark.django_db
T0 = datetime(2024, 1, 2, 9, tzinfo=UTC)


def reply(account, phone: str, body: str, ref: str) -> Conversation:
    inbound_apply(
        account=account,
        messages=[InboundSms(from_number=phone, body=body, received_at=T0, provider_ref=ref)],
    )
    return Conversation.objects.get(account=account, phone=phone)


@pytest.fixture
def tenants(make_reseller, make_account):
    alice, bob = make_reseller("alice"), make_reseller("bob")
    alice_main = make_account(name="Alice Main", owners=[alice], balance=10)
    alice_sub = make_account(name="Alice Sub", parent=alice_main, balance=10)
    bob_main = make_account(name="Bob Main", owners=[bob], balance=10)
    return {
        "alice": alice,
        "bob": bob,
        "mine": reply(alice_sub, "+61412300100", "hello alice", "a1"),
        "foreign": reply(bob_main, "+61412300200", "bob's secret", "b1"),
        "alice_main": alice_main,
        "bob_main": bob_main,
    }


ACTIONS = [
    ("change", "get", {}),
    ("live", "get", {}),
    ("older", "get", {"before": "1700000000000000.0.1"}),
    ("measure", "post", {"text": "hi"}),
    ("reply", "post", {"body": "hi"}),
    ("optout", "post", {"action": "opt_out", "out-reason": "asked"}),
    ("handled", "post", {"handled": "1"}),
]


def test_reseller_list_and_filters_show_only_its_own_conversations(client, tenants):
    client.force_login(tenants["alice"])
    response = client.get(reverse("admin:campaigns_conversation_changelist"))
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [tenants["mine"]]
    page = response.content.decode()
    assert "hello alice" in page and "Alice Sub" in page
    assert "Bob" not in page and "secret" not in page
    searched = client.get(reverse("admin:campaigns_conversation_changelist"), {"q": "0412 300 200"})
    assert list(searched.context["cl"].result_list) == []
    by_foreign_account = client.get(
        reverse("admin:campaigns_conversation_changelist"),
        {"account__id__exact": tenants["bob_main"].pk},
    )
    assert list(by_foreign_account.context["cl"].result_list) == []


@pytest.mark.parametrize(("name", "method", "data"), ACTIONS)
def test_reseller_reaches_its_own_thread_but_never_a_foreign_one(
    client, tenants, name, method, data
):
    client.force_login(tenants["alice"])
    foreign = reverse(f"admin:campaigns_conversation_{name}", args=[tenants["foreign"].pk])
    assert getattr(client, method)(foreign, data).status_code == 404
    own = reverse(f"admin:campaigns_conversation_{name}", args=[tenants["mine"].pk])
    assert getattr(client, method)(own, data).status_code in (200, 302)
    # Nothing happened to the foreign conversation or its number.
    foreign_row = Conversation.objects.get(pk=tenants["foreign"].pk)
    assert not foreign_row.handled and foreign_row.unread_count == 1
    assert not OptOut.objects.filter(phone="+61412300200").exists()
    assert not Campaign.objects.filter(account=tenants["bob_main"]).exists()


def test_reseller_reply_goes_through_its_own_account(client, tenants):
    client.force_login(tenants["alice"])
    own = reverse("admin:campaigns_conversation_reply", args=[tenants["mine"].pk])
    assert client.post(own, {"body": "Thanks!"}).status_code == 302
    campaign = Campaign.objects.get(kind=Campaign.Kind.REPLY)
    assert campaign.account_id == tenants["mine"].account_id
    page = client.get(reverse("admin:campaigns_conversation_change", args=[tenants["mine"].pk]))
    # No link to campaign pages the reseller may not open.
    assert reverse("admin:campaigns_campaign_change", args=[campaign.pk]) not in (
        page.content.decode()
    )


def test_reseller_cannot_lift_an_opt_out_made_outside_its_accounts(client, tenants, superuser):
    mine = tenants["mine"]
    OptOut.objects.create(phone=mine.phone, source=OptOut.Source.MANUAL, reason="by head office")
    with pytest.raises(CampaignError, match="outside your accounts"):
        conversation_opt_in(conversation=mine, user=tenants["alice"], reason="asked")
    client.force_login(tenants["alice"])
    response = client.post(
        reverse("admin:campaigns_conversation_optout", args=[mine.pk]),
        {"action": "opt_in", "in-reason": "asked"},
    )
    assert response.status_code == 400 and b"outside your accounts" in response.content
    assert OptOut.objects.filter(phone=mine.phone).exists()
    # Its own opt-out (made from its thread) it may lift.
    OptOut.objects.all().delete()
    client.post(
        reverse("admin:campaigns_conversation_optout", args=[mine.pk]),
        {"action": "opt_out", "out-reason": "asked by phone"},
    )
    assert conversation_opt_in(conversation=mine, user=tenants["alice"], reason="asked again")
    assert not OptOut.objects.filter(phone=mine.phone).exists()


def test_operator_sees_every_conversation(client, operator, tenants):
    client.force_login(operator)
    response = client.get(reverse("admin:campaigns_conversation_changelist"))
    assert set(response.context["cl"].result_list) == {tenants["mine"], tenants["foreign"]}
    thread = reverse("admin:campaigns_conversation_change", args=[tenants["foreign"].pk])
    assert client.get(thread).status_code == 200


def test_an_opt_out_recorded_outside_a_resellers_accounts_shows_no_reason_or_author(
    client, tenants, superuser
):
    # The number writes to Alice's account too, but Bob's client (through
    # staff) opted it out with a reason that names that client.
    shared = reply(tenants["alice_main"], "+61412300200", "hi alice", "a2")
    from contacts.services import optout_add

    optout_add(
        phone="+61412300200",
        source=OptOut.Source.MANUAL,
        reason="Bob's client Acme Pty asked, ticket 4411",
        user=superuser,
        account_id=tenants["bob_main"].pk,
    )
    url = reverse("admin:campaigns_conversation_change", args=[shared.pk])

    client.force_login(tenants["alice"])
    page = client.get(url).content.decode()
    assert "Acme" not in page and "4411" not in page
    assert "recorded outside your accounts" in page
    assert "Opted out since" in page  # the opt-out itself is never hidden
    live = client.get(reverse("admin:campaigns_conversation_live", args=[shared.pk]))
    assert "Acme" not in live.content.decode()

    client.force_login(superuser)
    assert "Acme Pty asked, ticket 4411" in client.get(url).content.decode()
