"""Credit movements under contention on PostgreSQL: no deadlock, no lost work.

A transaction that updates a sub-account row twice (charge then release,
what the engine's batch transaction does) makes PostgreSQL's deferred
foreign-key check on ``ProviderAccount.parent`` take a KEY SHARE lock on the
reseller's row at commit. A transfer that held the reseller row ``FOR
UPDATE`` and waited for the sub-account deadlocked against it. The locks are
now ``FOR NO KEY UPDATE`` (``providers.locking``), which a KEY SHARE does not
wait for.

Needs real concurrent connections: skipped on SQLite.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction

from providers.models import CreditTransaction, ProviderAccount
from providers.services import (
    CreditError,
    credits_charge,
    credits_release,
    credits_reserve,
    credits_top_up,
    credits_transfer,
    ledger_mismatches,
)
from tests.providers.test_credits import sms_test_backends  # noqa: F401 (autouse fixture)
from tests.providers.test_credits_concurrency import run_threads

# serial: the machine to itself, in make test's one-process pass (see the Makefile).
pytestmark = [pytest.mark.serial, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

D = Decimal
K = CreditTransaction.Kind


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip(
            "needs concurrent connections to one database: run with DATABASE_URL=postgres://..."
        )


def _sum_ledger(account_id: int) -> tuple[Decimal, Decimal]:
    rows = CreditTransaction.objects.filter(account_id=account_id)
    return (
        sum((r.amount for r in rows), D("0")),
        sum((r.reserved_change for r in rows), D("0")),
    )


def test_charge_and_release_in_one_transaction_do_not_deadlock_a_transfer_from_the_reseller(
    make_reseller, make_account
):
    """The issue's deterministic reproduction: before the fix the transfer (or
    the batch) died with ``deadlock detected`` about one second in."""
    reseller = make_reseller("rita")
    main = make_account(name="Main", owners=[reseller], balance=100, backend="ledgertest")
    sub = make_account(name="Sub", parent=main, balance=50, backend="ledgertest")
    credits_reserve(account=sub, amount=10, reference="campaign:1")
    batch_wrote = threading.Event()
    errors: list[str] = []

    def batch():
        try:
            with transaction.atomic():
                credits_charge(account=sub, amount=4, reference="campaign:1")
                credits_release(account=sub, amount=6, reference="campaign:1")
                batch_wrote.set()
                time.sleep(1)  # holds the sub-account row, as a slow batch would
        except Exception as exc:  # asserted empty below
            errors.append(f"batch: {exc!r}")
        finally:
            batch_wrote.set()
            connections.close_all()

    def transfer():
        try:
            batch_wrote.wait(5)
            credits_transfer(source=main, target=sub, amount=20, user=reseller)
        except Exception as exc:  # asserted empty below
            errors.append(f"transfer: {exc!r}")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=batch), threading.Thread(target=transfer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    main, sub = (ProviderAccount.objects.get(pk=a.pk) for a in (main, sub))
    assert (main.balance, main.reserved) == (D("80"), D("0"))
    assert (sub.balance, sub.reserved) == (D("66"), D("0"))  # 50 - 4 charged + 20
    assert ledger_mismatches() == []


def test_fifty_threads_of_transfers_batches_thresholds_and_duplicate_keys_only_refuse_clearly(
    make_reseller, make_account
):
    """Transfers from the reseller, charge+release in one transaction on its
    sub-accounts, low-balance threshold crossings and duplicate keys, all at
    once: nothing but clear refusals, every balance equals its ledger, and
    the credits in the system are those that came in minus those charged."""
    reseller = make_reseller("rita")
    main = make_account(name="Main", owners=[reseller], balance=400, backend="ledgertest")
    subs = [
        make_account(
            name=f"Sub {n}",
            parent=main,
            balance=30,
            backend="ledgertest",
            low_balance_threshold=D("25"),  # crossed and re-armed over and over
        )
        for n in range(4)
    ]
    came_in = D("400") + 4 * D("30")

    def work(i):
        done: Counter = Counter()
        sub = subs[i % len(subs)]
        ref = f"campaign:{i}"
        if i % 10 == 0:
            # Five double clicks of each of these transfers: each applies once.
            row = credits_transfer(
                source=main, target=subs[0], amount=2, user=reseller, idempotency_key="dup"
            )
            done[f"dup:{row.pk}"] += 1
            return done
        try:
            credits_transfer(source=main, target=sub, amount=9, user=reseller)
            done["transferred"] += 9
        except CreditError:
            done["refused"] += 1
        try:
            credits_reserve(account=sub, amount=6, reference=ref)
            # What batch_record does: both in one transaction on one row.
            with transaction.atomic():
                credits_charge(account=sub, amount=4, reference=ref, idempotency_key=f"c:{i}")
                credits_release(account=sub, amount=2, reference=ref)
                credits_charge(account=sub, amount=4, reference=ref, idempotency_key=f"c:{i}")
            done["charged"] += 4
        except CreditError:
            done["refused"] += 1
        credits_top_up(account=main, amount=1, idempotency_key=f"pay:{i % 7}")
        return done

    results, errors = run_threads(work)
    assert errors == []
    totals = sum(results, Counter())
    dup_rows = [k for k in totals if k.startswith("dup:")]
    assert len(dup_rows) == 1
    came_in += 7  # seven distinct payment keys

    accounts = [ProviderAccount.objects.get(pk=a.pk) for a in (main, *subs)]
    for account in accounts:
        assert (account.balance, account.reserved) == _sum_ledger(account.pk), account.name
        assert account.reserved == 0
    assert ledger_mismatches() == []
    charged = -sum(r.amount for r in CreditTransaction.objects.filter(kind=K.CHARGE))
    assert charged == totals["charged"]
    assert sum(a.balance for a in accounts) == came_in - charged
    out = -sum(r.amount for r in CreditTransaction.objects.filter(kind=K.TRANSFER_OUT))
    inn = sum(r.amount for r in CreditTransaction.objects.filter(kind=K.TRANSFER_IN))
    assert out == inn == totals["transferred"] + 2
