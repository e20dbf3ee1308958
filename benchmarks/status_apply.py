"""Benchmark: ``campaigns.reports.statuses_apply`` with a share of refunds.

    .venv/bin/python benchmarks/status_apply.py                     # 100,000, 5% refunded
    .venv/bin/python benchmarks/status_apply.py --n 20000 --refund 0.2

On a fresh SQLite database in a temporary directory (never the project's):
one simulator account (it ``refunds_failed``), one campaign of N messages
already ``sent``, then one report per message in calls of ``--per-call``
(default 5,000): ``--refund`` of them undelivered (refunded), the rest
delivered. Prints updates per second and checks the books: the balance
equals the sum of the ledger and grew by exactly the refunded credits.

Target (issue 6): status apply >= 20,000 updates/s on SQLite.
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


def setup_django(db_path: Path) -> None:
    os.environ["DATABASE_URL"] = f"sqlite:///{db_path}"
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smsoffice.settings_test")
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
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="smsoffice-bench-") as tmp:
        setup_django(Path(tmp) / "bench.sqlite3")
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
        account.refresh_from_db()
        before = account.balance

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
            f"SQLite, {os.cpu_count()} CPUs: {applied:,} updates ({refunded:,} refunded) in "
            f"{seconds:.2f} s = {applied / seconds:,.0f} updates/s ({applied / cpu:,.0f}/s of "
            f"CPU time: a shared machine's figure); {refund_rows} refund row(s)"
        )
        ok = account.balance == Decimal(ledger) and account.balance - before == refunded
        print(f"books: balance {account.balance}, ledger {ledger}, {'OK' if ok else 'MISMATCH'}")


if __name__ == "__main__":
    main()
