"""50 threads moving and reserving credits on the same accounts at once lose
nothing: every balance equals its ledger, none goes negative, and the credits
in the system are exactly those that came in minus those charged.

Needs real concurrent connections, so it runs on PostgreSQL (CI's second
pass). The SQLite test database is in memory, where threads cannot share one
file with busy-timeout locking, so it is skipped there.
"""

from __future__ import annotations

import threading
from collections import Counter
from decimal import Decimal

import pytest
from django.db import connection, connections

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

# serial: the machine to itself, in make test's one-process pass (see the Makefile).
pytestmark = [
    pytest.mark.serial,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]

D = Decimal
K = CreditTransaction.Kind
THREADS = 50


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip(
            "needs concurrent connections to one database: run with DATABASE_URL=postgres://..."
        )


def run_threads(work, n=THREADS):
    """Run ``work(i)`` in ``n`` threads released together; return results and
    unexpected exceptions (a deadlock or lock error would land there)."""
    barrier = threading.Barrier(n)
    results, errors = [None] * n, []

    def target(i):
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as exc:  # collected and asserted empty below
            errors.append((i, repr(exc)))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def test_fifty_threads_transferring_and_reserving_lose_nothing(make_reseller, make_account):
    reseller = make_reseller("rita")
    main = make_account(name="Main", owners=[reseller], balance=300, backend="ledgertest")
    subs = [
        make_account(name=f"Sub {n}", parent=main, balance=20, backend="ledgertest")
        for n in range(3)
    ]
    accounts = [main, *subs]
    came_in = D("360")  # 300 + 3 x 20 in top-ups so far

    def work(i):
        done = Counter()
        sub = subs[i % len(subs)]
        if i < 10:
            # Ten double clicks of one transfer: applied once.
            row = credits_transfer(
                source=main, target=subs[0], amount=3, user=reseller, idempotency_key="dup"
            )
            return {"dup_row": row.pk}
        try:
            credits_transfer(source=main, target=sub, amount=7, user=reseller)
            done["transferred"] += 7
        except CreditError:
            done["transfer_refused"] += 1
        ref = f"campaign:{i}"
        try:
            credits_reserve(account=main, amount=5, reference=ref)
            credits_charge(account=main, amount=3, reference=ref)
            credits_release(account=main, amount=2, reference=ref)
            done["charged"] += 3
        except CreditError:
            done["reserve_refused"] += 1
        try:
            credits_reserve(account=sub, amount=4, reference=ref)
            credits_charge(account=sub, amount=4, reference=ref, idempotency_key=f"c:{i}")
            credits_charge(account=sub, amount=4, reference=ref, idempotency_key=f"c:{i}")
            credits_refund(account=sub, amount=1, reference=ref, idempotency_key=f"r:{i}")
            credits_refund(account=sub, amount=1, reference=ref, idempotency_key=f"r:{i}")
            done["charged"] += 4
            done["refunded"] += 1
        except CreditError:
            done["sub_reserve_refused"] += 1
        credits_top_up(account=main, amount=1, idempotency_key=f"pay:{i % 5}")
        return done

    results, errors = run_threads(work)
    assert errors == []

    dup_rows = {r["dup_row"] for r in results[:10]}
    assert len(dup_rows) == 1
    totals = sum((r for r in results[10:]), Counter())
    # Only the 5 distinct payment keys applied, whatever the number of threads.
    came_in += 5

    accounts = [ProviderAccount.objects.get(pk=a.pk) for a in accounts]
    for account in accounts:
        rows = CreditTransaction.objects.filter(account=account)
        assert account.balance == sum((r.amount for r in rows), D("0")), account.name
        assert account.reserved == sum((r.reserved_change for r in rows), D("0")), account.name
        assert account.balance >= 0
        assert 0 <= account.reserved <= account.balance
    assert all(a.reserved == 0 for a in accounts)  # every reservation charged or released
    assert ledger_mismatches() == []

    charged = -sum(r.amount for r in CreditTransaction.objects.filter(kind=K.CHARGE))
    refunded = sum(r.amount for r in CreditTransaction.objects.filter(kind=K.REFUND))
    assert (charged, refunded) == (totals["charged"], totals["refunded"])
    assert sum(a.balance for a in accounts) == came_in - charged + refunded

    moved = totals["transferred"] + 3  # plus the one deduplicated transfer
    assert CreditTransaction.objects.filter(kind=K.TRANSFER_OUT).count() == (
        totals["transferred"] // 7 + 1
    )
    out = -sum(r.amount for r in CreditTransaction.objects.filter(kind=K.TRANSFER_OUT))
    inn = sum(r.amount for r in CreditTransaction.objects.filter(kind=K.TRANSFER_IN))
    assert out == inn == moved
    assert accounts[0].balance == D("300") + 5 - moved - sum(
        -r.amount for r in CreditTransaction.objects.filter(kind=K.CHARGE, account=main)
    )
    # The reseller's 300 could not cover every request: some were refused.
    assert totals["transfer_refused"] + totals["reserve_refused"] > 0


def test_opposite_transfers_and_reserves_on_two_accounts_do_not_deadlock(
    make_reseller, make_account, superuser
):
    """Transfers lock both rows lowest pk first, so threads touching the same
    pair from both ends queue instead of deadlocking."""
    reseller = make_reseller("rex")
    parent = make_account(name="Parent", owners=[reseller], balance=500, backend="ledgertest")
    child = make_account(name="Child", parent=parent, balance=500, backend="ledgertest")

    def work(i):
        if i % 2:
            credits_transfer(source=parent, target=child, amount=1, user=reseller)
        else:
            credits_reserve(account=child, amount=1, reference=f"c:{i}")
            credits_reserve(account=parent, amount=1, reference=f"c:{i}")
        return True

    _, errors = run_threads(work, n=20)
    assert errors == []
    parent, child = (ProviderAccount.objects.get(pk=a.pk) for a in (parent, child))
    assert (parent.balance, child.balance) == (D("490"), D("510"))
    assert (parent.reserved, child.reserved) == (D("10"), D("10"))
    assert ledger_mismatches() == []
