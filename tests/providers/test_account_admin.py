"""The provider account form: sender IDs and country rates are checked
before they are saved, with a message saying what is wrong."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from providers.admin import ProviderAccountForm
from providers.forms import CREDENTIAL_FIELD_NAMES
from providers.models import ProviderAccount

pytestmark = pytest.mark.django_db


def form_data(**overrides) -> dict:
    data = {
        "name": "Acme",
        "backend": "simulator",
        "default_sender": "",
        "is_active": "on",
        "requests_per_second": "5",
        "messages_per_second": "100",
        "time_zone": "UTC",
        "credits_per_segment": "1",
        "low_balance_threshold": "0",
        "country_rates": "{}",
        # Every backend's credentials filled in (an active account needs them).
        **{name: "cred-value" for name in CREDENTIAL_FIELD_NAMES},
    }
    data.update(overrides)
    if not isinstance(data["country_rates"], str):
        data["country_rates"] = json.dumps(data["country_rates"])
    return data


def errors(**overrides) -> dict[str, list[str]]:
    form = ProviderAccountForm(data=form_data(**overrides))
    form.is_valid()
    return form.errors


def cleaned(**overrides) -> dict:
    form = ProviderAccountForm(data=form_data(**overrides))
    assert form.is_valid(), form.errors
    return form.cleaned_data


# ------------------------------------------------------------ default sender


def test_a_valid_default_sender_is_accepted():
    assert cleaned(backend="thesmsworks", default_sender="Acme")["default_sender"] == "Acme"
    assert cleaned(backend="smseveryone", default_sender="61400123456")["default_sender"]


def test_the_default_sender_is_checked_against_the_chosen_providers_rules():
    # One letter is a fine sender on the simulator, not on The SMS Works (3 to 11).
    assert "default_sender" not in errors(backend="simulator", default_sender="A")
    assert errors(backend="thesmsworks", default_sender="A")["default_sender"] == [
        "The sender ID 'A' is 1 characters; The SMS Works accepts 3 to 11 characters for an "
        "alphanumeric sender."
    ]


def test_a_sender_with_forbidden_characters_names_them():
    [message] = errors(backend="smseveryone", default_sender="Acme!Shop")["default_sender"]
    assert "'!'" in message and "SMS Everyone allows only letters A-Z and digits" in message


def test_an_empty_default_sender_is_allowed_campaigns_may_set_their_own():
    assert cleaned(backend="smseveryone", default_sender="")["default_sender"] == ""


# ------------------------------------------------------------- country rates


def test_country_rates_are_normalised_to_upper_case_codes_and_cents():
    rates = cleaned(country_rates={"gb": "2", " nz ": 1.5, "US": "0.75"})["country_rates"]
    assert rates == {"GB": "2.00", "NZ": "1.50", "US": "0.75"}


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("UK", 'use "GB" for the United Kingdom'),
        ("GBR", "two letters"),
        ("44", "two letters"),
        ("XX", "not a region phonenumbers knows"),
        ("", "two letters"),
    ],
)
def test_a_key_that_is_not_a_known_iso_region_is_refused_by_name(key, hint):
    [message] = errors(country_rates={key: "2"})["country_rates"]
    assert repr(key) in message and hint in message


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("0", "more than zero"),
        ("-1", "more than zero"),
        ("abc", "a number of credits per segment"),
        ("1.234", "at most 2 decimal places"),
        (True, "a number of credits per segment"),
        (None, "a number of credits per segment"),
        ("NaN", "a number of credits per segment"),
        ("1000000", "at most 999999.99"),
    ],
)
def test_a_rate_that_is_not_a_positive_amount_is_refused_with_its_country(value, hint):
    [message] = errors(country_rates={"GB": value})["country_rates"]
    assert "'GB'" in message and hint in message


def test_the_same_country_twice_is_refused():
    [message] = errors(country_rates={"gb": "2", "GB": "3"})["country_rates"]
    assert "'gb'" in message and "'GB'" in message


def test_country_rates_must_be_an_object():
    [message] = errors(country_rates=[["GB", "2"]])["country_rates"]
    assert "object" in message and '{"GB": "2"' in message


def test_every_bad_entry_is_reported_at_once():
    assert len(errors(country_rates={"UK": "2", "NZ": "0", "AU": "1"})["country_rates"]) == 2


def test_the_admin_saves_normalised_rates(client, superuser):
    client.force_login(superuser)
    response = client.post(
        reverse("admin:providers_provideraccount_add"),
        {
            **form_data(country_rates={"gb": "2", "au": "1.5"}, default_sender="Acme"),
            "sub_accounts-TOTAL_FORMS": "0",
            "sub_accounts-INITIAL_FORMS": "0",
            "ledger-TOTAL_FORMS": "0",
            "ledger-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    account = ProviderAccount.objects.get(name="Acme")
    assert account.country_rates == {"AU": "1.50", "GB": "2.00"}
    assert account.default_sender == "Acme"


def test_the_admin_shows_what_is_wrong_and_saves_nothing(client, superuser):
    client.force_login(superuser)
    response = client.post(
        reverse("admin:providers_provideraccount_add"),
        {
            **form_data(backend="thesmsworks", country_rates={"UK": "2"}, default_sender="A"),
            "sub_accounts-TOTAL_FORMS": "0",
            "sub_accounts-INITIAL_FORMS": "0",
            "ledger-TOTAL_FORMS": "0",
            "ledger-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200
    form_errors = response.context["adminform"].form.errors
    assert set(form_errors) == {"country_rates", "default_sender"}
    assert not ProviderAccount.objects.exists()
