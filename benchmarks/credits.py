"""Benchmark: credit movements under contention on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python benchmarks/credits.py [--threads 50] [--ops 20]

Creates a throw-away database on the server ``DATABASE_URL`` names
(``<name>_credits_bench_<pid>``, through its ``postgres`` database), migrates
it, and drops it at the end. One
reseller account and 5 sub-accounts; each of ``--threads`` threads runs
``--ops`` operations in turn: a transfer from the reseller to a sub-account,
a reserve then charge+release in ONE transaction on the sub-account (what
the engine's batch does) with a low-balance threshold crossed on the way,
and a top-up with a key shared by several threads (duplicates).

Prints operations per second for the threads, the same work run serially
by one thread (the physical limit on this machine: the same statements with
no waiting on one another), the retries after lock conflicts, the refusals
(clear ``CreditError`` only) and checks the books (sum of ledger = balance,
credits conserved).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup_django(url: str) -> str:
    import psycopg

    base, _, name = url.rpartition("/")
    bench = f"{name or 'postgres'}_credits_bench_{os.getpid()}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{bench}"')
    os.environ["DATABASE_URL"] = f"{base}/{bench}"
    os.environ.pop("REDIS_URL", None)
    from benchmarks.limits import production_settings

    production_settings()
    from django.conf import settings

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    settings.LOGGING_CONFIG = None
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    return bench


def drop(url: str, bench: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    with psycopg.connect(f"{url.rpartition('/')[0]}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{bench}" WITH (FORCE)')


def run(threads: int, ops: int, label: str) -> tuple[float, Counter]:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connections, transaction

    from providers.locking import retry_stats
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

    # Credits only in our ledger: a provider top-up (even the simulator's)
    # would add its own cost to the figures.
    _install_ledger_only_backend()
    settings.SMS_BACKENDS = {**settings.SMS_BACKENDS, "bench-ledger": f"{__name__}.LedgerOnly"}
    user = get_user_model().objects.create_superuser(f"bench-{label}", password="x")
    main = ProviderAccount.objects.create(name=f"{label} main", backend="bench-ledger")
    subs = [
        ProviderAccount.objects.create(
            name=f"{label} sub {n}",
            parent=main,
            backend="bench-ledger",
            low_balance_threshold=Decimal("40"),
        )
        for n in range(5)
    ]
    credits_top_up(account=main, amount=threads * ops * 10)
    for s in subs:
        credits_top_up(account=s, amount=100)
    retry_stats.reset()
    barrier = threading.Barrier(threads)
    counts: Counter = Counter()
    lock = threading.Lock()

    def work(i: int) -> None:
        done: Counter = Counter()
        try:
            barrier.wait()
            for n in range(ops):
                sub = subs[(i + n) % len(subs)]
                ref = f"campaign:{label}:{i}:{n}"
                kind = n % 3
                try:
                    if kind == 0:
                        credits_transfer(source=main, target=sub, amount=3, user=user)
                    elif kind == 1:
                        credits_reserve(account=sub, amount=4, reference=ref)
                        with transaction.atomic():
                            credits_charge(account=sub, amount=3, reference=ref)
                            credits_release(account=sub, amount=1, reference=ref)
                    else:
                        credits_top_up(account=main, amount=1, idempotency_key=f"{label}:{n}")
                    done["ok"] += 1
                except CreditError as exc:
                    done[f"refused:{exc.code}"] += 1
        except Exception as exc:  # counted: the benchmark must show none
            done[f"ERROR {type(exc).__name__}"] += 1
        finally:
            connections.close_all()
            with lock:
                counts.update(done)

    started = time.perf_counter()
    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    counts["retried"] = retry_stats.retried
    counts["gave_up"] = retry_stats.gave_up
    accounts = ProviderAccount.objects.filter(pk__in=[main.pk, *(s.pk for s in subs)])
    for a in accounts:
        rows = CreditTransaction.objects.filter(account=a)
        assert a.balance == sum((r.amount for r in rows), Decimal(0)), a.name
    assert not ledger_mismatches(), "ledger mismatch"
    return elapsed, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=50)
    parser.add_argument("--ops", type=int, default=20, help="operations per thread")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        sys.exit("Set DATABASE_URL=postgres://... (a server this may create a database on).")
    bench = setup_django(url)
    try:
        total = args.threads * args.ops
        serial, _ = run(1, total, "serial")
        elapsed, counts = run(args.threads, args.ops, "threads")
        print(f"credits on PostgreSQL: {total} operations each run")
        print(f"  1 thread (limit):  {total / serial:8.0f} ops/s  ({serial:.2f} s)")
        print(f"  {args.threads} threads:        {total / elapsed:8.0f} ops/s  ({elapsed:.2f} s)")
        print(f"  retries after lock conflicts: {counts.pop('retried')}")
        print(f"  gave up (busy, clear error):  {counts.pop('gave_up')}")
        print("  outcomes:", dict(sorted(counts.items())))
        errors = {k: v for k, v in counts.items() if k.startswith("ERROR")}
        print("  books balance; errors other than clear refusals:", errors or "none")
    finally:
        drop(url, bench)


def _install_ledger_only_backend() -> None:
    """A backend with no provider side (credits only in our ledger), so the
    figures are the ledger's, not a provider's. Defined once Django is set up
    (it needs the base class); settings name it as ``<this module>.LedgerOnly``."""
    from providers.backends.base import SmsBackend

    class LedgerOnly(SmsBackend):
        name = "bench-ledger"
        capabilities = frozenset()

    globals()["LedgerOnly"] = LedgerOnly


if __name__ == "__main__":
    main()
