# ruff: noqa: F811 - pytest fixtures imported from test_credits are redefined as arguments
"""What the credits pages say: bad amounts are clear form errors, a double
click shows the first outcome, drift compares like with like."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.urls import reverse

from providers.models import CreditTransaction, ProviderAccount
from providers.services import credits_charge, credits_reconcile, credits_reserve, credits_top_up
from tests.providers.test_credits import provider, sms_test_backends  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db

D = Decimal
K = CreditTransaction.Kind


def url(name: str, account) -> str:
    return reverse(f"admin:providers_provideraccount_{name}", args=[account.pk])


def token_of(response) -> str:
    return re.search(rb'name="token" value="([0-9a-f]{32})"', response.content).group(1).decode()


def fresh(account) -> ProviderAccount:
    return ProviderAccount.objects.get(pk=account.pk)


@pytest.fixture
def tree(make_reseller, make_account):
    alice = make_reseller("alice")
    main = make_account(name="Alice Main", owners=[alice], balance=100, backend="ledgertest")
    sub = make_account(name="Alice Sub", parent=main, backend="ledgertest")
    return alice, main, sub


@pytest.mark.parametrize("stage", [{}, {"confirm": "1"}])
@pytest.mark.parametrize("amount", ["1e30", "1E+400", "-1e30"])
def test_a_huge_amount_on_the_top_up_form_is_a_form_error_not_a_500(client, tree, stage, amount):
    alice, _main, sub = tree
    client.force_login(alice)
    page = url("top_up", sub)
    response = client.post(page, {"amount": amount, "token": token_of(client.get(page)), **stage})
    assert response.status_code == 200
    assert response.context["form"].errors["amount"]
    assert "too large" in response.context["form"].errors["amount"][0]
    assert fresh(sub).balance == D("0")


def test_adding_more_than_a_balance_can_hold_is_a_form_error(client, superuser, tree):
    """The issue: 999999999999.99 onto a balance of 100 was a raw DataError."""
    _, main, _ = tree
    client.force_login(superuser)
    page = url("add_credits", main)
    token = token_of(client.get(page))
    for stage in ({}, {"confirm": "1"}):
        response = client.post(page, {"amount": "999999999999.99", "token": token, **stage})
        assert response.status_code == 200
        assert "more than an account can hold" in response.context["form"].errors["amount"][0]
    assert fresh(main).balance == D("100")


def test_a_second_confirm_after_the_first_committed_shows_the_first_outcome(client, tree):
    """The issue: the second click said the reseller lacked the credits
    (they had moved once), and resellers started over, moving them twice."""
    alice, main, sub = tree
    client.force_login(alice)
    page = url("top_up", sub)
    data = {"amount": "60.00", "note": "", "token": token_of(client.get(page)), "confirm": "1"}
    first = client.post(page, data, follow=True)
    second = client.post(page, data, follow=True)  # 40 left: the amount no longer fits
    row = CreditTransaction.objects.get(kind=K.TRANSFER_OUT)
    for response in (first, second):
        assert response.redirect_chain[-1][0] == url("change", sub)
        [message] = [str(m) for m in response.context["messages"]]
        assert message.startswith("Moved 60.00 credits from Alice Main to Alice Sub at ")
        assert message.endswith(f"(ledger #{row.pk}).")
    assert (fresh(main).balance, fresh(sub).balance) == (D("40"), D("60"))


def test_drift_compares_the_provider_with_our_balance_at_the_same_moment(
    client, superuser, make_account, provider
):
    """The issue: after a campaign the page warned of drift, comparing an old
    provider answer with today's balance; following it corrupted the ledger."""
    account = make_account(backend="topuptest", credentials={"username": "u", "password": "p"})
    provider.balance = D("0")
    credits_top_up(account=account, amount=100)  # the provider has 100 as well
    drift = credits_reconcile(account=account)
    assert drift.ok
    credits_reserve(account=account, amount=48, reference="campaign:1")
    credits_charge(account=account, amount=48, reference="campaign:1")  # the campaign ran
    account = fresh(account)
    assert account.balance == D("52")
    assert account.provider_drift == 0  # not -48: both sides are from the same moment
    client.force_login(superuser)
    page = client.get(url("change", account))
    messages = [str(m) for m in page.context["messages"]]
    assert not [m for m in messages if "The provider said" in m]


def test_real_drift_is_still_reported(client, superuser, make_account, provider):
    account = make_account(backend="topuptest", credentials={"username": "u", "password": "p"})
    provider.balance = D("0")
    credits_top_up(account=account, amount=100)
    provider.balance = D("97")  # 3 spent outside smsoffice
    credits_reconcile(account=account)
    credits_top_up(account=account, amount=10)  # provider 107, ours 110: still 3 apart
    assert fresh(account).provider_drift == D("-3")
    client.force_login(superuser)
    page = client.get(url("change", account))
    [warning] = [str(m) for m in page.context["messages"] if "The provider said" in str(m)]
    assert "when ours was 100.00 (difference -3.00)" in warning
