"""The credits admin: reseller top-up with confirmation, staff add/adjust
pages, low-balance banner, the read-only ledger and its CSV export, all
scoped to the accounts a user may see."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal

import pytest
from django.contrib.admin import helpers
from django.urls import reverse

from providers.admin_credits import csv_safe
from providers.models import CreditTransaction, ProviderAccount
from providers.services import credits_reserve, credits_top_up
from tests.providers.test_credits import sms_test_backends  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.django_db

D = Decimal
K = CreditTransaction.Kind


def fresh(account) -> ProviderAccount:
    return ProviderAccount.objects.get(pk=account.pk)


def url(name: str, account) -> str:
    return reverse(f"admin:providers_provideraccount_{name}", args=[account.pk])


@pytest.fixture
def tree(make_reseller, make_account):
    alice, bob = make_reseller("alice"), make_reseller("bob")
    alice_main = make_account(name="Alice Main", owners=[alice], balance=100, backend="ledgertest")
    alice_sub = make_account(name="Alice Sub", parent=alice_main, backend="ledgertest")
    bob_main = make_account(name="Bob Main", owners=[bob], balance=50, backend="ledgertest")
    bob_sub = make_account(name="Bob Sub", parent=bob_main, backend="ledgertest")
    credits_top_up(account=bob_sub, amount=5, note='=HYPERLINK("http://evil","bob")')
    return {
        "alice": alice,
        "bob": bob,
        "alice_main": alice_main,
        "alice_sub": alice_sub,
        "bob_main": bob_main,
        "bob_sub": bob_sub,
    }


def token_of(response) -> str:
    return re.search(rb'name="token" value="([0-9a-f]{32})"', response.content).group(1).decode()


# ------------------------------------------------------------ reseller top-up


def test_reseller_tops_up_a_sub_account_after_confirming_balances(client, tree):
    client.force_login(tree["alice"])
    page = url("top_up", tree["alice_sub"])
    form = client.get(page)
    assert form.status_code == 200
    assert b"The credits come from Alice Main" in form.content
    data = {"amount": "30", "note": "April", "token": token_of(form)}

    preview = client.post(page, data)
    assert preview.status_code == 200
    rows = preview.context["preview"]
    assert [(r.account.name, r.account.balance, r.balance_after) for r in rows] == [
        ("Alice Main", D("100"), D("70")),
        ("Alice Sub", D("0"), D("30")),
    ]
    assert b"Confirm: top up 30.00 credits" in preview.content
    assert fresh(tree["alice_main"]).balance == D("100")  # nothing moved yet

    done = client.post(page, {**data, "amount": "30.00", "confirm": "1"})
    assert done.status_code == 302
    assert done.url == url("change", tree["alice_sub"])
    again = client.post(page, {**data, "amount": "30.00", "confirm": "1"})  # double click
    assert again.status_code == 302
    assert (fresh(tree["alice_main"]).balance, fresh(tree["alice_sub"]).balance) == (
        D("70"),
        D("30"),
    )
    out = CreditTransaction.objects.get(kind=K.TRANSFER_OUT)
    assert (out.created_by, out.note, out.counterparty) == (
        tree["alice"],
        "April",
        tree["alice_sub"],
    )


def test_top_up_beyond_the_resellers_balance_is_refused_on_the_form(client, tree):
    client.force_login(tree["alice"])
    page = url("top_up", tree["alice_sub"])
    token = token_of(client.get(page))
    for extra in ({}, {"confirm": "1"}):
        response = client.post(page, {"amount": "100.01", "token": token, **extra})
        assert response.status_code == 200
        assert response.context["stage"] == "form"
        assert response.context["form"].errors["amount"] == [
            "Alice Main has 100.00 credits available, needs 100.01. Top up the reseller "
            "account first or enter a smaller amount."
        ]
    assert fresh(tree["alice_sub"]).balance == D("0")


@pytest.mark.parametrize("amount", ["0", "-5", "ten", "1.234"])
def test_top_up_form_refuses_bad_amounts(client, tree, amount):
    client.force_login(tree["alice"])
    page = url("top_up", tree["alice_sub"])
    response = client.post(page, {"amount": amount, "token": token_of(client.get(page))})
    assert response.context["form"].errors["amount"]
    assert fresh(tree["alice_sub"]).balance == D("0")


def test_reseller_cannot_reach_another_resellers_sub_account(client, tree):
    client.force_login(tree["alice"])
    page = url("top_up", tree["bob_sub"])
    assert client.get(page).status_code == 404
    response = client.post(page, {"amount": "1", "token": "a" * 32, "confirm": "1"})
    assert response.status_code == 404
    assert client.get(url("change", tree["bob_sub"])).status_code == 302  # "doesn't exist"
    assert (fresh(tree["bob_main"]).balance, fresh(tree["bob_sub"]).balance) == (D("50"), D("5"))


def test_reseller_cannot_top_up_its_own_main_account_or_add_credits(client, tree):
    client.force_login(tree["alice"])
    response = client.get(url("top_up", tree["alice_main"]))
    assert response.status_code == 302
    assert client.get(url("add_credits", tree["alice_main"])).status_code == 403
    assert client.get(url("adjust", tree["alice_sub"])).status_code == 403
    assert fresh(tree["alice_main"]).balance == D("100")


def test_reseller_sees_only_the_buttons_it_may_use(client, tree):
    client.force_login(tree["alice"])
    response = client.get(url("change", tree["alice_sub"]))
    labels = [link["label"] for link in response.context["credit_links"]]
    assert labels == ["Top up", "Ledger"]
    assert url("top_up", tree["alice_sub"]).encode() in response.content


def test_changelist_top_up_action_opens_the_page_for_one_own_account(client, tree):
    client.force_login(tree["alice"])
    changelist = reverse("admin:providers_provideraccount_changelist")
    response = client.post(
        changelist,
        {"action": "top_up_selected", helpers.ACTION_CHECKBOX_NAME: [tree["alice_sub"].pk]},
    )
    assert response.status_code == 302
    assert response.url == url("top_up", tree["alice_sub"])
    response = client.post(
        changelist,
        {"action": "top_up_selected", helpers.ACTION_CHECKBOX_NAME: [tree["bob_sub"].pk]},
    )
    assert response.status_code == 302
    assert response.url != url("top_up", tree["bob_sub"])  # not in her queryset: no action


# --------------------------------------------------------------- staff pages


def test_staff_adds_credits_with_a_confirmation(client, superuser, tree):
    client.force_login(superuser)
    page = url("add_credits", tree["bob_main"])
    data = {"amount": "1000", "note": "invoice 88", "token": token_of(client.get(page))}
    preview = client.post(page, data)
    [line] = preview.context["preview"]
    assert (line.account.balance, line.balance_after) == (D("50"), D("1050"))
    client.post(page, {**data, "confirm": "1"})
    row = CreditTransaction.objects.filter(account=tree["bob_main"]).first()
    assert (row.kind, row.amount, row.note, row.created_by) == (
        K.TOP_UP,
        D("1000"),
        "invoice 88",
        superuser,
    )
    assert fresh(tree["bob_main"]).balance == D("1050")


def test_staff_adjustment_needs_a_reason_and_keeps_reserved_credits(client, superuser, tree):
    client.force_login(superuser)
    credits_reserve(account=tree["bob_main"], amount=45, reference="campaign:1")
    page = url("adjust", tree["bob_main"])
    token = token_of(client.get(page))
    response = client.post(page, {"amount": "-2", "token": token})
    assert response.context["form"].errors["note"] == ["This field is required."]
    response = client.post(page, {"amount": "-6", "note": "refund", "token": token})
    assert "cannot remove 6.00" in response.context["form"].errors["amount"][0]
    client.post(page, {"amount": "-5", "note": "card refund", "token": token, "confirm": "1"})
    account = fresh(tree["bob_main"])
    assert (account.balance, account.reserved) == (D("45"), D("45"))
    assert CreditTransaction.objects.filter(kind=K.ADJUSTMENT, note="card refund").count() == 1


def test_superuser_can_save_the_account_form_without_touching_credits(client, superuser, tree):
    client.force_login(superuser)
    account = tree["alice_main"]
    page = url("change", account)
    form = client.get(page).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k in form.fields}
    data.update(
        {
            "name": "Alice Renamed",
            "owners": [tree["alice"].pk],
            "country_rates": "{}",
            "sub_accounts-TOTAL_FORMS": "1",
            "sub_accounts-INITIAL_FORMS": "1",
            "sub_accounts-0-id": tree["alice_sub"].pk,
            "sub_accounts-0-parent": account.pk,
            "ledger-TOTAL_FORMS": "1",
            "ledger-INITIAL_FORMS": "1",
            "ledger-0-id": CreditTransaction.objects.get(account=account).pk,
            "ledger-0-account": account.pk,
        }
    )
    data.pop("parent", None)
    credits_top_up(account=account, amount=1)  # lands between GET and POST
    response = client.post(page, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    account = fresh(account)
    assert (account.name, account.balance) == ("Alice Renamed", D("101"))


# ---------------------------------------------------------------- low balance


def test_low_balance_banner_on_account_page_and_changelist(client, tree):
    ProviderAccount.objects.filter(pk=tree["alice_sub"].pk).update(low_balance_threshold=10)
    client.force_login(tree["alice"])
    page = client.get(url("change", tree["alice_sub"]))
    assert [str(m) for m in page.context["messages"]] == [
        "Low balance: Alice Sub: 0.00 available, threshold 10.00."
    ]
    listing = client.get(reverse("admin:providers_provideraccount_changelist"))
    assert [str(m) for m in listing.context["messages"]] == [
        "Low balance: Alice Sub: 0.00 available, threshold 10.00."
    ]
    client.force_login(tree["bob"])
    listing = client.get(reverse("admin:providers_provideraccount_changelist"))
    assert list(listing.context["messages"]) == []  # not bob's account


# --------------------------------------------------------------------- ledger


def test_ledger_is_read_only_and_filtered_to_visible_accounts(client, tree):
    client.force_login(tree["alice"])
    changelist = reverse("admin:providers_credittransaction_changelist")
    response = client.get(changelist)
    assert {r.account.name for r in response.context["cl"].result_list} == {"Alice Main"}
    account_filter = response.context["cl"].filter_specs[0]
    assert [name for _, name in account_filter.lookup_choices] == ["Alice Main", "Alice Sub"]
    row = CreditTransaction.objects.filter(account=tree["alice_main"]).first()
    change = reverse("admin:providers_credittransaction_change", args=[row.pk])
    assert client.post(change, {"note": "edited"}).status_code == 403
    assert client.get(reverse("admin:providers_credittransaction_add")).status_code == 403
    foreign = CreditTransaction.objects.filter(account=tree["bob_sub"]).first()
    foreign_url = reverse("admin:providers_credittransaction_change", args=[foreign.pk])
    assert client.get(foreign_url).status_code == 302  # "doesn't exist", nothing shown
    filtered = client.get(changelist, {"account": tree["bob_sub"].pk})
    assert list(filtered.context["cl"].result_list) == []


def _export(client, ids):
    response = client.post(
        reverse("admin:providers_credittransaction_changelist"),
        {"action": "export_csv", helpers.ACTION_CHECKBOX_NAME: ids},
    )
    if response.status_code != 200 or not response.get("Content-Type", "").startswith("text/csv"):
        return response, None
    text = b"".join(response.streaming_content).decode()
    return response, list(csv.DictReader(io.StringIO(text)))


def test_csv_export_holds_only_the_resellers_rows_even_when_others_are_posted(client, tree):
    client.force_login(tree["alice"])
    ids = list(CreditTransaction.objects.values_list("pk", flat=True))
    response, rows = _export(client, ids)
    assert response["Content-Disposition"].startswith('attachment; filename="ledger-')
    assert [(r["account"], r["kind"], r["amount"]) for r in rows] == [
        ("Alice Main", "top_up", "100.00")
    ]


def test_csv_export_neutralises_formulas_but_keeps_negative_numbers(client, superuser, tree):
    credits_reserve(account=tree["bob_sub"], amount=5, reference="+cmd|' /C calc'!A0")
    client.force_login(superuser)
    ids = list(
        CreditTransaction.objects.filter(account=tree["bob_sub"]).values_list("pk", flat=True)
    )
    _, rows = _export(client, ids)
    top_up, reserve = rows
    assert top_up["note"] == '\'=HYPERLINK("http://evil","bob")'
    assert reserve["reference"] == "'+cmd|' /C calc'!A0"
    assert reserve["reserved_change"] == "5.00"
    assert top_up["balance_after"] == "5.00"


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+44", "'+44"),
        ("-1+2", "'-1+2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("-12.50", "-12.50"),
        (D("-3.00"), "-3.00"),
        ("plain", "plain"),
        (None, ""),
    ],
)
def test_csv_safe(value, cell):
    assert csv_safe(value) == cell


def test_operator_cannot_export_the_ledger(client, operator, tree):
    client.force_login(operator)
    response, rows = _export(client, list(CreditTransaction.objects.values_list("pk", flat=True)))
    assert rows is None
    assert response.status_code == 403
