"""Random sequences of top-up, transfer, reserve, charge, release, refund and
replays with the same idempotency key keep the ledger's invariants:

- each account's balance == Σ amount and reserved == Σ reserved_change;
- 0 ≤ reserved ≤ balance;
- credits in the system == Σ top-ups - Σ charges + Σ refunds;
- a movement is refused exactly when a simple model says it must be.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers.models import CreditTransaction, ProviderAccount
from providers.services import (
    CreditError,
    credits_charge,
    credits_refund,
    credits_release,
    credits_reserve,
    credits_top_up,
    credits_transfer,
    ledger_mismatches,
)
from tests.providers.test_credits import sms_test_backends  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.django_db

D = Decimal
ACCOUNTS = 3  # 0 is the reseller account, 1 and 2 its sub-accounts
REFS = ["campaign:1", "campaign:2"]

OPENING = [D("150"), D("20"), D("20")]

amounts = st.one_of(
    st.integers(1, 40).map(D),
    st.decimals(min_value=D("0.01"), max_value=D("60"), places=2),
)
account = st.integers(0, ACCOUNTS - 1)
sub = st.integers(1, ACCOUNTS - 1)
ref = st.sampled_from(REFS)
keyed = st.booleans()

step = st.one_of(
    st.tuples(st.just("top_up"), account, st.just(""), amounts, keyed),
    st.tuples(st.just("transfer"), sub, st.just(""), amounts, keyed),
    st.tuples(st.just("reserve"), account, ref, amounts, keyed),
    st.tuples(st.just("charge"), account, ref, amounts, keyed),
    st.tuples(st.just("release"), account, ref, amounts, keyed),
    st.tuples(st.just("refund"), account, ref, amounts, keyed),
    st.tuples(st.just("replay"), st.integers(0, 40), st.just(""), st.just(D(0)), st.just(True)),
)


class Model:
    """What the ledger must say, computed without a database."""

    def __init__(self):
        self.balance = [D(0)] * ACCOUNTS
        self.reserved = [D(0)] * ACCOUNTS
        self.by_ref = defaultdict(lambda: D(0))  # (account, ref) -> reserved
        self.came_in = self.charged = self.refunded = D(0)

    def available(self, i):
        return self.balance[i] - self.reserved[i]

    def apply(self, op, i, reference, amount) -> bool:
        """Apply if allowed; whether the real service must accept it."""
        if op == "top_up":
            self.balance[i] += amount
            self.came_in += amount
        elif op == "transfer":
            if self.available(0) < amount:
                return False
            self.balance[0] -= amount
            self.balance[i] += amount
        elif op == "reserve":
            if self.available(i) < amount:
                return False
            self.reserved[i] += amount
            self.by_ref[i, reference] += amount
        elif op in ("charge", "release"):
            if self.by_ref[i, reference] < amount:
                return False
            self.by_ref[i, reference] -= amount
            self.reserved[i] -= amount
            if op == "charge":
                self.balance[i] -= amount
                self.charged += amount
        elif op == "refund":
            self.balance[i] += amount
            self.refunded += amount
        return True


def call(op, accounts, i, reference, amount, key, user):
    target = accounts[i]
    if op == "top_up":
        return credits_top_up(account=target, amount=amount, idempotency_key=key)
    if op == "transfer":
        return credits_transfer(
            source=accounts[0], target=target, amount=amount, user=user, idempotency_key=key
        )
    service = {
        "reserve": credits_reserve,
        "charge": credits_charge,
        "release": credits_release,
        "refund": credits_refund,
    }[op]
    return service(account=target, amount=amount, reference=reference, idempotency_key=key)


def check_accounts(accounts, model):
    by_pk = ProviderAccount.objects.in_bulk([a.pk for a in accounts])
    fresh = [by_pk[a.pk] for a in accounts]
    assert [a.balance for a in fresh] == model.balance
    assert [a.reserved for a in fresh] == model.reserved
    for a in fresh:
        assert 0 <= a.reserved <= a.balance


@pytest.fixture
def reseller(make_reseller):
    return make_reseller("pat")


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, max_size=30))
def test_random_movements_keep_the_ledger_invariants(reseller, steps):
    with transaction.atomic():
        main = ProviderAccount.objects.create(name="Main", backend="ledgertest")
        main.owners.add(reseller)
        accounts = [main] + [
            ProviderAccount.objects.create(name=f"Sub {n}", parent=main, backend="ledgertest")
            for n in range(1, ACCOUNTS)
        ]
        model = Model()
        # Start with credits everywhere, so most steps have something to move.
        for i, opening in enumerate(OPENING):
            credits_top_up(account=accounts[i], amount=opening)
            model.apply("top_up", i, "", opening)
        applied = []  # (op, i, reference, amount, key) of movements made with a key
        for n, (op, i, reference, amount, with_key) in enumerate(steps):
            if op == "replay":
                if not applied:
                    continue
                op, i, reference, amount, key = applied[i % len(applied)]
                rows = CreditTransaction.objects.count()
                first = CreditTransaction.objects.get(idempotency_key=key)
                assert call(op, accounts, i, reference, amount, key, reseller).pk == first.pk
                assert CreditTransaction.objects.count() == rows  # applied once
            else:
                key = f"step:{n}" if with_key else None
                allowed = model.apply(op, i, reference, amount)
                try:
                    call(op, accounts, i, reference, amount, key, reseller)
                except CreditError:
                    assert not allowed, (op, i, reference, amount)
                else:
                    assert allowed, (op, i, reference, amount)
                    if key:
                        applied.append((op, i, reference, amount, key))

            check_accounts(accounts, model)

        check_accounts(accounts, model)
        for a in accounts:
            a.refresh_from_db()
            rows = CreditTransaction.objects.filter(account=a)
            assert a.balance == sum((r.amount for r in rows), D(0))
            assert a.reserved == sum((r.reserved_change for r in rows), D(0))
        # Transfers only move credits around: what is in the system came in
        # through top-ups and refunds and left through charges.
        assert sum(a.balance for a in accounts) == model.came_in - model.charged + model.refunded
        assert ledger_mismatches() == []
        transaction.set_rollback(True)
