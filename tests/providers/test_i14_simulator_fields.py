"""The simulator's knobs are account form fields that change only what is
edited (typing a JSON object replaced every stored knob: the simulator's
prices, failing numbers and balance were lost), with clear errors."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from providers.forms import ProviderAccountForm
from providers.models import ProviderAccount
from providers.simulator_fields import mix_field_name, sim_field_name

pytestmark = pytest.mark.django_db

KNOBS = {
    "seed": 7,
    "country_rates": {"GB": "2"},
    "credits_per_segment": 1,
    "fail_numbers": ["+61400000001"],
    "initial_balance": 500,
    "reply_rate": 0.05,
    "mix": {"delivered": 0.8, "undelivered": 0.2},
}


def make_simulator() -> ProviderAccount:
    return ProviderAccount.objects.create(
        name="Sim",
        backend="simulator",
        credentials=dict(KNOBS),
        country_rates={"GB": "2.00"},
    )


def page_data(account: ProviderAccount, **edits) -> dict:
    """What the browser posts back from the change page, with ``edits``."""
    form = ProviderAccountForm(instance=account)
    data = {}
    for name in form.fields:
        value = form[name].value()
        if name in ("owners",):
            continue
        if isinstance(value, bool):
            if value:
                data[name] = "on"
            continue
        if isinstance(value, dict):
            value = json.dumps(value)
        data[name] = "" if value is None else str(value)
    data.update(edits)
    return {k: v for k, v in data.items() if v is not None}


def admin_post(client, url, data):
    return client.post(
        url,
        {
            **data,
            "sub_accounts-TOTAL_FORMS": "0",
            "sub_accounts-INITIAL_FORMS": "0",
            "ledger-TOTAL_FORMS": "0",
            "ledger-INITIAL_FORMS": "0",
        },
    )


def test_the_change_page_shows_the_stored_knobs(client, superuser):
    account = make_simulator()
    client.force_login(superuser)
    page = client.get(reverse("admin:providers_provideraccount_change", args=[account.pk]))
    html = page.content.decode()
    assert f'name="{sim_field_name("reply_rate")}"' in html
    assert 'value="+61400000001"' in html
    assert f'name="{mix_field_name("delivered")}" value="0.8"' in html


def test_editing_one_knob_keeps_every_other(client, superuser):
    account = make_simulator()
    client.force_login(superuser)
    url = reverse("admin:providers_provideraccount_change", args=[account.pk])
    response = admin_post(client, url, page_data(account, **{sim_field_name("reply_rate"): "0.3"}))
    assert response.status_code == 302, response.context["adminform"].form.errors
    account.refresh_from_db()
    assert account.credentials == {**KNOBS, "reply_rate": 0.3}


def test_saving_without_edits_changes_nothing():
    account = make_simulator()
    form = ProviderAccountForm(data=page_data(account), instance=account)
    assert form.is_valid(), form.errors
    form.save()
    account.refresh_from_db()
    assert account.credentials == KNOBS


def test_an_emptied_knob_goes_back_to_its_default():
    account = make_simulator()
    form = ProviderAccountForm(
        data=page_data(account, **{sim_field_name("fail_numbers"): ""}), instance=account
    )
    assert form.is_valid(), form.errors
    form.save()
    account.refresh_from_db()
    assert "fail_numbers" not in account.credentials
    assert account.credentials["country_rates"] == {"GB": "2"}


def test_the_mix_is_stored_when_it_adds_up_to_one():
    account = make_simulator()
    edits = {mix_field_name("delivered"): "0.5", mix_field_name("failed"): "0.3"}
    form = ProviderAccountForm(data=page_data(account, **edits), instance=account)
    assert form.is_valid(), form.errors
    form.save()
    account.refresh_from_db()
    assert account.credentials["mix"] == {"delivered": 0.5, "undelivered": 0.2, "failed": 0.3}
    assert account.credentials["seed"] == 7


def test_a_mix_that_does_not_add_up_to_one_is_refused():
    account = make_simulator()
    form = ProviderAccountForm(
        data=page_data(account, **{mix_field_name("delivered"): "0.9"}), instance=account
    )
    assert not form.is_valid()
    assert form.errors[mix_field_name("delivered")] == [
        "The outcome mix adds up to 1.1, not 1: adjust the shares so that together they make 1 "
        "(e.g. 0.9 delivered, 0.1 undelivered)."
    ]
    account.refresh_from_db()
    assert account.credentials == KNOBS


def test_a_negative_delay_is_refused():
    account = make_simulator()
    form = ProviderAccountForm(
        data=page_data(account, **{sim_field_name("delivery_delay"): "-3"}), instance=account
    )
    assert not form.is_valid()
    assert form.errors[sim_field_name("delivery_delay")] == [
        "Ensure this value is greater than or equal to 0."
    ]


def test_a_reply_rate_above_one_is_refused():
    account = make_simulator()
    form = ProviderAccountForm(
        data=page_data(account, **{sim_field_name("reply_rate"): "1.5"}), instance=account
    )
    assert not form.is_valid()
    assert sim_field_name("reply_rate") in form.errors


def test_a_new_simulator_account_gets_only_the_edited_knobs():
    data = page_data(ProviderAccount(backend="simulator"))
    data.update(
        {
            "name": "New sim",
            "backend": "simulator",
            "is_active": "on",
            "country_rates": "{}",
            sim_field_name("delivery_delay"): "2",
        }
    )
    form = ProviderAccountForm(data=data)
    assert form.is_valid(), form.errors
    account = form.save()
    assert account.credentials == {"delivery_delay": 2.0}


def test_a_json_object_still_applies_with_the_fields_on_top():
    account = make_simulator()
    edits = {"credentials_input": '{"seed": 9}', sim_field_name("reply_rate"): "0.2"}
    form = ProviderAccountForm(data=page_data(account, **edits), instance=account)
    assert form.is_valid(), form.errors
    form.save()
    account.refresh_from_db()
    assert account.credentials == {"seed": 9, "reply_rate": 0.2}
