"""Benchmark: the admin index dashboard with a million messages.

    .venv/bin/python benchmarks/dashboard.py                  # SQLite, 1M messages, 100k replies
    .venv/bin/python benchmarks/dashboard.py --db postgres     # PostgreSQL at 127.0.0.1
    .venv/bin/python benchmarks/dashboard.py --messages 100000 --replies 10000

On a fresh database (a temporary SQLite file, or a scratch PostgreSQL
database created and dropped here): 10 accounts, 300 campaigns spread over
the last 30 days, ``--messages`` messages (70 % delivered, 20 % failed,
10 % awaiting a receipt), ``--replies`` replies, one ledger charge per 500
messages, and the daily rows rebuilt from the messages
(``campaigns.daily.daily_rebuild``).

Prints, for ``dashboard_figures`` and for the whole admin index page
(``GET /admin/`` through Django's test client, logged in as a superuser),
the median and p95 of 30 runs, next to the physical limit of the same work:
the same aggregate queries sent as raw SQL on the same connection, with no
ORM and no template. Goal (issue 14): the page under 200 ms p95.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
PG_BENCH_DB = "smsoffice_bench_dashboard"


def setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.pop("REDIS_URL", None)
    from benchmarks.limits import production_settings

    production_settings()
    from django.conf import settings

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    settings.LOGGING_CONFIG = None
    settings.ALLOWED_HOSTS = ["*"]
    # No collectstatic here: plain static URLs, as in the tests.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def pg_scratch(create: bool) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_BENCH_DB} WITH (FORCE)")
        if create:
            conn.execute(f"CREATE DATABASE {PG_BENCH_DB}")


def populate(*, messages: int, replies: int) -> None:
    from django.utils import timezone

    from campaigns.daily import daily_rebuild
    from campaigns.models import Campaign, InboundMessage, Message
    from providers.models import CreditTransaction, ProviderAccount

    now = timezone.now()
    accounts = [
        ProviderAccount.objects.create(
            name=f"Account {i}",
            backend="simulator",
            balance=Decimal(messages),
            low_balance_threshold=Decimal("10") if i % 3 else Decimal(messages * 2),
        )
        for i in range(10)
    ]
    campaigns = Campaign.objects.bulk_create(
        Campaign(
            name=f"Campaign {i}",
            account=accounts[i % len(accounts)],
            body="Hi",
            status="completed" if i < 290 else "sending",
            recipients_total=messages // 300,
            started_at=now - timedelta(days=29 - (i % 30)),
        )
        for i in range(300)
    )
    if not campaigns[0].pk:
        campaigns = list(Campaign.objects.order_by("pk"))
    statuses = ["delivered"] * 7 + ["undelivered"] * 2 + ["sent"]
    chunk = 20_000
    for start in range(0, messages, chunk):
        rows = []
        for i in range(start, min(messages, start + chunk)):
            campaign = campaigns[i % len(campaigns)]
            rows.append(
                Message(
                    campaign=campaign,
                    phone=f"+614{i:08d}",
                    body="Hi",
                    status=statuses[i % len(statuses)],
                    credits=Decimal("1.00"),
                    sent_at=campaign.started_at,
                    status_at=campaign.started_at,
                )
            )
        Message.objects.bulk_create(rows, batch_size=5_000)
    for start in range(0, replies, chunk):
        InboundMessage.objects.bulk_create(
            (
                InboundMessage(
                    account=accounts[i % len(accounts)],
                    phone=f"+614{i:08d}",
                    body="Thanks",
                    received_at=now - timedelta(minutes=i % (60 * 24 * 30)),
                )
                for i in range(start, min(replies, start + chunk))
            ),
            batch_size=5_000,
        )
    CreditTransaction.objects.bulk_create(
        CreditTransaction(
            account=accounts[i % len(accounts)],
            kind="charge",
            amount=Decimal("-500"),
            balance_after=Decimal("0"),
            reserved_after=Decimal("0"),
            reserved_change=Decimal("-500"),
        )
        for i in range(max(1, messages // 500))
    )
    daily_rebuild()


def timed(func, runs: int = 30) -> tuple[float, float]:
    """Median and p95 in milliseconds."""
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        func()
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def raw_queries() -> None:
    """The dashboard's aggregates as bare SQL: the floor for the same work."""
    from django.db import connection
    from django.utils import timezone

    today = timezone.localdate()
    since = today - timedelta(days=30)
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM providers_provideraccount")
        ids = [r[0] for r in cursor.fetchall()]
        marks = ",".join(["%s"] * len(ids))
        cursor.execute(
            "SELECT d.day, SUM(d.sent), SUM(d.delivered), SUM(d.failed) "
            "FROM campaigns_campaignday d JOIN campaigns_campaign c ON c.id = d.campaign_id "
            f"WHERE c.account_id IN ({marks}) AND d.day >= %s GROUP BY d.day",
            [*ids, since],
        )
        cursor.fetchall()
        cursor.execute(
            "SELECT SUM(amount) FROM providers_credittransaction "
            f"WHERE account_id IN ({marks}) AND created_at >= %s AND kind IN ('charge', 'refund')",
            [*ids, timezone.now() - timedelta(days=30)],
        )
        cursor.fetchall()
        cursor.execute(
            "SELECT COUNT(*) FROM campaigns_inboundmessage "
            f"WHERE account_id IN ({marks}) AND received_at >= %s",
            [*ids, timezone.now() - timedelta(hours=24)],
        )
        cursor.fetchall()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--replies", type=int, default=100_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="smsoffice-bench-") as tmp:
        if args.db == "postgres":
            pg_scratch(create=True)
            url = f"postgres://postgres@127.0.0.1:5432/{PG_BENCH_DB}"
        else:
            url = f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        try:
            setup_django(url)
            run(args)
        finally:
            if args.db == "postgres":
                from django.db import connections

                connections.close_all()
                pg_scratch(create=False)


def run(args) -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from campaigns.dashboard import dashboard_figures

    t = time.perf_counter()
    populate(messages=args.messages, replies=args.replies)
    print(
        f"{args.db}: {args.messages:,} messages, {args.replies:,} replies "
        f"set up in {time.perf_counter() - t:.0f} s"
    )
    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "x")
    client = Client()
    client.force_login(user)
    assert client.get("/admin/").status_code == 200

    floor = timed(raw_queries)
    figures = timed(lambda: dashboard_figures(user=user))
    page = timed(lambda: client.get("/admin/"))
    print(f"{'':28}{'median':>10}{'p95':>10}{'x floor (p95)':>16}")
    for name, (median, p95) in [
        ("raw SQL of the same work", floor),
        ("dashboard_figures()", figures),
        ("GET /admin/ (whole page)", page),
    ]:
        ratio = p95 / floor[1] if floor[1] else float("nan")
        print(f"{name:28}{median:>8.1f}ms{p95:>8.1f}ms{ratio:>15.1f}x")
    verdict = "meets" if page[1] < 200 else "MISSES"
    print(f"goal: page p95 < 200 ms — {verdict} ({page[1]:.0f} ms)")


if __name__ == "__main__":
    main()
