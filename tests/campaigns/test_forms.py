"""The campaign form refuses a sender ID the chosen provider would refuse."""

from __future__ import annotations

import pytest

from campaigns.forms import CampaignForm

pytestmark = pytest.mark.django_db


def campaign_errors(account, sender: str) -> dict[str, list[str]]:
    form = CampaignForm(
        data={"name": "Promo", "account": account.pk, "sender": sender, "body": "Hi"}
    )
    form.is_valid()
    return form.errors


def test_a_sender_the_provider_accepts_is_fine(make_account):
    account = make_account(backend="thesmsworks")
    assert campaign_errors(account, "Acme") == {}


def test_a_sender_is_checked_against_the_accounts_provider(make_account):
    assert campaign_errors(make_account(backend="simulator"), "AB") == {}
    assert campaign_errors(make_account(backend="thesmsworks"), "AB")["sender"] == [
        "The sender ID 'AB' is 2 characters; The SMS Works accepts 3 to 11 characters for an "
        "alphanumeric sender."
    ]


def test_an_empty_sender_means_the_accounts_default(make_account):
    account = make_account(backend="thesmsworks", default_sender="Acme")
    assert campaign_errors(account, "") == {}
