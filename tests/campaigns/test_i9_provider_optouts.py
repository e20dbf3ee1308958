"""A destination the provider washes for opt-out is skipped, not charged, and
the provider's opt-out list reaches the local opt-outs (issue 9)."""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal

import httpx
import pytest

from campaigns.dispatch import campaign_dispatch
from campaigns.models import Campaign, Message
from campaigns.provider_optouts import provider_optouts_sync, sync_provider_optouts
from campaigns.services import campaign_send_now
from contacts.models import OptOut
from contacts.services import optout_remove
from providers.backends.smseveryone import SmsEveryoneBackend
from providers.services import credits_reconcile
from tests.campaigns.engine_helpers import (
    assert_books_balance,
    assert_campaign_consistent,
    make_campaign,
    new_phones,
)
from tests.providers.contract import fakes
from tests.providers.contract.profile_smseveryone import CREDENTIALS, optouts

pytestmark = pytest.mark.django_db


def smseveryone(credits: int, opted_out: list[str]) -> fakes.FakeProvider:
    """SMS Everyone holding ``credits`` and an opt-out list; a create call
    is charged one credit per destination it keeps ("accepted N of M")."""
    fake = fakes.FakeProvider(base_path="/api")
    fake.state["optouts"] = {n.lstrip("+") for n in opted_out}
    fake.state["credits"] = credits

    def campaign(request, fake):
        body = json.loads(request.content)
        taken = [n for n in body["Destinations"] if n not in fake.state["optouts"]]
        fake.accepted.extend("+" + n for n in taken)
        fake.state["credits"] -= len(taken)
        return httpx.Response(
            200,
            json={
                "Code": 0,
                "CampaignId": 11967215,
                "Messages": len(taken),
                "Segments": 1,
                "Credits": len(taken),
            },
        )

    def settings(request, fake):
        return httpx.Response(
            200,
            json={
                "UserId": 9999,
                "AllowUnicode": True,
                "AllowInternational": False,
                "Credits": fake.state["credits"],
                "Code": 0,
            },
        )

    fake.route("POST", "/campaign", campaign)
    fake.route("POST", "/optouts", optouts)
    fake.route("POST", "/RetrieveUserSettings", settings)
    return fake


def test_accepted_1_of_2_ends_1_sent_1_skipped_charged_for_1_without_drift(
    make_account, superuser, enqueued, clock
):
    # Topped up on the simulator (no provider call), then moved to SMS Everyone.
    account = make_account(balance=Decimal("100"), requests_per_second=0, messages_per_second=0)
    account.backend, account.credentials = "smseveryone", CREDENTIALS
    account.save(update_fields=["backend", "credentials"])
    kept, washed = new_phones(2)
    fake = smseveryone(credits=100, opted_out=[washed])
    backend = SmsEveryoneBackend(credentials=CREDENTIALS, transport=fake.transport)
    campaign = make_campaign(account=account, phones=[kept, washed], body="Sale on now")
    campaign_send_now(campaign=campaign, user=superuser)

    for _ in range(5):
        if campaign_dispatch(campaign_id=campaign.pk, backend=backend).state == "done":
            break

    statuses = dict(Message.objects.filter(campaign=campaign).values_list("phone", "status"))
    assert statuses == {kept: "sent", washed: "skipped"}
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert (campaign.credits_charged, campaign.credits_reserved) == (Decimal("1"), 0)
    assert fake.accepted_counts() == Counter({kept: 1})
    drift = credits_reconcile(account=account, backend=backend)
    assert (drift.local_balance, drift.provider_balance, drift.ok) == (
        Decimal("99"),
        Decimal("99"),
        True,
    )
    assert_books_balance(account)
    assert_campaign_consistent(campaign)


def test_the_providers_opt_out_list_becomes_local_opt_outs(make_account):
    account = make_account(backend="smseveryone", credentials=CREDENTIALS)
    make_account(backend="thesmsworks")  # no opt-out list there: left alone
    fake = smseveryone(credits=0, opted_out=["+61400555555", "+61400999999"])
    OptOut.objects.create(phone="+61400999999", source=OptOut.Source.KEYWORD, reason="STOP")
    backend = SmsEveryoneBackend(credentials=CREDENTIALS, transport=fake.transport)

    assert provider_optouts_sync(account=account, backend=backend) == 1
    assert provider_optouts_sync(account=account, backend=backend) == 0  # idempotent

    added = OptOut.objects.get(phone="+61400555555")
    assert (added.source, added.source_reference) == (
        OptOut.Source.PROVIDER,
        f"provider:{account.pk}",
    )
    # The number opted out by a STOP keeps its first record.
    assert OptOut.objects.get(phone="+61400999999").source == OptOut.Source.KEYWORD


def test_the_periodic_sync_reports_an_account_that_cannot_answer(make_account):
    account = make_account(backend="smseveryone", credentials={})  # no credentials
    result = sync_provider_optouts()
    assert result["added"] == {}
    assert "username" in result["errors"][account.name]


def test_a_number_staff_opt_back_in_is_opted_back_in_at_the_provider_not_re_added(
    make_account, superuser
):
    # SMS Everyone washes every send against its list ("All SMS messages are
    # washed against your optout database"): a number opted back in here but
    # left on that list would still be dropped, and the sync would bring
    # the opt-out straight back.
    account = make_account(backend="smseveryone", credentials=CREDENTIALS)
    fake = smseveryone(credits=0, opted_out=["+61400555555", "+61400999999"])
    backend = SmsEveryoneBackend(credentials=CREDENTIALS, transport=fake.transport)
    assert provider_optouts_sync(account=account, backend=backend) == 2

    optout_remove(phone="+61400555555", user=superuser, reason="asked by phone")
    assert provider_optouts_sync(account=account, backend=backend) == 0

    assert not OptOut.objects.filter(phone="+61400555555").exists()
    assert fake.state["optouts"] == {"61400999999"}
    deletes = [c.json for c in fake.calls_to("/optouts") if c.json["Action"] == "delete"]
    assert deletes == [{"Action": "delete", "Originator": ["61400555555"]}]
    assert provider_optouts_sync(account=account, backend=backend) == 0  # nothing left to do
    assert len([c for c in fake.calls_to("/optouts") if c.json["Action"] == "delete"]) == 1


def test_a_provider_opt_out_newer_than_the_local_opt_in_wins(make_account, superuser):
    account = make_account(backend="smseveryone", credentials=CREDENTIALS)
    fake = smseveryone(credits=0, opted_out=["+61400555555"])
    backend = SmsEveryoneBackend(credentials=CREDENTIALS, transport=fake.transport)
    provider_optouts_sync(account=account, backend=backend)
    optout_remove(phone="+61400555555", user=superuser)
    # The number opted out again at the provider after that (a reply to its
    # opt-out number): that is the newer wish.
    fake.state["optout_added"] = {"61400555555": "2099-01-01 00:00:00"}

    assert provider_optouts_sync(account=account, backend=backend) == 1
    assert OptOut.objects.get(phone="+61400555555").source == OptOut.Source.PROVIDER
    assert not [c for c in fake.calls_to("/optouts") if c.json["Action"] == "delete"]
