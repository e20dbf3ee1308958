"""Benchmark: the Messages and Replies admin lists at a million rows.

    .venv/bin/python benchmarks/admin.py                   # SQLite, 1,000,000 messages
    .venv/bin/python benchmarks/admin.py --messages 100000
    .venv/bin/python benchmarks/admin.py --pg postgres://postgres@127.0.0.1:5432/

SQLite runs on a fresh database in a temporary directory; --pg creates a
database ``smsoffice_bench_admin`` on that server and drops it afterwards.

Builds the messages in SQL (one big campaign of a tenth of them, the rest
in campaigns of 5,000) and a tenth as many replies, then requests each page
--runs times through Django's test client as a logged-in superuser (the
whole request: middleware, session, queries, templates) and prints the
median and p95. Next to it, the physical limit of the same work in the
same run: the very SQL statements that request ran (captured once),
executed again straight on the database cursor, p95 as well. Target:
every page < 200 ms p95.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_DB = "smsoffice_bench_admin"
STAMP = "2026-01-01 00:00:00"


def _server(pg_url: str) -> str:
    base = pg_url.rstrip("/")
    return base.rsplit("/", 1)[0] if base.count("/") > 2 else base


def setup_django(pg_url: str | None, tmp: Path) -> None:
    if pg_url:
        import psycopg

        with psycopg.connect(f"{_server(pg_url)}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB}")
            conn.execute(f"CREATE DATABASE {BENCH_DB}")
        os.environ["DATABASE_URL"] = f"{_server(pg_url)}/{BENCH_DB}"
    else:
        os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'bench.sqlite3'}"
    os.environ.pop("REDIS_URL", None)
    os.environ["LOG_LEVEL"] = "WARNING"
    from benchmarks.limits import production_settings

    production_settings()
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    call_command("migrate", verbosity=0, interactive=False)
    call_command("createcachetable", verbosity=0)


def drop_pg(pg_url: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    with psycopg.connect(f"{_server(pg_url)}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB}")


def build(messages: int) -> dict:
    """Campaigns, messages and replies, inserted by the database itself."""
    from django.db import connection, transaction

    from campaigns.models import Campaign
    from providers.models import ProviderAccount

    account = ProviderAccount.objects.create(name="Bench", backend="simulator")
    big_size = messages // 10
    rest = messages - big_size
    small_size = 5_000
    campaigns = [Campaign(name="Big campaign", account=account, body="Hi", status="completed")]
    campaigns += [
        Campaign(name=f"Campaign {n}", account=account, body="Hi", status="completed")
        for n in range(max(1, -(-rest // small_size)))
    ]
    campaigns = Campaign.objects.bulk_create(campaigns)
    first_id = min(c.pk for c in campaigns)
    big_id = campaigns[0].pk
    pg = connection.vendor == "postgresql"
    # Message i: the big campaign for i < big_size, then 5,000 per campaign.
    campaign_of = (
        f"CASE WHEN i < {big_size} THEN {big_id} "
        f"ELSE {first_id + 1} + (i - {big_size}) / {small_size} END"
    )
    digits = "lpad(i::text, 8, '0')" if pg else "printf('%08d', i)"
    status = (
        "(ARRAY['delivered','delivered','delivered','sent','undelivered','failed'])[i % 6 + 1]"
        if pg
        else "CASE i % 6 WHEN 3 THEN 'sent' WHEN 4 THEN 'undelivered' WHEN 5 THEN 'failed' "
        "ELSE 'delivered' END"
    )
    source = (
        f"FROM generate_series(0, {messages - 1}) AS i"
        if pg
        else "FROM (WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n "
        f"WHERE i < {messages - 1}) SELECT i FROM n)"
    )
    stamp = "'2026-01-01 00:00:00+00'" if pg else f"'{STAMP}'"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO campaigns_message (campaign_id, phone, body, encoding, segments, credits, "
            "status, status_reason, attempts, time_zone, provider_ref, provider_batch_ref, "
            "raw_status, raw_error, error_code, report_unmapped, created_at, sent_at, status_at) "
            f"SELECT {campaign_of}, '+614' || {digits}, 'Hi there, sale on now', 'GSM-7', 1, 1, "
            f"{status}, '', 0, 'Australia/Sydney', 'ref-' || i, 'batch-' || (i / 500), "
            f"'DELIVRD', '', '', FALSE, {stamp}, {stamp}, {stamp} {source}"
        )
        replies = messages // 10
        source = source.replace(str(messages - 1), str(replies - 1))
        cursor.execute(
            "INSERT INTO campaigns_inboundmessage (account_id, phone, to_number, body, "
            "received_at, provider_ref, campaign_id, action, raw, created_at) "
            f"SELECT {account.pk}, '+614' || {digits}, '', 'Thanks', {stamp}, 'in-' || i, "
            f"{campaign_of}, CASE WHEN i % 50 = 0 THEN 'opt_out' ELSE '' END, '{{}}', {stamp} "
            f"{source}"
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return {"big": big_id, "small": campaigns[-1].pk, "messages": messages}


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def measure(client, url: str, runs: int) -> tuple[float, float, float, int]:
    """(median ms, p95 ms, db-only p95 ms, queries) of GET url."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url)  # warm caches (templates, statistics)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    with CaptureQueriesContext(connection) as captured:
        client.get(url)
    statements = [q["sql"] for q in captured.captured_queries]
    db_times = []
    for _ in range(runs):
        start = time.perf_counter()
        with connection.cursor() as cursor:
            for sql in statements:
                cursor.execute(sql.replace("%", "%%"))
                if cursor.description:
                    cursor.fetchall()
        db_times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), p95(times), p95(db_times), len(statements)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--pg", help="PostgreSQL server URL (a bench database is created)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name:
        setup_django(args.pg, Path(tmp_name))
        try:
            from django.contrib.auth import get_user_model
            from django.db import connection
            from django.test import Client

            started = time.perf_counter()
            ids = build(args.messages)
            built = time.perf_counter() - started
            user = get_user_model().objects.create_superuser("bench", "b@example.com", "pw")
            client = Client()
            client.force_login(user)
            big, small = ids["big"], ids["small"]
            last_page = 200  # 10,000 reachable rows at 50 a page
            pages = [
                ("Messages, first page", "/admin/campaigns/message/"),
                ("Messages, deepest page", f"/admin/campaigns/message/?p={last_page}"),
                ("phone search (national format)", "/admin/campaigns/message/?q=0412+345+678"),
                ("provider reference search", "/admin/campaigns/message/?q=ref-777777"),
                ("big campaign", f"/admin/campaigns/message/?campaign__id__exact={big}"),
                (
                    "big campaign, deepest page",
                    f"/admin/campaigns/message/?campaign__id__exact={big}&p={last_page}",
                ),
                (
                    "big campaign, failed",
                    f"/admin/campaigns/message/?campaign__id__exact={big}&status__exact=failed",
                ),
                ("small campaign", f"/admin/campaigns/message/?campaign__id__exact={small}"),
                ("Replies, first page", "/admin/campaigns/inboundmessage/"),
                ("Replies, deepest page", f"/admin/campaigns/inboundmessage/?p={last_page}"),
                ("Replies, phone search", "/admin/campaigns/inboundmessage/?q=0400+001+234"),
            ]
            print(
                f"database: {connection.vendor}; {args.messages:,} messages, "
                f"{args.messages // 10:,} replies (built in {built:.0f} s); {args.runs} runs each"
            )
            header = (
                f"{'page':<34} | {'median':>8} {'p95':>8} | {'limit p95':>9} | "
                f"{'p95/limit':>9} | {'queries':>7}"
            )
            print(header)
            print("-" * len(header))
            for label, url in pages:
                median, high, limit, queries = measure(client, url, args.runs)
                print(
                    f"{label:<34} | {median:>6.1f}ms {high:>6.1f}ms | {limit:>7.1f}ms | "
                    f"{high / limit if limit else 0:>8.1f}x | {queries:>7}"
                )
        finally:
            if args.pg:
                drop_pg(args.pg)


if __name__ == "__main__":
    main()
