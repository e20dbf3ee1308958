"""PostgreSQL: the plans of applying delivery reports while statistics are
stale.

The engine analyzes the messages after a large plan, when every message is
queued; the reports of that campaign then arrive before autovacuum has
looked again. Every message a report is about must still be found by
primary key, never by walking everything in flight.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import CharField, Value
from django.db.models.functions import Cast, Concat
from django.test.utils import CaptureQueriesContext

from campaigns.models import Campaign, Message
from campaigns.reports import statuses_apply
from providers.backends.base import DeliveryStatus, StatusUpdate

pytestmark = pytest.mark.django_db

MS = Message.Status
N = 20_000
PRIMARY_KEY = f"{Message._meta.db_table}_pkey"


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's planner and statistics")


def scans(plan: dict) -> list[tuple[str, str]]:
    """(node type, index name) of every node of ``plan`` that reads the messages."""
    found = []
    if plan.get("Relation Name") == Message._meta.db_table and plan["Node Type"] != "ModifyTable":
        found.append((plan["Node Type"], plan.get("Index Name", "")))
    for child in plan.get("Plans", []):
        found += scans(child)
    return found


def test_reports_update_their_messages_by_primary_key_with_statistics_from_before_the_send(
    make_account,
):
    account = make_account(balance=Decimal("100000"), backend="simulator")
    campaign = Campaign.objects.create(name="Big", account=account, body="Hi", status="sending")
    Message.objects.bulk_create(
        Message(campaign=campaign, phone=f"+447911{i:06d}", body="Hi", credits=Decimal("1"))
        for i in range(N)
    )
    with connection.cursor() as cursor:
        # As after the engine's plan: every message queued.
        cursor.execute(f"ANALYZE {Message._meta.db_table}")
    # Then sent, each with its provider id (statistics not refreshed).
    Message.objects.filter(campaign=campaign).update(
        status=MS.SENT,
        sent_at=datetime(2026, 1, 1, tzinfo=UTC),
        provider_ref=Concat(Value("ref-"), Cast("id", CharField())),
    )
    Campaign.objects.filter(pk=campaign.pk).update(sent_count=N, recipients_total=N)
    ids = list(
        Message.objects.filter(campaign=campaign).order_by("pk").values_list("pk", flat=True)
    )

    reported = ids[N // 4 : N // 4 + 2000]  # one call's worth of a big campaign
    with CaptureQueriesContext(connection) as queries:
        result = statuses_apply(
            account=account,
            updates=[
                StatusUpdate(status=DeliveryStatus.DELIVERED, provider_ref=f"ref-{pk}")
                for pk in reported
            ],
        )
    assert result["applied"] == len(reported)
    assert Message.objects.filter(campaign=campaign, status=MS.DELIVERED).count() == len(reported)

    writes = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith(f'UPDATE "{Message._meta.db_table}"')
    ]
    assert writes
    with connection.cursor() as cursor:
        for sql in writes:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
            explained = cursor.fetchone()[0]
            if isinstance(explained, str):
                explained = json.loads(explained)
            assert scans(explained[0]["Plan"]) == [("Index Scan", PRIMARY_KEY)], sql[:200]
