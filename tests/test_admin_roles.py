"""Every admin page answers for a superuser; operators and resellers see
exactly what their role allows, and a reseller never sees another's rows."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse

from campaigns.models import Conversation
from providers.models import ApiToken, ClientAccount, CreditTransaction, ProviderAccount
from providers.services import credits_top_up

pytestmark = pytest.mark.django_db


def admin_urls():
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        yield model, model_admin, reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")


def test_every_changelist_and_add_page_answers_200_for_a_superuser(client, superuser):
    client.force_login(superuser)
    assert client.get(reverse("admin:index")).status_code == 200
    for model, model_admin, url in admin_urls():
        assert client.get(url).status_code == 200, url
        opts = model._meta
        add_url = reverse(f"admin:{opts.app_label}_{opts.model_name}_add")
        expected = 200 if model_admin.has_add_permission(_request(superuser)) else 403
        assert client.get(add_url).status_code == expected, add_url


def _request(user):
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.user = user
    return request


OPERATOR_APPS = {"contacts", "campaigns"}


def test_operator_sees_contacts_and_campaigns_but_not_accounts_or_ledger(client, operator):
    client.force_login(operator)
    for model, _, url in admin_urls():
        status = client.get(url).status_code
        if model._meta.app_label in OPERATOR_APPS:
            assert status == 200, url
        else:
            assert status == 403, url


@pytest.fixture
def two_resellers(make_reseller, make_account):
    alice, bob = make_reseller("alice"), make_reseller("bob")
    alice_main = make_account(name="Alice Main", owners=[alice], balance=100)
    alice_sub = make_account(name="Alice Sub", parent=alice_main)
    bob_main = make_account(name="Bob Main", owners=[bob], balance=70)
    bob_sub = make_account(name="Bob Sub", parent=bob_main)
    credits_top_up(account=bob_sub, amount=5, note="bob's secret")
    return {
        "alice": alice,
        "bob": bob,
        "alice_accounts": [alice_main, alice_sub],
        "bob_accounts": [bob_main, bob_sub],
    }


def test_reseller_only_reaches_provider_pages(client, two_resellers):
    client.force_login(two_resellers["alice"])
    for model, _, url in admin_urls():
        status = client.get(url).status_code
        # The Inbox too, scoped to their accounts (tests/inbox/test_thread_scoping.py).
        allowed = model in (
            ProviderAccount,
            CreditTransaction,
            ClientAccount,
            ApiToken,
            Conversation,
        )
        assert status == (200 if allowed else 403), url


def test_reseller_changelist_and_search_show_no_foreign_rows(client, two_resellers):
    client.force_login(two_resellers["alice"])
    url = reverse("admin:providers_provideraccount_changelist")
    page = client.get(url).content.decode()
    assert "Alice Main" in page and "Alice Sub" in page
    assert "Bob" not in page
    found = client.get(url, {"q": "Bob"})
    assert list(found.context["cl"].result_list) == []

    ledger = client.get(reverse("admin:providers_credittransaction_changelist"))
    rows = list(ledger.context["cl"].result_list)
    assert rows and all(row.account.name.startswith("Alice") for row in rows)
    assert "bob&#x27;s secret" not in ledger.content.decode()
    assert "Bob" not in ledger.content.decode()


def test_reseller_cannot_open_a_foreign_account_or_ledger_row(client, two_resellers):
    client.force_login(two_resellers["alice"])
    for account in two_resellers["bob_accounts"]:
        url = reverse("admin:providers_provideraccount_change", args=[account.pk])
        response = client.get(url)
        # Django's admin answers a missing object with a redirect to the index.
        assert response.status_code == 302
        assert response.url == reverse("admin:index")
        row = CreditTransaction.objects.filter(account=account).first()
        if row:
            url = reverse("admin:providers_credittransaction_change", args=[row.pk])
            assert client.get(url).status_code == 302
    own = two_resellers["alice_accounts"][1]
    response = client.get(reverse("admin:providers_provideraccount_change", args=[own.pk]))
    assert response.status_code == 200


def test_reseller_autocomplete_lists_only_own_accounts(client, two_resellers):
    client.force_login(two_resellers["alice"])
    response = client.get(
        reverse("admin:autocomplete"),
        {"app_label": "providers", "model_name": "provideraccount", "field_name": "parent"},
    )
    assert response.status_code == 200
    names = {item["text"] for item in response.json()["results"]}
    assert names == {"Alice Main", "Alice Sub"}


def test_reseller_page_hides_credentials_and_owners(client, two_resellers):
    account = two_resellers["alice_accounts"][0]
    account.credentials = {"username": "alice", "password": "hunter2-very-secret"}
    account.save()
    client.force_login(two_resellers["alice"])
    page = client.get(
        reverse("admin:providers_provideraccount_change", args=[account.pk])
    ).content.decode()
    assert "hunter2-very-secret" not in page
    assert account.webhook_token not in page


def test_superuser_never_sees_stored_credentials_in_clear(client, superuser, make_account):
    account = make_account(credentials={"username": "u", "password": "hunter2-very-secret"})
    client.force_login(superuser)
    page = client.get(
        reverse("admin:providers_provideraccount_change", args=[account.pk])
    ).content.decode()
    assert "hunter2-very-secret" not in page
    assert "Stored: password, username (values hidden)" in page


def test_roles_are_created_idempotently(roles):
    from smsoffice.roles import ensure_roles

    before = {
        name: set(group.permissions.values_list("codename", flat=True))
        for name, group in roles.items()
    }
    again = ensure_roles()
    after = {
        name: set(group.permissions.values_list("codename", flat=True))
        for name, group in again.items()
    }
    assert before == after
    assert "view_provideraccount" in after["Resellers"]
    assert "add_contact" in after["Operators"]
    assert not any(code.endswith("provideraccount") for code in after["Operators"])
