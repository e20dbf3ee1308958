"""Account settings read from the provider, cached on the account, shown on
its page, used by the quote; timestamps read in the account's zone (issue 9)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from django.urls import reverse

from campaigns.models import Campaign
from campaigns.quote import campaign_quote
from providers.account_settings import account_settings_refresh
from providers.backends.smseveryone import SmsEveryoneBackend
from providers.tasks import refresh_account_settings

pytestmark = pytest.mark.django_db

CREDENTIALS = {"username": "jimsbusiness", "password": "s56sbdyte83fs"}
# The doc's two RetrieveUserSettings examples.
UNICODE_AU_ONLY = {
    "UserId": 9999,
    "AllowUnicode": True,
    "AllowInternational": False,
    "Credits": 116,
    "Code": 0,
}
NO_UNICODE_WORLDWIDE = {
    "UserId": 9998,
    "AllowUnicode": False,
    "AllowInternational": True,
    "Credits": 119,
    "Code": 0,
}


def answering(body: dict) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(200, json=body))


@pytest.fixture
def account(make_account):
    # Topped up on the simulator (no provider call), then moved to SMS Everyone.
    account = make_account(balance=Decimal("100"), default_sender="Acme")
    account.backend, account.credentials = "smseveryone", CREDENTIALS
    account.save(update_fields=["backend", "credentials"])
    return account


def refresh(account, body):
    backend = SmsEveryoneBackend(credentials=CREDENTIALS, transport=answering(body))
    return account_settings_refresh(account=account, backend=backend)


@pytest.mark.parametrize(
    ("body", "unicode", "international"),
    [(UNICODE_AU_ONLY, True, False), (NO_UNICODE_WORLDWIDE, False, True)],
)
def test_the_providers_settings_are_cached_on_the_account(account, body, unicode, international):
    refresh(account, body)
    account.refresh_from_db()
    assert (account.provider_allows_unicode, account.provider_allows_international) == (
        unicode,
        international,
    )
    assert account.provider_home_country == "AU"
    assert account.provider_settings_checked_at is not None


def campaign(account, body: str, numbers: str) -> Campaign:
    return Campaign.objects.create(name="Promo", account=account, body=body, extra_numbers=numbers)


def test_the_quote_refuses_unicode_on_an_account_without_it(account):
    refresh(account, NO_UNICODE_WORLDWIDE)
    quote = campaign_quote(campaign=campaign(account, "Café ☕ today", "+61400000001"))
    assert not quote.ok
    assert any("Unicode" in p and "may not send Unicode" in p for p in quote.problems)
    # A GSM text is fine.
    assert campaign_quote(campaign=campaign(account, "Cafe today", "+61400000001")).ok


def test_the_quote_refuses_numbers_abroad_on_an_account_limited_to_its_country(account):
    refresh(account, UNICODE_AU_ONLY)
    quote = campaign_quote(
        campaign=campaign(account, "Hello", "+61400000001\n+6421123456\n+447400123190")
    )
    assert any(p.startswith("2 recipients are outside AU") for p in quote.problems)
    assert campaign_quote(campaign=campaign(account, "Hello", "+61400000001")).ok


def test_settings_never_read_refuse_nothing(account):
    quote = campaign_quote(campaign=campaign(account, "Café ☕", "+6421123456"))
    assert quote.ok, quote.problems


def test_replies_are_read_in_the_accounts_time_zone(account):
    # The account is set to UTC at SMS Everyone: a reply stamped 10:01:10 was
    # received at 10:01:10 UTC, not 11 hours earlier (Sydney).
    account.provider_time_zone = "UTC"
    account.save(update_fields=["provider_time_zone"])
    reply = {
        "Count": 1,
        "Messages": [
            {
                "Received": "2020-07-27T10:01:10",
                "Originator": "61400123456",
                "Recipient": "61400190444",
                "MessageText": "Thanks, yes i will be at the appointment",
                "ReferenceId": "4499850",
            }
        ],
    }
    backend = account.get_backend(transport=answering(reply))
    [received] = backend.fetch_replies()
    assert received.received_at == datetime(2020, 7, 27, 10, 1, 10, tzinfo=UTC)


def test_without_a_zone_the_documented_default_stays_sydney(account):
    backend = account.get_backend(transport=answering({}))
    assert str(backend.tz) == "Australia/Sydney"


def test_the_account_page_shows_the_settings(account, client, superuser):
    refresh(account, NO_UNICODE_WORLDWIDE)
    client.force_login(superuser)
    url = reverse("admin:providers_provideraccount_change", args=[account.pk])
    page = client.get(url).content.decode()
    assert "Unicode (UCS-2) texts: not allowed" in page
    assert "International numbers: allowed" in page


def test_the_periodic_refresh_reads_each_account_and_reports_failures(make_account, account):
    simulator = make_account(backend="simulator", credentials={"allow_unicode": False})
    account.credentials = {}  # refused before any call: nothing to authenticate with
    account.save(update_fields=["credentials"])
    result = refresh_account_settings(account_ids=[account.pk, simulator.pk])
    assert result["checked"] == 1
    assert list(result["errors"]) == [account.name]
    assert "username" in result["errors"][account.name]
    simulator.refresh_from_db()
    assert (simulator.provider_allows_unicode, simulator.provider_home_country) == (False, "AU")
