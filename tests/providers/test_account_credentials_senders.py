"""The account form asks each backend's own credentials (secrets write-only),
and FullSMS' senders feed the sender choices of the account and campaign
forms; pages say when a provider sends no delivery reports."""

from __future__ import annotations

import httpx
import pytest
from django.urls import reverse

from campaigns.forms import CampaignForm
from campaigns.models import Campaign
from providers.backends import get_backend
from providers.backends.base import CredentialField
from providers.backends.fullsms import FullSmsBackend
from providers.forms import CREDENTIAL_FIELD_NAMES, ProviderAccountForm, credential_field_name
from providers.models import ProviderAccount
from providers.senders import account_senders
from tests.providers.contract.fakes import FakeProvider, answer

pytestmark = pytest.mark.django_db

TOKEN = "20|YLuvWkTILYKhq365kCuXQW1aCqJe71BbKgzqsGlq"
NUMBERS = {"total_numbers": 1, "numbers": [{"number": "441111111111", "country": "GB"}]}
SENDERIDS = {"total_senderids": 1, "senderids": ["COPERATO"]}
TOKEN_FIELD = credential_field_name("fullsms", "api_token")
ZONE_FIELD = credential_field_name("fullsms", "time_zone")


@pytest.fixture
def fullsms(monkeypatch) -> FakeProvider:
    """FullSMS answering the doc's examples; accounts talk to it."""
    fake = FakeProvider()
    fake.route("GET", "/account/numbers", lambda r, f: httpx.Response(200, json=NUMBERS))
    fake.route("GET", "/account/senderids", lambda r, f: httpx.Response(200, json=SENDERIDS))
    monkeypatch.setattr(
        ProviderAccount,
        "get_backend",
        lambda self, **options: get_backend(self, transport=fake.transport, **options),
    )
    return fake


def form_data(**overrides) -> dict:
    data = {
        "name": "Acme FullSMS",
        "backend": "fullsms",
        "default_sender": "",
        "is_active": "on",
        "requests_per_second": "5",
        "messages_per_second": "100",
        "time_zone": "UTC",
        "credits_per_segment": "1",
        "low_balance_threshold": "0",
        "country_rates": "{}",
    }
    data.update(overrides)
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


def make_fullsms(**fields) -> ProviderAccount:
    values = {
        "name": "FullSMS",
        "backend": "fullsms",
        "credentials": {"api_token": TOKEN, "time_zone": "Asia/Jerusalem"},
    }
    values.update(fields)
    return ProviderAccount.objects.create(**values)


# ------------------------------------------------------------ credentials


def test_the_interface_is_declared_on_the_backend():
    assert FullSmsBackend.credential_fields[0] == CredentialField(
        "api_token",
        "API token",
        secret=True,
        help_text=FullSmsBackend.credential_fields[0].help_text,
    )
    assert TOKEN_FIELD in CREDENTIAL_FIELD_NAMES and ZONE_FIELD in CREDENTIAL_FIELD_NAMES


def test_a_new_fullsms_account_is_saved_from_the_token_field(client, superuser):
    client.force_login(superuser)
    response = admin_post(
        client,
        reverse("admin:providers_provideraccount_add"),
        form_data(**{TOKEN_FIELD: TOKEN, ZONE_FIELD: "Asia/Jerusalem"}),
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    account = ProviderAccount.objects.get(name="Acme FullSMS")
    assert account.credentials == {"api_token": TOKEN, "time_zone": "Asia/Jerusalem"}


def test_an_active_account_without_its_token_is_refused_with_what_to_do():
    form = ProviderAccountForm(data=form_data())
    assert not form.is_valid()
    assert form.errors[TOKEN_FIELD] == [
        "FullSMS needs its API token: enter it here, or untick “active” to save the account "
        "without it."
    ]
    assert ProviderAccountForm(data=form_data(is_active=None)).is_valid()


def test_the_token_is_write_only_and_kept_when_left_empty(client, superuser, fullsms):
    account = make_fullsms()
    client.force_login(superuser)
    url = reverse("admin:providers_provideraccount_change", args=[account.pk])
    page = client.get(url).content.decode()
    assert TOKEN not in page
    assert "YLuvWkTILYKhq365" not in page
    assert "Stored (hidden): leave empty to keep it." in page
    assert 'value="Asia/Jerusalem"' in page  # not a secret: shown
    response = admin_post(client, url, form_data(name="FullSMS", **{ZONE_FIELD: "UTC"}))
    assert response.status_code == 302, response.context["adminform"].form.errors
    account.refresh_from_db()
    assert account.credentials == {"api_token": TOKEN, "time_zone": "UTC"}


def test_a_new_token_replaces_the_stored_one():
    account = make_fullsms()
    form = ProviderAccountForm(
        data=form_data(name="FullSMS", **{TOKEN_FIELD: "21|new", ZONE_FIELD: ""}),
        instance=account,
    )
    assert form.is_valid(), form.errors
    form.save()
    account.refresh_from_db()
    # The emptied zone is removed; the new token stored.
    assert account.credentials == {"api_token": "21|new"}


def test_switching_backend_drops_the_other_providers_credentials():
    account = ProviderAccount.objects.create(
        name="Was SMS Everyone",
        backend="smseveryone",
        credentials={"username": "jim", "password": "s56sbdyte83fs"},
    )
    form = ProviderAccountForm(
        data=form_data(name="Was SMS Everyone", **{TOKEN_FIELD: TOKEN}), instance=account
    )
    assert form.is_valid(), form.errors
    form.save()
    account.refresh_from_db()
    assert account.credentials == {"api_token": TOKEN}


def test_the_json_field_still_works_for_extra_keys():
    form = ProviderAccountForm(
        data=form_data(credentials_input='{"api_token": "20|json", "extra": "1"}')
    )
    assert form.is_valid(), form.errors
    assert form.save().credentials == {"api_token": "20|json", "extra": "1"}


def test_resellers_never_get_credential_fields(client, make_reseller, make_account):
    alice = make_reseller("alice")
    account = make_account(backend="fullsms", owners=[alice], credentials={"api_token": TOKEN})
    client.force_login(alice)
    page = client.get(reverse("admin:providers_provideraccount_change", args=[account.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert not [name for name in CREDENTIAL_FIELD_NAMES if name in html]
    assert TOKEN not in html


# ---------------------------------------------------------------- senders


def test_fullsms_senders_feed_the_account_form_and_are_cached(client, superuser, fullsms):
    account = make_fullsms()
    client.force_login(superuser)
    url = reverse("admin:providers_provideraccount_change", args=[account.pk])
    page = client.get(url).content.decode()
    assert '<datalist id="default-sender-choices">' in page
    assert '<option value="COPERATO">COPERATO (approved sender ID)</option>' in page
    assert '<option value="+441111111111">+441111111111 (number, GB)</option>' in page
    calls = len(fullsms.calls)
    assert calls == 2
    client.get(url)
    assert len(fullsms.calls) == calls  # cached


def test_a_default_sender_fullsms_does_not_list_is_refused(fullsms):
    account = make_fullsms()
    form = ProviderAccountForm(
        data=form_data(name="FullSMS", default_sender="ACME"), instance=account
    )
    assert not form.is_valid()
    [message] = form.errors["default_sender"]
    assert "FullSMS does not list 'ACME'" in message
    assert "COPERATO, +441111111111" in message
    for allowed in ("COPERATO", "+441111111111", "441111111111"):
        form = ProviderAccountForm(
            data=form_data(name="FullSMS", default_sender=allowed), instance=account
        )
        assert form.is_valid(), (allowed, form.errors)


def test_when_the_list_cannot_be_read_the_form_says_why_and_accepts_the_sender(fullsms):
    fullsms.fail(
        "/account/senderids",
        answer(403, {"status_code": 403, "message": "Unauthenticated - Missing/Invalid API key"}),
    )
    account = make_fullsms()
    senders = account_senders(account)
    assert not senders.known
    assert "Could not read the senders from FullSMS" in senders.error
    assert TOKEN not in senders.error
    form = ProviderAccountForm(
        data=form_data(name="FullSMS", default_sender="ACME"), instance=account
    )
    assert form.is_valid(), form.errors
    assert "Could not read the senders" in form.fields["default_sender"].help_text


def test_backends_without_a_sender_list_make_no_call_and_restrict_nothing(fullsms):
    everyone = ProviderAccount.objects.create(name="SMSE", backend="smseveryone")
    assert not account_senders(everyone).known
    simulator = ProviderAccount.objects.create(name="Sim", backend="simulator")
    listed = account_senders(simulator)
    assert listed.known and listed.options == [] and not listed.refuses("Anything")
    assert fullsms.calls == []


def test_campaign_form_offers_and_checks_the_accounts_senders(fullsms):
    account = make_fullsms()
    campaign = Campaign.objects.create(name="Sale", account=account, body="Hi", sender="COPERATO")
    form = CampaignForm(instance=campaign)
    html = str(form["sender"])
    assert 'list="campaign-sender-choices"' in html and 'value="COPERATO"' in html
    data = {"name": "Sale", "account": account.pk, "sender": "ACME", "body": "Hi"}
    form = CampaignForm(data=data, instance=campaign)
    assert not form.is_valid()
    assert "FullSMS does not list 'ACME'" in form.errors["sender"][0]
    form = CampaignForm(data={**data, "sender": "COPERATO"}, instance=campaign)
    assert form.is_valid(), form.errors


# ------------------------------------------------------ no delivery reports


def test_account_and_campaign_pages_say_fullsms_sends_no_delivery_reports(
    client, superuser, fullsms
):
    account = make_fullsms()
    campaign = Campaign.objects.create(name="Sale", account=account, body="Hi", sender="COPERATO")
    client.force_login(superuser)
    account_page = client.get(
        reverse("admin:providers_provideraccount_change", args=[account.pk])
    ).content.decode()
    campaign_page = client.get(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    ).content.decode()
    note = "FullSMS has no delivery reports or replies in its API"
    assert note in account_page and note in campaign_page
    assert "campaign-no-delivery-reports" in campaign_page


def test_pages_of_providers_with_reports_do_not_say_so(client, superuser):
    account = ProviderAccount.objects.create(name="Sim", backend="simulator")
    campaign = Campaign.objects.create(name="Sale", account=account, body="Hi")
    client.force_login(superuser)
    page = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
    assert "campaign-no-delivery-reports" not in page.content.decode()


# ---------------------------------------------------------------- seed_demo


def test_seed_demo_adds_inactive_example_accounts_for_the_new_providers(
    client, superuser, settings
):
    from io import StringIO

    from django.core.management import call_command

    # TransmitSMS and CALLR are registered by their own backends; any class
    # stands in here: seed_demo only needs their keys.
    settings.SMS_BACKENDS = {
        **settings.SMS_BACKENDS,
        "transmitsms": "providers.backends.fullsms.FullSmsBackend",
        "callr": "providers.backends.fullsms.FullSmsBackend",
    }
    call_command("seed_demo", stdout=StringIO())
    call_command("seed_demo", stdout=StringIO())  # idempotent
    examples = ProviderAccount.objects.filter(backend__in=["fullsms", "transmitsms", "callr"])
    assert sorted(examples.values_list("backend", "is_active", "credentials")) == [
        ("callr", False, {}),
        ("fullsms", False, {}),
        ("transmitsms", False, {}),
    ]
    client.force_login(superuser)
    account = examples.get(backend="fullsms")
    page = client.get(reverse("admin:providers_provideraccount_change", args=[account.pk]))
    assert page.status_code == 200
    assert "FullSMS has no delivery reports" in page.content.decode()


def test_a_provider_that_does_not_answer_in_time_leaves_the_form_usable(fullsms):
    from tests.providers.contract.fakes import read_timeout

    fullsms.fail("/account/senderids", read_timeout())
    account = make_fullsms()
    senders = account_senders(account)
    assert not senders.known and "timed out" in senders.error
    calls = len(fullsms.calls)
    assert not account_senders(account).known  # the failure is cached for a while
    assert len(fullsms.calls) == calls
