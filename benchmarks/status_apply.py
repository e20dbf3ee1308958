"""Benchmark: ``campaigns.reports.statuses_apply`` with a share of refunds.

    .venv/bin/python benchmarks/status_apply.py                     # 100,000, 5% refunded
    .venv/bin/python benchmarks/status_apply.py --n 20000 --refund 0.2
    .venv/bin/python benchmarks/status_apply.py --db postgres       # a fresh PostgreSQL database

On a fresh SQLite database in a temporary directory (never the project's):
one simulator account (it ``refunds_failed``), one campaign of N messages
already ``sent``, then one report per message in calls of ``--per-call``
(default 5,000): ``--refund`` of them undelivered (refunded), the rest
delivered. Prints updates per second and checks the books: the balance
equals the sum of the ledger and grew by exactly the refunded credits.

Printed next to the physical limit of the same writes on the same database
in the same run (one set-based UPDATE per call's ids; benchmarks/limits.py).

Target (issue 16): status apply >= 20,000 updates/s on SQLite and PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.limits import (  # noqa: E402
    SCRATCH,
    limit_plan,
    limit_status_apply,
    scratch_rows_like,
    setup_database,
)


def setup_django() -> None:
    os.environ.pop("REDIS_URL", None)
    from benchmarks.limits import production_settings

    production_settings()
    from django.conf import settings

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    settings.LOGGING_CONFIG = None
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="messages")
    parser.add_argument("--refund", type=float, default=0.05, help="share refunded")
    parser.add_argument("--per-call", type=int, default=5_000, help="reports per call")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="smsoffice-bench-") as tmp:
        drop = setup_database(args.db, Path(tmp))
        try:
            run(args)
        finally:
            drop()


def run(args) -> None:
    if True:  # one indentation level, as before the split into run()
        setup_django()
        from django.db import connection
        from django.db.models import Sum

        from campaigns.counters import counters_recount
        from campaigns.models import Campaign, Message
        from campaigns.reports import statuses_apply
        from providers.backends.base import DeliveryStatus, StatusUpdate
        from providers.models import CreditTransaction, ProviderAccount
        from providers.services import credits_top_up

        account = ProviderAccount.objects.create(name="Bench", backend="simulator")
        credits_top_up(account=account, amount=Decimal(args.n))
        campaign = Campaign.objects.create(
            name="Bench", account=account, body="Hi", status="sending"
        )
        every = round(1 / args.refund) if args.refund else 0
        for start in range(0, args.n, 10_000):
            Message.objects.bulk_create(
                Message(
                    campaign=campaign,
                    phone=f"+614{i:08d}",
                    body="Hi",
                    status="sent",
                    credits=Decimal("1.00"),
                    provider_ref=f"p{i}",
                )
                for i in range(start, min(args.n, start + 10_000))
            )
        counters_recount(campaign_id=campaign.pk)
        if connection.vendor == "postgresql":
            # Reports come minutes to days after the send: by then autovacuum
            # has statistics of these rows (and the engine analyzes after a
            # large plan); without them PostgreSQL may scan the table per lookup.
            with connection.cursor() as cursor:
                cursor.execute(f"ANALYZE {Message._meta.db_table}")
        account.refresh_from_db()
        before = account.balance

        rows = scratch_rows_like(campaign.pk)
        limit_plan(rows)  # the scratch table, as the messages are now (sent)
        ids = [row[0] for row in rows]
        del rows
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {SCRATCH} SET status = 'sent'")
        limit = limit_status_apply(ids, args.per_call)

        refs = list(
            Message.objects.filter(campaign=campaign).values_list("provider_ref", flat=True)
        )
        updates = [
            StatusUpdate(
                status=(
                    DeliveryStatus.UNDELIVERED
                    if every and i % every == 0
                    else DeliveryStatus.DELIVERED
                ),
                provider_ref=ref,
            )
            for i, ref in enumerate(refs)
        ]
        applied = refunded = 0
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(updates), args.per_call):
            result = statuses_apply(account=account, updates=updates[i : i + args.per_call])
            applied += result["applied"]
            refunded += result["refunded"]
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu

        account.refresh_from_db()
        ledger = CreditTransaction.objects.filter(account=account).aggregate(s=Sum("amount"))["s"]
        refund_rows = CreditTransaction.objects.filter(account=account, kind="refund").count()
        print(
            f"{args.db}, {os.cpu_count()} CPUs: {applied:,} updates ({refunded:,} refunded) in "
            f"{seconds:.2f} s = {applied / seconds:,.0f} updates/s ({applied / cpu:,.0f}/s of "
            f"CPU time: a shared machine's figure); {refund_rows} refund row(s); physical "
            f"limit {len(ids) / limit:,.0f}/s ({applied / seconds / (len(ids) / limit):.0%} of it)"
        )
        ok = account.balance == Decimal(ledger) and account.balance - before == refunded
        print(f"books: balance {account.balance}, ledger {ledger}, {'OK' if ok else 'MISMATCH'}")


if __name__ == "__main__":
    main()
