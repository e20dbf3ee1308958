# ruff: noqa: F811 - pytest fixtures imported from test_credits are redefined as arguments
"""Provider top-ups happen outside row locks: claim (intent + key), call the
provider, settle. Same key twice reaches the provider once; a crash leaves
an intent that is reconciled or shown to staff, never guessed."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from django.db import connection, connections
from django.utils import timezone

from providers.models import CreditTransaction, ProviderAccount, TopUpIntent
from providers.services import (
    MAX_AMOUNT,
    CreditError,
    credits_reserve,
    credits_top_up,
    credits_transfer,
    ledger_mismatches,
    topup_intent_resolve,
    topup_intents_reconcile,
)
from tests.providers.test_credits import (  # noqa: F401 (fixtures)
    acct,
    assert_consistent,
    fresh,
    provider,
    reseller_tree,
    sms_test_backends,
)

pytestmark = pytest.mark.django_db

D = Decimal
K = CreditTransaction.Kind
State = TopUpIntent.State
CREDS = {"username": "u", "password": "p"}


def test_same_key_on_two_accounts_reaches_one_provider_only(acct, provider):
    """The issue: two concurrent top-ups with one key on two accounts both
    reached their providers. The key is claimed before the call now: the
    second request, arriving while the first is at the provider, is refused
    without a provider call."""
    first = acct(name="First", backend="topuptest", credentials=CREDS)
    second = acct(name="Second", backend="topuptest", credentials=CREDS)
    seen = {}
    answer = provider.reply

    def reply(request):
        if "second" not in seen:
            with pytest.raises(CreditError) as exc:
                credits_top_up(account=second, amount=10, idempotency_key="pay:1")
            seen["second"] = exc.value
        return answer(request)

    provider.reply = reply
    row = credits_top_up(account=first, amount=10, idempotency_key="pay:1")
    assert len(provider.requests) == 1
    assert seen["second"].code == "idempotency_conflict"
    assert row.account_id == first.pk
    assert (fresh(first).balance, fresh(second).balance) == (D("10"), D("0"))


def test_a_repeat_while_the_provider_is_answering_says_it_is_under_way(acct, provider):
    account = acct(backend="topuptest", credentials=CREDS)
    seen = {}
    answer = provider.reply

    def reply(request):
        if "again" not in seen:
            with pytest.raises(CreditError) as exc:
                credits_top_up(account=account, amount=10, idempotency_key="pay:2")
            seen["again"] = exc.value
        return answer(request)

    provider.reply = reply
    row = credits_top_up(account=account, amount=10, idempotency_key="pay:2")
    assert seen["again"].code == "provider_unknown"
    assert "already under way" in seen["again"].messages[0]
    # Once settled, the repeat returns the first outcome.
    again = credits_top_up(account=account, amount=10, idempotency_key="pay:2")
    assert again.pk == row.pk
    assert len(provider.requests) == 1


def test_transfer_holds_the_resellers_credits_while_the_provider_is_called(
    reseller_tree, acct, provider
):
    alice, _, alice_main, *_ = reseller_tree
    sub = acct(parent=alice_main, backend="topuptest", credentials=CREDS)
    during = {}
    answer = provider.reply

    def reply(request):
        during["main"] = fresh(alice_main)
        return answer(request)

    provider.reply = reply
    credits_transfer(source=alice_main, target=sub, amount=30, user=alice)
    assert (during["main"].balance, during["main"].reserved) == (D("100"), D("30"))
    main, sub = fresh(alice_main), fresh(sub)
    assert (main.balance, main.reserved, sub.balance) == (D("70"), D("0"), D("30"))
    intent = TopUpIntent.objects.get()
    assert intent.state == State.APPLIED
    assert intent.ledger_row.kind == K.TRANSFER_OUT
    assert_consistent(main, sub)


def test_a_balance_the_column_cannot_hold_is_refused_before_the_provider(acct, provider):
    """The issue: 999999999999.99 onto a balance of 100 was a raw DataError
    after the provider had been topped up."""
    account = acct(backend="ledgertest", balance=100)
    with pytest.raises(CreditError, match="more than an account can hold"):
        credits_top_up(account=account, amount=MAX_AMOUNT)
    topped = acct(backend="topuptest", credentials=CREDS)
    credits_top_up(account=topped, amount=100)
    provider.requests.clear()
    with pytest.raises(CreditError, match="more than an account can hold"):
        credits_top_up(account=topped, amount="999999999999.99")
    assert provider.requests == []
    assert fresh(account).balance == D("100")


@pytest.mark.parametrize("amount", ["1e30", "-1e30", "1E+400"])
def test_huge_amounts_are_a_clear_error_not_an_invalid_operation(acct, amount):
    account = acct(balance=10)
    with pytest.raises(CreditError, match="too large"):
        credits_top_up(account=account, amount=amount)


def test_provider_confirmed_but_not_recorded_is_recorded_by_the_reconcile_task(
    acct, provider, monkeypatch
):
    from providers.services import topups

    account = acct(backend="topuptest", credentials=CREDS)
    real_settle = topups._settle
    monkeypatch.setattr(topups, "_settle", lambda pk, **kw: 1 / 0)
    with pytest.raises(CreditError, match="Do not retry"):
        credits_top_up(account=account, amount=10, idempotency_key="pay:3")
    intent = TopUpIntent.objects.get()
    assert intent.state == State.CONFIRMED
    assert fresh(account).balance == D("0")
    monkeypatch.setattr(topups, "_settle", real_settle)
    assert topup_intents_reconcile()["recorded"] == 1
    intent.refresh_from_db()
    assert intent.state == State.APPLIED
    assert fresh(account).balance == D("10")
    # The key replays the recorded row; the provider was called once.
    assert credits_top_up(account=account, amount=10, idempotency_key="pay:3").pk == (
        intent.ledger_row_id
    )
    assert len(provider.requests) == 1
    assert ledger_mismatches() == []


def test_an_intent_abandoned_by_a_crash_goes_to_a_person_who_settles_it(
    reseller_tree, acct, superuser
):
    alice, _, alice_main, *_ = reseller_tree
    sub = acct(parent=alice_main, backend="topuptest", credentials=CREDS)
    crashed = TopUpIntent.objects.create(
        account=sub, source=alice_main, amount=D("20"), backend="topuptest", created_by=alice
    )
    # What the claim wrote before the crash: the reseller's credits held.
    credits_reserve(account=alice_main, amount=20, reference=crashed.reference)
    assert topup_intents_reconcile()["marked_unknown"] == 0  # not stale yet
    TopUpIntent.objects.filter(pk=crashed.pk).update(created_at=timezone.now() - timedelta(hours=1))
    counts = topup_intents_reconcile()
    assert counts == {"recorded": 0, "marked_unknown": 1, "unknown": 1}
    crashed.refresh_from_db()
    assert crashed.state == State.UNKNOWN
    assert fresh(sub).balance == D("0")  # nothing guessed

    with pytest.raises(CreditError, match="may not settle"):
        topup_intent_resolve(intent=crashed, applied=True, user=alice)
    done = topup_intent_resolve(intent=crashed, applied=True, user=superuser, note="seen")
    assert "recorded as applied" in done
    main, sub = fresh(alice_main), fresh(sub)
    assert (main.balance, main.reserved, sub.balance) == (D("80"), D("0"), D("20"))
    with pytest.raises(CreditError, match="already applied"):
        topup_intent_resolve(intent=crashed, applied=False, user=superuser)
    assert_consistent(main, sub)


def test_a_person_can_settle_an_unknown_top_up_as_not_applied(reseller_tree, acct, superuser):
    _alice, _, alice_main, *_ = reseller_tree
    sub = acct(parent=alice_main, backend="topuptest", credentials=CREDS)
    intent = TopUpIntent.objects.create(
        account=sub,
        source=alice_main,
        amount=D("20"),
        backend="topuptest",
        state=State.UNKNOWN,
    )
    credits_reserve(account=alice_main, amount=20, reference=intent.reference)
    topup_intent_resolve(intent=intent, applied=False, user=superuser)
    intent.refresh_from_db()
    assert intent.state == State.REFUSED
    main = fresh(alice_main)
    assert (main.balance, main.reserved, fresh(sub).balance) == (D("100"), D("0"), D("0"))


@pytest.mark.serial  # waits of up to 10 s between threads: the machine to itself
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_slow_provider_does_not_make_a_reserve_on_the_same_reseller_wait(
    make_reseller, make_account, monkeypatch
):
    """The issue: with the provider 3 s slow, a reserve on the reseller's main
    account waited for it. The provider here answers only once the reserves
    on the main account and on a sibling are done (or after 10 s): before the
    fix they waited on the transfer's row locks, so they were not done."""
    if connection.vendor != "postgresql":
        pytest.skip("needs concurrent connections: run with DATABASE_URL=postgres://...")
    from tests.providers.test_credits import TopUpTestBackend

    reseller = make_reseller("rita")
    main = make_account(name="Main", owners=[reseller], balance=100, backend="ledgertest")
    slow = make_account(name="Slow", parent=main, backend="topuptest", credentials=CREDS)
    sibling = make_account(name="Sibling", parent=main, balance=10, backend="ledgertest")
    at_provider, reserves_done = threading.Event(), threading.Event()

    def handler(request):
        at_provider.set()
        reserves_done.wait(10)
        return httpx.Response(200, json={"Credits": 25, "Code": 0})

    monkeypatch.setattr(TopUpTestBackend, "handler", staticmethod(handler))
    errors: list[str] = []

    def transfer():
        try:
            credits_transfer(source=main, target=slow, amount=25, user=reseller)
        except Exception as exc:  # asserted empty below
            errors.append(repr(exc))
        finally:
            at_provider.set()
            connections.close_all()

    def reserves():
        try:
            at_provider.wait(10)
            credits_reserve(account=main, amount=5, reference="campaign:1")
            credits_reserve(account=sibling, amount=5, reference="campaign:2")
            reserves_done.set()
        except Exception as exc:  # asserted empty below
            errors.append(repr(exc))
        finally:
            connections.close_all()

    t1, t2 = threading.Thread(target=transfer), threading.Thread(target=reserves)
    t1.start()
    t2.start()
    t2.join(8)
    reserved_while_provider_busy = reserves_done.is_set()
    reserves_done.set()
    t1.join(15)
    t2.join(15)
    assert errors == []
    assert reserved_while_provider_busy
    main, slow = (ProviderAccount.objects.get(pk=a.pk) for a in (main, slow))
    assert (main.balance, main.reserved, slow.balance) == (D("75"), D("5"), D("25"))
    assert ledger_mismatches() == []


def test_staff_settle_unknown_top_ups_from_the_admin_and_resellers_see_only_theirs(
    client, superuser, reseller_tree, acct
):
    from django.urls import reverse

    _, bob, alice_main, *_ = reseller_tree
    sub = acct(parent=alice_main, backend="topuptest", credentials=CREDS)
    intent = TopUpIntent.objects.create(
        account=sub, source=alice_main, amount=D("20"), backend="topuptest", state=State.UNKNOWN
    )
    credits_reserve(account=alice_main, amount=20, reference=intent.reference)
    page = reverse("admin:providers_topupintent_changelist")
    client.force_login(superuser)
    listing = client.get(page)
    assert any("may or may not have been applied" in str(m) for m in listing.context["messages"])
    client.post(page, {"action": "resolve_applied", "_selected_action": [intent.pk]})
    intent.refresh_from_db()
    assert intent.state == State.APPLIED
    assert (fresh(alice_main).balance, fresh(sub).balance) == (D("80"), D("20"))
    client.force_login(bob)
    assert client.get(page).status_code == 403  # resellers have no top-up intents page
