"""The credit services: every movement in the ledger, nothing created or lost.

The accounts here use two test backends registered in ``SMS_BACKENDS``:
``ledgertest`` (no provider side) and ``topuptest`` (a provider with
``topup`` and ``balance`` behind an ``httpx.MockTransport``; no network).
"""

from __future__ import annotations

import base64
import json
import logging
import re
from decimal import Decimal

import httpx
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction

from providers.backends.base import Capability, ProviderError, SmsBackend
from providers.models import CreditTransaction, ProviderAccount
from providers.services import (
    CreditError,
    credits_adjust,
    credits_charge,
    credits_reconcile,
    credits_refund,
    credits_refund_many,
    credits_release,
    credits_reserve,
    credits_top_up,
    credits_transfer,
    ledger_mismatches,
)
from providers.tasks import reconcile_balances

pytestmark = pytest.mark.django_db

D = Decimal
K = CreditTransaction.Kind


# --------------------------------------------------------------- test backends


def _no_network(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"unexpected provider call {request.method} {request.url}")


class LedgerTestBackend(SmsBackend):
    """A provider with nothing to top up: credits live only in our ledger."""

    name = "ledgertest"
    capabilities = frozenset()


class TopUpTestBackend(SmsBackend):
    """A provider whose sub-accounts are topped up with their own credentials,
    shaped like SMS Everyone's ``/api/credits``. ``handler`` answers requests."""

    name = "topuptest"
    capabilities = frozenset({Capability.TOPUP, Capability.BALANCE})
    default_base_url = "https://provider.test/api"
    handler = staticmethod(_no_network)

    def __init__(self, **kwargs):
        kwargs.setdefault("transport", httpx.MockTransport(type(self).handler))
        super().__init__(**kwargs)

    def auth_headers(self):
        pair = f"{self.credentials['username']}:{self.credentials['password']}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}

    def _answer(self, answer):
        if answer.get("Code") != 0:
            raise ProviderError(answer.get("Message", "refused"), code=answer.get("Code"))
        return D(str(answer["Credits"]))

    def top_up(self, credits):
        return self._answer(
            self.request("POST", "/credits", json_body={"credits": int(credits), "action": "add"})
        )

    def balance(self):
        return self._answer(self.request("POST", "/RetrieveUserSettings", json_body={}))


@pytest.fixture(autouse=True)
def sms_test_backends(settings):
    settings.SMS_BACKENDS = {
        **settings.SMS_BACKENDS,
        "ledgertest": f"{__name__}.LedgerTestBackend",
        "topuptest": f"{__name__}.TopUpTestBackend",
    }


@pytest.fixture
def provider(monkeypatch):
    """Records provider requests and answers with ``provider.reply(request)``."""

    class Provider:
        requests: list[httpx.Request] = []
        balance = D("1000")

        def reply(self, request):
            body = json.loads(request.content or b"{}")
            if request.url.path.endswith("/credits"):
                self.balance += body["credits"]
            return httpx.Response(200, json={"Credits": int(self.balance), "Code": 0})

    p = Provider()
    p.requests = []

    def handler(request):
        p.requests.append(request)
        return p.reply(request)

    monkeypatch.setattr(TopUpTestBackend, "handler", staticmethod(handler))
    return p


@pytest.fixture
def acct(make_account):
    def make(**kw):
        kw.setdefault("backend", "ledgertest")
        return make_account(**kw)

    return make


@pytest.fixture
def reseller_tree(make_reseller, acct):
    alice, bob = make_reseller("alice"), make_reseller("bob")
    alice_main = acct(name="Alice Main", owners=[alice], balance=100)
    alice_sub = acct(name="Alice Sub", parent=alice_main)
    bob_main = acct(name="Bob Main", owners=[bob], balance=50)
    bob_sub = acct(name="Bob Sub", parent=bob_main)
    return alice, bob, alice_main, alice_sub, bob_main, bob_sub


def fresh(account) -> ProviderAccount:
    return ProviderAccount.objects.get(pk=account.pk)


def ledger_sum(account) -> tuple[Decimal, Decimal]:
    rows = CreditTransaction.objects.filter(account=account)
    return (
        sum((r.amount for r in rows), D("0")),
        sum((r.reserved_change for r in rows), D("0")),
    )


def assert_consistent(*accounts):
    for account in accounts:
        a = fresh(account)
        assert (a.balance, a.reserved) == ledger_sum(a), a.name
    assert ledger_mismatches() == []


# ---------------------------------------------------------------- amounts


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (0, "must not be zero"),
        ("0.00", "must not be zero"),
        (-5, "must be more than zero (got -5)"),
        ("abc", "must be a number like 100 or 12.50 (got 'abc')"),
        ("NaN", "must be a finite number"),
        ("1.005", "at most 2 decimal places (got 1.005)"),
        ("1e15", "too large"),
        (True, "must be a number"),
    ],
)
def test_bad_amounts_are_refused_with_what_is_wrong(acct, superuser, amount, message):
    account = acct(balance=10)
    reserved = acct(balance=10)
    credits_reserve(account=reserved, amount=5, reference="campaign:1")
    calls = [
        lambda: credits_top_up(account=account, amount=amount),
        lambda: credits_reserve(account=account, amount=amount, reference="campaign:1"),
        lambda: credits_charge(account=reserved, amount=amount, reference="campaign:1"),
        lambda: credits_release(account=reserved, amount=amount, reference="campaign:1"),
        lambda: credits_refund(account=account, amount=amount, reference="campaign:1"),
    ]
    rows_before = CreditTransaction.objects.count()
    for call in calls:
        with pytest.raises(CreditError) as exc:
            call()
        assert message in exc.value.messages[0]
    assert CreditTransaction.objects.count() == rows_before
    assert_consistent(account, reserved)


def test_adjustment_accepts_negative_but_not_zero(acct, superuser):
    account = acct(balance=10)
    with pytest.raises(CreditError, match="must not be zero"):
        credits_adjust(account=account, amount=0, reason="typo", user=superuser)
    credits_adjust(account=account, amount="-2.50", reason="double top-up", user=superuser)
    assert fresh(account).balance == D("7.50")


# ----------------------------------------------------------------- top-up


def test_top_up_writes_the_row_with_the_balance_after(acct, superuser):
    account = acct(balance=10)
    row = credits_top_up(account=account, amount="25.50", user=superuser, note="invoice 7")
    assert (row.kind, row.amount, row.reserved_change) == (K.TOP_UP, D("25.50"), D("0"))
    assert (row.balance_after, row.reserved_after) == (D("35.50"), D("0"))
    assert (row.created_by, row.note) == (superuser, "invoice 7")
    assert fresh(account).balance == D("35.50")
    assert_consistent(account)


def test_same_idempotency_key_twice_applies_once(acct):
    account = acct()
    first = credits_top_up(account=account, amount=40, idempotency_key="pay:1")
    again = credits_top_up(account=account, amount=40, idempotency_key="pay:1")
    assert again.pk == first.pk
    assert fresh(account).balance == D("40")
    assert CreditTransaction.objects.filter(account=account).count() == 1


def test_concurrent_duplicate_that_loses_the_unique_key_race_returns_the_first_row(
    acct, monkeypatch
):
    """Two requests with one key, the second not seeing the first's row until
    its INSERT hits the unique index: it rolls back and returns the first row."""
    from providers.services import ledger

    account = acct(balance=10)
    first = credits_reserve(account=account, amount=1, reference="c:1", idempotency_key="k")
    real_replay, blind = ledger.replay, iter([None, None])
    monkeypatch.setattr(
        ledger, "replay", lambda *a, **kw: next(blind, None) or real_replay(*a, **kw)
    )
    rows_before = CreditTransaction.objects.count()
    again = credits_reserve(account=account, amount=1, reference="c:1", idempotency_key="k")
    assert again.pk == first.pk
    assert CreditTransaction.objects.count() == rows_before
    assert fresh(account).reserved == D("1")
    assert_consistent(account)


def test_idempotency_key_reused_for_another_movement_is_refused(acct):
    account = acct()
    credits_top_up(account=account, amount=40, idempotency_key="pay:1")
    with pytest.raises(CreditError, match="already used for another movement"):
        credits_top_up(account=account, amount=41, idempotency_key="pay:1")
    with pytest.raises(CreditError, match="already used for another movement"):
        credits_reserve(account=account, amount=40, reference="c:1", idempotency_key="pay:1")
    assert fresh(account).balance == D("40")
    assert_consistent(account)


def test_user_without_add_credits_permission_cannot_top_up(reseller_tree):
    alice, _, alice_main, *_ = reseller_tree
    with pytest.raises(CreditError, match="may not add credits"):
        credits_top_up(account=alice_main, amount=1000, user=alice)
    assert fresh(alice_main).balance == D("100")


def test_movement_inside_a_rolled_back_outer_transaction_leaves_nothing(acct):
    account = acct(balance=10)
    with transaction.atomic():
        credits_top_up(account=account, amount=5)
        credits_reserve(account=account, amount=12, reference="campaign:9")
        transaction.set_rollback(True)
    assert fresh(account).balance == D("10")
    assert CreditTransaction.objects.filter(account=account).count() == 1


def test_a_failed_movement_does_not_spoil_the_callers_transaction(acct):
    account = acct(balance=10)
    with transaction.atomic():
        with pytest.raises(CreditError):
            credits_reserve(account=account, amount=11, reference="campaign:9")
        credits_reserve(account=account, amount=10, reference="campaign:9")
    assert fresh(account).reserved == D("10")
    assert_consistent(account)


def test_saving_a_stale_account_instance_does_not_overwrite_its_credits(acct):
    account = acct(balance=10)
    stale = fresh(account)
    credits_top_up(account=account, amount=90)
    stale.name = "Renamed"
    stale.save()
    account = fresh(account)
    assert (account.name, account.balance) == ("Renamed", D("100"))
    assert_consistent(account)


# --------------------------------------------------------------- transfer


def test_transfer_moves_credits_and_writes_both_rows(reseller_tree):
    alice, _, alice_main, alice_sub, *_ = reseller_tree
    out = credits_transfer(source=alice_main, target=alice_sub, amount=30, user=alice, note="March")
    inn = CreditTransaction.objects.get(account=alice_sub, kind=K.TRANSFER_IN)
    assert (out.kind, out.account, out.amount, out.balance_after) == (
        K.TRANSFER_OUT,
        alice_main,
        D("-30"),
        D("70"),
    )
    assert (inn.amount, inn.balance_after, inn.counterparty) == (D("30"), D("30"), alice_main)
    assert out.counterparty == alice_sub
    assert inn.reference == f"transfer_out:{out.pk}"
    assert (out.created_by, inn.created_by, inn.note) == (alice, alice, "March")
    assert_consistent(alice_main, alice_sub)


def test_transfer_more_than_available_is_refused_with_the_numbers(reseller_tree):
    alice, _, alice_main, alice_sub, *_ = reseller_tree
    credits_reserve(account=alice_main, amount=60, reference="campaign:1")
    with pytest.raises(CreditError) as exc:
        credits_transfer(source=alice_main, target=alice_sub, amount="40.01", user=alice)
    assert exc.value.messages == [
        "Alice Main has 40.00 credits available (100.00 balance, 60.00 reserved), "
        "needs 40.01 to transfer to Alice Sub."
    ]
    assert (fresh(alice_main).balance, fresh(alice_sub).balance) == (D("100"), D("0"))
    credits_transfer(source=alice_main, target=alice_sub, amount=40, user=alice)
    assert (fresh(alice_main).available, fresh(alice_sub).balance) == (D("0"), D("40"))
    assert_consistent(alice_main, alice_sub)


def test_transfer_with_the_same_key_twice_applies_once(reseller_tree):
    alice, _, alice_main, alice_sub, *_ = reseller_tree
    kw = {"source": alice_main, "target": alice_sub, "amount": 10, "user": alice}
    first = credits_transfer(**kw, idempotency_key="click:1")
    second = credits_transfer(**kw, idempotency_key="click:1")
    assert first.pk == second.pk
    assert (fresh(alice_main).balance, fresh(alice_sub).balance) == (D("90"), D("10"))
    assert CreditTransaction.objects.filter(kind=K.TRANSFER_IN).count() == 1


@pytest.mark.parametrize(
    ("who", "source", "target", "message"),
    [
        ("bob", "alice_main", "alice_sub", "bob does not manage Alice Main"),
        ("alice", "alice_main", "bob_sub", "Bob Sub is not a sub-account of Alice Main"),
        ("alice", "bob_main", "bob_sub", "alice does not manage Bob Main"),
        ("alice", "alice_sub", "alice_main", "Alice Main is not a sub-account of Alice Sub"),
        ("alice", "alice_main", "alice_main", "cannot transfer credits to itself"),
        ("alice", "alice_main", "bob_main", "Bob Main is not a sub-account of Alice Main"),
    ],
)
def test_reseller_cannot_move_credits_outside_its_own_tree(
    reseller_tree, who, source, target, message
):
    alice, bob, alice_main, alice_sub, bob_main, bob_sub = reseller_tree
    named = locals()
    with pytest.raises(CreditError, match=message):
        credits_transfer(source=named[source], target=named[target], amount=1, user=named[who])
    assert [fresh(a).balance for a in (alice_main, alice_sub, bob_main, bob_sub)] == [
        D("100"),
        D("0"),
        D("50"),
        D("0"),
    ]


def test_owner_without_the_top_up_permission_cannot_transfer(reseller_tree, operator):
    _, _, alice_main, alice_sub, *_ = reseller_tree
    alice_main.owners.add(operator)
    with pytest.raises(CreditError, match="'top up account' permission is missing"):
        credits_transfer(source=alice_main, target=alice_sub, amount=1, user=operator)


def test_superuser_may_transfer_for_any_reseller(reseller_tree, superuser):
    *_, bob_main, bob_sub = reseller_tree
    credits_transfer(source=bob_main, target=bob_sub, amount=50, user=superuser)
    assert (fresh(bob_main).balance, fresh(bob_sub).balance) == (D("0"), D("50"))


# ------------------------------------------- reserve, charge, release, refund


def test_reserve_charge_release_refund_cycle(acct):
    account = acct(balance=100)
    credits_reserve(account=account, amount=30, reference="campaign:1")
    a = fresh(account)
    assert (a.balance, a.reserved, a.available) == (D("100"), D("30"), D("70"))
    row = credits_charge(account=account, amount=20, reference="campaign:1")
    assert (row.amount, row.reserved_change, row.balance_after, row.reserved_after) == (
        D("-20"),
        D("-20"),
        D("80"),
        D("10"),
    )
    credits_release(account=account, amount=10, reference="campaign:1")
    credits_refund(account=account, amount=3, reference="campaign:1", idempotency_key="m:1")
    credits_refund(account=account, amount=3, reference="campaign:1", idempotency_key="m:1")
    a = fresh(account)
    assert (a.balance, a.reserved, a.available) == (D("83"), D("0"), D("83"))
    assert_consistent(account)


def test_a_bulk_refund_is_one_row_with_the_count_in_its_note(acct):
    account = acct(balance=10)
    row = credits_refund_many(
        account=account,
        amount="7.50",
        reference="refund:apply:abc",
        count=5,
        note="Messages 1-5.",
    )
    assert (row.kind, row.amount, row.reserved_change, row.balance_after) == (
        K.REFUND,
        D("7.50"),
        D("0"),
        D("17.50"),
    )
    assert (row.reference, row.note) == (
        "refund:apply:abc",
        "Provider refund of 5 messages. Messages 1-5.",
    )
    assert CreditTransaction.objects.filter(account=account, kind=K.REFUND).count() == 1
    assert fresh(account).balance == D("17.50")
    assert_consistent(account)


def test_a_bulk_refund_with_the_same_key_twice_applies_once(acct):
    account = acct(balance=10)
    first = credits_refund_many(
        account=account, amount=3, reference="r:1", count=2, idempotency_key="k:1"
    )
    again = credits_refund_many(
        account=account, amount=3, reference="r:1", count=2, idempotency_key="k:1"
    )
    assert again.pk == first.pk
    assert fresh(account).balance == D("13")
    assert_consistent(account)


@pytest.mark.parametrize("count", [0, -1, 1.5, "3", True, None])
def test_a_bulk_refund_needs_a_whole_positive_count(acct, count):
    account = acct(balance=10)
    with pytest.raises(CreditError, match="count of refunded messages"):
        credits_refund_many(account=account, amount=1, reference="r:1", count=count)
    assert fresh(account).balance == D("10")


def test_reserve_more_than_available_is_refused(acct):
    account = acct(balance=50)
    credits_reserve(account=account, amount=45, reference="campaign:1")
    with pytest.raises(CreditError) as exc:
        credits_reserve(account=account, amount=6, reference="campaign:2")
    assert exc.value.messages == [
        f"{account.name} has 5.00 credits available (50.00 balance, 45.00 reserved), "
        "needs 6.00 to reserve for campaign:2."
    ]
    assert fresh(account).reserved == D("45")


def test_charge_and_release_cannot_take_another_references_reservation(acct):
    account = acct(balance=50)
    credits_reserve(account=account, amount=10, reference="campaign:1")
    credits_reserve(account=account, amount=30, reference="campaign:2")
    with pytest.raises(
        CreditError, match=re.escape("has 10.00 credits reserved for campaign:1, cannot")
    ):
        credits_charge(account=account, amount=11, reference="campaign:1")
    credits_release(account=account, amount=10, reference="campaign:1")
    with pytest.raises(CreditError, match=re.escape("has 0.00 credits reserved for campaign:1")):
        credits_release(account=account, amount=10, reference="campaign:1")
    a = fresh(account)
    assert (a.balance, a.reserved) == (D("50"), D("30"))
    assert_consistent(account)


def test_reference_is_required_for_engine_movements(acct):
    account = acct(balance=5)
    with pytest.raises(CreditError, match="A reference is required"):
        credits_reserve(account=account, amount=1, reference="  ")


# ------------------------------------------------------------- adjustments


def test_adjustment_needs_a_reason_and_the_permission(reseller_tree, superuser):
    alice, _, alice_main, *_ = reseller_tree
    with pytest.raises(CreditError, match="needs a reason"):
        credits_adjust(account=alice_main, amount=5, reason=" ", user=superuser)
    with pytest.raises(CreditError, match="may not adjust credits"):
        credits_adjust(account=alice_main, amount=5, reason="gift", user=alice)
    row = credits_adjust(account=alice_main, amount=5, reason="goodwill", user=superuser)
    assert (row.kind, row.note, row.created_by) == (K.ADJUSTMENT, "goodwill", superuser)
    assert fresh(alice_main).balance == D("105")


def test_negative_adjustment_cannot_take_reserved_credits(acct, superuser):
    account = acct(balance=20)
    credits_reserve(account=account, amount=15, reference="campaign:1")
    with pytest.raises(CreditError, match=r"has 5\.00 credits available .* needs 6\.00 to remove"):
        credits_adjust(account=account, amount=-6, reason="fix", user=superuser)
    credits_adjust(account=account, amount=-5, reason="fix", user=superuser)
    a = fresh(account)
    assert (a.balance, a.reserved, a.available) == (D("15"), D("15"), D("0"))


# ------------------------------------------------------- provider top-up


def test_top_up_also_tops_up_the_provider_and_records_its_answer(acct, provider):
    account = acct(backend="topuptest", credentials={"username": "sub1", "password": "pw1"})
    row = credits_top_up(account=account, amount=250, idempotency_key="pay:9")
    [request] = provider.requests
    assert (request.method, request.url) == ("POST", "https://provider.test/api/credits")
    assert json.loads(request.content) == {"credits": 250, "action": "add"}
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"sub1:pw1").decode()
    assert row.provider_response == {
        "backend": "topuptest",
        "credits_added": "250.00",
        "provider_balance": "1250",
    }
    credits_top_up(account=account, amount=250, idempotency_key="pay:9")
    assert len(provider.requests) == 1  # the replay does not top the provider up again
    assert fresh(account).balance == D("250")


def test_transfer_tops_up_the_sub_account_with_its_own_credentials(reseller_tree, acct, provider):
    alice, _, alice_main, *_ = reseller_tree
    sub = acct(
        name="Alice Provider Sub",
        parent=alice_main,
        backend="topuptest",
        credentials={"username": "alice-sub", "password": "s3"},
    )
    credits_transfer(source=alice_main, target=sub, amount=25, user=alice)
    [request] = provider.requests
    assert json.loads(request.content) == {"credits": 25, "action": "add"}
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"alice-sub:s3").decode()
    inn = CreditTransaction.objects.get(account=sub)
    assert inn.provider_response["provider_balance"] == "1025"
    assert_consistent(alice_main, sub)


def test_provider_refusal_records_nothing_and_says_why(reseller_tree, acct, provider):
    alice, _, alice_main, *_ = reseller_tree
    sub = acct(
        parent=alice_main, backend="topuptest", credentials={"username": "u", "password": "p"}
    )
    provider.reply = lambda request: httpx.Response(
        200, json={"Code": -129, "Message": "Not allowed to add credits"}
    )
    with pytest.raises(CreditError) as exc:
        credits_transfer(source=alice_main, target=sub, amount=25, user=alice)
    assert "The provider refused to add 25.00 credits to" in exc.value.messages[0]
    assert "Not allowed to add credits" in exc.value.messages[0]
    assert "Nothing was recorded here" in exc.value.messages[0]
    assert (fresh(alice_main).balance, fresh(sub).balance) == (D("100"), D("0"))
    assert not CreditTransaction.objects.filter(kind=K.TRANSFER_OUT).exists()


def test_provider_timeout_warns_the_top_up_may_have_happened(acct, provider):
    account = acct(backend="topuptest", credentials={"username": "u", "password": "p"})

    def timeout(request):
        raise httpx.ReadTimeout("slow", request=request)

    provider.reply = timeout
    with pytest.raises(CreditError) as exc:
        credits_top_up(account=account, amount=10)
    text = exc.value.messages[0]
    assert "may have been added; checking" in text
    assert "refused" not in text  # it may well have added them
    assert fresh(account).balance == D("0")
    from providers.models import TopUpIntent

    intent = TopUpIntent.objects.get(account=account)
    assert intent.state == TopUpIntent.State.UNKNOWN
    assert f"#{intent.pk}" in text


def test_short_transfer_never_reaches_the_provider(reseller_tree, acct, provider):
    alice, _, alice_main, *_ = reseller_tree
    sub = acct(
        parent=alice_main, backend="topuptest", credentials={"username": "u", "password": "p"}
    )
    with pytest.raises(CreditError, match=re.escape("needs 101.00")):
        credits_transfer(source=alice_main, target=sub, amount=101, user=alice)
    assert provider.requests == []


def test_provider_success_then_local_failure_is_logged_loudly(acct, provider, monkeypatch, caplog):
    from providers.services import ledger

    account = acct(backend="topuptest", credentials={"username": "u", "password": "p"})

    def broken_write(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ledger, "write", broken_write)
    with (
        caplog.at_level(logging.CRITICAL, logger="providers.credits"),
        pytest.raises(CreditError, match="Do not retry"),
    ):
        credits_top_up(account=account, amount=10)
    assert "PROVIDER TOPPED UP BUT NOT RECORDED" in caplog.text
    assert len(provider.requests) == 1
    assert fresh(account).balance == D("0")


def test_top_up_through_the_sms_everyone_backend(acct):
    smseveryone = pytest.importorskip("providers.backends.smseveryone")
    seen = []

    def handler(request):
        seen.append(request)
        # The answer copied from the SMS Everyone docs (/api/credits).
        return httpx.Response(200, json={"Credits": 8488, "Code": 0})

    account = acct(backend="smseveryone", credentials={"username": "sub", "password": "pw"})
    backend = smseveryone.SmsEveryoneBackend(
        credentials={"username": "sub", "password": "pw"}, transport=httpx.MockTransport(handler)
    )
    row = credits_top_up(account=account, amount=1000, backend=backend)
    [request] = seen
    assert request.url.path == "/api/credits"
    assert json.loads(request.content) == {"credits": 1000, "action": "add"}
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"sub:pw").decode()
    assert row.provider_response["provider_balance"] == "8488"


def test_unloadable_backend_refuses_instead_of_skipping_the_provider(acct, settings):
    account = acct(balance=5)
    settings.SMS_BACKENDS = {**settings.SMS_BACKENDS, "ledgertest": "nowhere.Backend"}
    with pytest.raises(CreditError, match="Cannot load the backend 'ledgertest'"):
        credits_top_up(account=account, amount=1)
    assert fresh(account).balance == D("5")


# ------------------------------------------------------------ low balance


def test_low_balance_mail_goes_once_per_crossing(
    reseller_tree, acct, mailoutbox, django_capture_on_commit_callbacks
):
    alice, _, alice_main, *_ = reseller_tree
    alice.email = "alice@example.com"
    alice.save()
    sub = acct(name="Shop", parent=alice_main, balance=100, low_balance_threshold=50)
    with django_capture_on_commit_callbacks(execute=True):
        credits_reserve(account=sub, amount=40, reference="c:1")  # 60 available: above
        assert mailoutbox == []
        credits_reserve(account=sub, amount=20, reference="c:2")  # 40: crosses
        credits_reserve(account=sub, amount=10, reference="c:3")  # 30: still below
    [mail] = mailoutbox
    assert mail.to == ["alice@example.com"]
    assert mail.subject == "Low balance on Shop: 40.00 credits available"
    assert "Threshold: 50.00" in mail.body
    assert fresh(sub).low_balance_notified_at is not None
    with django_capture_on_commit_callbacks(execute=True):
        credits_release(account=sub, amount=20, reference="c:2")  # 50: back above, re-armed
    assert fresh(sub).low_balance_notified_at is None
    with django_capture_on_commit_callbacks(execute=True):
        credits_reserve(account=sub, amount=1, reference="c:4")  # 49: crosses again
    assert len(mailoutbox) == 2


def test_top_up_that_stays_below_the_threshold_sends_no_mail(
    make_reseller, acct, mailoutbox, django_capture_on_commit_callbacks
):
    owner = make_reseller("carol")
    owner.email = "carol@example.com"
    owner.save()
    account = acct(owners=[owner], low_balance_threshold=500)
    with django_capture_on_commit_callbacks(execute=True):
        credits_top_up(account=account, amount=100)
    assert mailoutbox == []


# ---------------------------------------------------- reconcile and check


def test_reconcile_reports_drift_without_changing_the_balance(acct, provider, caplog):
    account = acct(backend="topuptest", credentials={"username": "u", "password": "p"})
    provider.balance = D("0")
    credits_top_up(account=account, amount=100)  # provider: 100 as well
    provider.balance = D("97")  # somebody spent 3 credits outside smsoffice
    with caplog.at_level(logging.WARNING, logger="providers.credits"):
        drift = credits_reconcile(account=account)
    assert (drift.local_balance, drift.provider_balance, drift.difference) == (
        D("100"),
        D("97"),
        D("-3"),
    )
    assert not drift.ok
    assert "Balance drift on" in caplog.text
    account = fresh(account)
    assert (account.balance, account.provider_balance, account.provider_drift) == (
        D("100"),
        D("97"),
        D("-3"),
    )
    assert_consistent(account)


def test_reconcile_task_checks_only_accounts_whose_provider_has_a_balance(acct, provider):
    acct(balance=10)  # ledgertest: no balance capability, never asked
    matching = acct(backend="topuptest", credentials={"username": "u", "password": "p"})
    provider.balance = D("0")
    credits_top_up(account=matching, amount=40)
    drifting = acct(backend="topuptest", credentials={"username": "v", "password": "p"})
    result = reconcile_balances()
    assert result["checked"] == 2
    assert [d["account"] for d in result["drift"]] == [drifting.name]
    assert result["drift"][0]["difference"] == "40.00"
    assert result["errors"] == {}


def test_reconcile_task_carries_on_when_one_provider_fails(acct, provider):
    first = acct(backend="topuptest", credentials={"username": "u", "password": "p"})
    second = acct(backend="topuptest", credentials={"username": "v", "password": "p"})

    def reply(request):
        if request.headers["Authorization"] == "Basic dTpw":  # u:p, the first account
            return httpx.Response(503, text="maintenance")
        return httpx.Response(200, json={"Credits": 0, "Code": 0})

    provider.reply = reply
    result = reconcile_balances()
    assert result["checked"] == 1
    assert list(result["errors"]) == [first.name]
    assert fresh(second).provider_balance == D("0")


def test_credits_check_passes_on_a_consistent_ledger(reseller_tree, capsys):
    alice, _, alice_main, alice_sub, *_ = reseller_tree
    credits_transfer(source=alice_main, target=alice_sub, amount=5, user=alice)
    call_command("credits_check")
    assert "All 4 account(s) match their ledger" in capsys.readouterr().out


def test_credits_check_fails_and_names_each_mismatch(reseller_tree, capsys):
    *_, bob_main, bob_sub = reseller_tree
    ProviderAccount.objects.filter(pk=bob_main.pk).update(balance=D("51"))
    ProviderAccount.objects.filter(pk=bob_sub.pk).update(balance=D("2"), reserved=D("1"))
    with pytest.raises(CommandError) as exc:
        call_command("credits_check")
    assert exc.value.returncode == 1
    assert "2 of 4 account(s) do not match" in str(exc.value)
    err = capsys.readouterr().err
    assert f"#{bob_main.pk} Bob Main: balance 51.00 vs ledger 50.00" in err
    assert "(last row says 50.00); reserved 0.00 vs ledger 0.00 (last row says 0.00)" in err
    assert f"#{bob_sub.pk} Bob Sub: balance 2.00, reserved 1.00, but the ledger has no rows" in err
