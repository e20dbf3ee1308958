"""Reseller self-service: clients, prices within floors, take back,
statements; and isolation between resellers."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from providers.models import CreditTransaction, ProviderAccount
from providers.services import (
    CreditError,
    account_statement,
    client_save,
    credits_take_back,
    credits_transfer,
    ledger_mismatches,
)
from tests.providers.test_credits import sms_test_backends  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.django_db

D = Decimal
K = CreditTransaction.Kind


def fresh(account) -> ProviderAccount:
    return ProviderAccount.objects.get(pk=account.pk)


def admin_url(name, *args):
    return reverse(f"admin:providers_clientaccount_{name}", args=args)


@pytest.fixture
def tree(make_reseller, make_account):
    alice, bob = make_reseller("alice"), make_reseller("bob")
    alice_main = make_account(
        name="Alice Main",
        owners=[alice],
        balance=100,
        backend="ledgertest",
        min_credits_per_segment=D("1.20"),
        min_country_rates={"GB": "2.00"},
    )
    alice_client = make_account(name="Alice Client", parent=alice_main, backend="ledgertest")
    bob_main = make_account(name="Bob Main", owners=[bob], balance=50, backend="ledgertest")
    bob_client = make_account(name="Bob Client", parent=bob_main, backend="ledgertest")
    return alice, bob, alice_main, alice_client, bob_main, bob_client


def client_data(parent, **over):
    data = {
        "parent": str(parent.pk),
        "name": "Acme",
        "default_sender": "Acme",
        "is_active": "on",
        "low_balance_threshold": "10",
        "low_balance_emails": "ops@acme.test, boss@acme.test",
        "credits_per_segment": "1.50",
        "country_rates": '{"GB": "2.50"}',
    }
    data.update(over)
    return {k: v for k, v in data.items() if v is not None}


# ---------------------------------------------------------------- clients


def test_reseller_creates_a_client_with_price_and_warning_settings(client, tree):
    alice, _, alice_main, *_ = tree
    client.force_login(alice)
    response = client.post(admin_url("add"), client_data(alice_main))
    assert response.status_code == 302, response.context["adminform"].form.errors
    acme = ProviderAccount.objects.get(name="Acme")
    assert (acme.parent, acme.backend, acme.balance) == (alice_main, "ledgertest", D("0"))
    assert acme.credits_per_segment == D("1.50")
    assert acme.country_rates == {"GB": "2.50"}
    assert acme.low_balance_threshold == D("10")
    assert acme.low_balance_emails == "ops@acme.test, boss@acme.test"
    assert acme.credentials == {}


@pytest.mark.parametrize(
    ("over", "field", "text"),
    [
        ({"credits_per_segment": "1.10"}, "credits_per_segment", "below the lowest price"),
        ({"country_rates": '{"GB": "1.90"}'}, "country_rates", "price for GB (1.90) is below"),
        ({"credits_per_segment": "1e30"}, "credits_per_segment", "too large"),
        ({"low_balance_emails": "not-an-address"}, "low_balance_emails", "Not an e-mail"),
        ({"low_balance_threshold": "1e30"}, "low_balance_threshold", "too large"),
        ({"name": "Bob Client"}, "name", "exists already"),
    ],
)
def test_client_form_refuses_what_staff_did_not_allow(client, tree, over, field, text):
    alice, _, alice_main, *_ = tree
    client.force_login(alice)
    response = client.post(admin_url("add"), client_data(alice_main, **over))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert text in " ".join(errors[field])
    assert not ProviderAccount.objects.filter(name="Acme").exists()


def test_reseller_cannot_create_a_client_under_another_reseller(client, tree):
    alice, _, _, _, bob_main, _ = tree
    client.force_login(alice)
    response = client.post(admin_url("add"), client_data(bob_main))
    assert response.status_code == 200
    assert "parent" in response.context["adminform"].form.errors
    with pytest.raises(CreditError, match="does not manage Bob Main"):
        client_save(user=alice, reseller=bob_main, name="Sneaky")
    assert not ProviderAccount.objects.filter(name__in=["Acme", "Sneaky"]).exists()


def test_reseller_edits_only_its_own_clients(client, tree):
    alice, _, alice_main, alice_client, _, bob_client = tree
    client.force_login(alice)
    page = admin_url("change", alice_client.pk)
    data = client_data(alice_main, name="Alice Client", is_active=None)
    response = client.post(page, data)
    assert response.status_code == 302
    assert fresh(alice_client).is_active is False
    assert client.get(admin_url("change", bob_client.pk)).status_code == 302  # "doesn't exist"
    assert client.post(admin_url("change", bob_client.pk), data).status_code == 302
    listed = client.get(admin_url("changelist")).context["cl"].result_list
    assert [a.name for a in listed] == ["Alice Client"]
    with pytest.raises(CreditError, match="not a client of Alice Main"):
        client_save(user=alice, reseller=alice_main, client=bob_client, name="Mine")
    assert fresh(bob_client).name == "Bob Client"


def test_resellers_cannot_set_staff_fields_through_the_service(tree):
    alice, _, alice_main, alice_client, *_ = tree
    with pytest.raises(ValidationError, match="cannot set credentials"):
        client_save(user=alice, reseller=alice_main, client=alice_client, credentials={"x": 1})


def test_staff_see_every_resellers_clients_and_margin(client, superuser, tree):
    client.force_login(superuser)
    alice_client = tree[3]
    ProviderAccount.objects.filter(pk=alice_client.pk).update(credits_per_segment=D("1.50"))
    page = client.get(admin_url("changelist"))
    names = {a.name for a in page.context["cl"].result_list}
    assert names == {"Alice Client", "Bob Client"}
    assert b"Margin per segment" in page.content
    row = next(a for a in page.context["cl"].result_list if a.name == "Alice Client")
    assert page.context["cl"].model_admin.margin_per_segment(row) == D("0.50")


def test_resellers_do_not_see_margins(client, tree):
    client.force_login(tree[0])
    assert b"Margin per segment" not in client.get(admin_url("changelist")).content


# -------------------------------------------------------------- take back


def test_take_back_returns_unused_credits_to_the_reseller(tree):
    from providers.services import credits_reserve

    alice, _, alice_main, alice_client, *_ = tree
    credits_transfer(source=alice_main, target=alice_client, amount=30, user=alice)
    credits_reserve(account=alice_client, amount=20, reference="campaign:1")
    with pytest.raises(CreditError, match=r"has 10\.00 credits available"):
        credits_take_back(client=alice_client, amount=11, user=alice)
    row = credits_take_back(client=alice_client, amount=10, user=alice, idempotency_key="tb:1")
    again = credits_take_back(client=alice_client, amount=10, user=alice, idempotency_key="tb:1")
    assert again.pk == row.pk
    assert (row.kind, row.amount, row.counterparty_id) == (K.RETURN_OUT, D("-10"), alice_main.pk)
    assert (fresh(alice_main).balance, fresh(alice_client).balance) == (D("80"), D("20"))
    assert ledger_mismatches() == []


def test_take_back_page_and_isolation(client, tree):
    alice, bob, alice_main, alice_client, bob_main, bob_client = tree
    credits_transfer(source=alice_main, target=alice_client, amount=30, user=alice)
    credits_transfer(source=bob_main, target=bob_client, amount=5, user=bob)
    client.force_login(alice)
    page = admin_url("take_back", alice_client.pk)
    token = re.search(rb'name="token" value="([0-9a-f]{32})"', client.get(page).content)
    data = {"amount": "12", "note": "client left", "token": token.group(1).decode()}
    first = client.post(page, data, follow=True)
    second = client.post(page, data, follow=True)  # double click: first outcome again
    for response in (first, second):
        [message] = [str(m) for m in response.context["messages"]]
        assert message.startswith("Returned 12.00 credits from Alice Client to Alice Main at ")
    assert (fresh(alice_main).balance, fresh(alice_client).balance) == (D("82"), D("18"))
    # Bob's client is out of Alice's reach.
    assert client.get(admin_url("take_back", bob_client.pk)).status_code == 404
    assert client.post(admin_url("take_back", bob_client.pk), data).status_code == 404
    with pytest.raises(CreditError, match="does not manage Bob Main"):
        credits_take_back(client=bob_client, amount=1, user=alice)
    assert fresh(bob_client).balance == D("5")


# -------------------------------------------------------------- statement


def test_statement_has_opening_movements_and_closing(tree):
    alice, _, alice_main, alice_client, *_ = tree
    credits_transfer(source=alice_main, target=alice_client, amount=30, user=alice)
    CreditTransaction.objects.filter(account=alice_client).update(
        created_at=timezone.now() - timedelta(days=40)
    )
    credits_transfer(source=alice_main, target=alice_client, amount=5, user=alice)
    credits_take_back(client=alice_client, amount=8, user=alice)
    now = timezone.now()
    statement = account_statement(
        account=alice_client, start=now - timedelta(days=30), end=now + timedelta(days=1)
    )
    assert (statement.opening, statement.closing) == (D("30"), D("27"))
    assert [r.kind for r in statement.rows] == [K.TRANSFER_IN, K.RETURN_OUT]
    assert statement.movements == sum(r.amount for r in statement.rows)
    with pytest.raises(ValidationError, match="end of the period must be after"):
        account_statement(account=alice_client, start=now, end=now)


def test_statement_page_and_csv_are_formula_safe_and_scoped(client, tree):
    alice, _, alice_main, alice_client, _, bob_client = tree
    credits_transfer(
        source=alice_main, target=alice_client, amount=7, user=alice, note='=HYPERLINK("x")'
    )
    client.force_login(alice)
    page = client.get(admin_url("statement", alice_client.pk))
    assert page.status_code == 200
    assert page.context["statement"].closing == D("7")
    assert b"Opening balance" in page.content and b"Closing balance" in page.content
    response = client.get(admin_url("statement", alice_client.pk), {"format": "csv"})
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[1] == ["opening balance", "0.00"]
    assert rows[-1] == ["closing balance", "7.00"]
    assert rows[3][-1] == '\'=HYPERLINK("x")'
    assert client.get(admin_url("statement", bob_client.pk)).status_code == 404
    bad = client.get(admin_url("statement", alice_client.pk), {"start": "2026-13-01"})
    assert bad.status_code == 200 and bad.context["statement"] is None


def test_a_client_of_a_provider_that_holds_credits_cannot_give_them_back(tree, make_account):
    alice, _, alice_main, *_ = tree
    held = make_account(
        name="Held", parent=alice_main, backend="topuptest", credentials={"username": "u"}
    )
    with pytest.raises(CreditError, match="held by its provider"):
        credits_take_back(client=held, amount=1, user=alice)
