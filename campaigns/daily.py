"""Daily activity per campaign (:class:`~campaigns.models.CampaignDay`).

A message counts on the day something happened to it: ``sent`` on the day it
was handed to the provider, ``delivered`` on the day its receipt said so,
``failed`` on the day it failed (refused, undelivered, expired). So "today"
on the dashboard means "what happened today", like a provider's console.

:func:`daily_record` is called by ``campaigns.counters`` with the same status
moves as the campaign counters, inside the same transaction, so the two can
never disagree about a committed change. It writes one upsert per campaign
per call: the campaign row is already locked by the counter update, so the
daily row adds no new lock order.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from django.db import connection
from django.db.models import Q
from django.utils import timezone

from campaigns.models import CampaignDay, Message

S = Message.Status

#: Not yet with the provider (or not known to be): leaving one of these for
#: ``HANDED_OVER`` is the moment a message was sent.
BEFORE_PROVIDER = frozenset({"", S.QUEUED, S.SUBMITTING, S.UNKNOWN})
HANDED_OVER = frozenset({S.SENT, S.DELIVERED, S.UNDELIVERED, S.EXPIRED})
FAILED = frozenset({S.UNDELIVERED, S.EXPIRED, S.REJECTED, S.FAILED})


def daily_deltas(moves: Mapping[tuple[str, str], int]) -> tuple[int, int, int]:
    """``(sent, delivered, failed)`` that status moves ``{(old, new): n}`` add."""
    sent = delivered = failed = 0
    for (old, new), n in moves.items():
        if n <= 0 or old == new:
            continue
        if old in BEFORE_PROVIDER and new in HANDED_OVER:
            sent += n
        if new == S.DELIVERED:
            delivered += n
        if new in FAILED and old not in FAILED:
            failed += n
    return sent, delivered, failed


def daily_record(
    *, campaign_id: int, moves: Mapping[tuple[str, str], int], day: date | None = None
) -> None:
    """Add a campaign's status moves to its row for ``day`` (default: today in
    the site's time zone). Must run in the transaction that moved the messages."""
    sent, delivered, failed = daily_deltas(moves)
    if not (sent or delivered or failed):
        return
    day = day or timezone.localdate()
    table = connection.ops.quote_name(CampaignDay._meta.db_table)
    # One statement on both databases (SQLite >= 3.24 and PostgreSQL): add to
    # the row, creating it on the day's first move.
    sql = (
        f"INSERT INTO {table} (campaign_id, day, sent, delivered, failed) "
        "VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT (campaign_id, day) DO UPDATE SET "
        f"sent = {table}.sent + excluded.sent, "
        f"delivered = {table}.delivered + excluded.delivered, "
        f"failed = {table}.failed + excluded.failed"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [campaign_id, day, sent, delivered, failed])


def daily_rebuild() -> int:
    """Recompute every row from the messages (for data that predates the
    table, or a repair). Approximate by nature: a message's receipt is counted
    on the day it was sent, because older receipts left no date. Returns the
    number of rows written."""
    from django.db.models import Count
    from django.db.models.functions import TruncDate

    rows: dict[tuple[int, date], CampaignDay] = {}
    handed = Message.objects.filter(sent_at__isnull=False)
    for values in (
        handed.annotate(day=TruncDate("sent_at"))
        .values("campaign_id", "day", "status")
        .annotate(n=Count("id"))
        .order_by()
    ):
        key = (values["campaign_id"], values["day"])
        row = rows.setdefault(key, CampaignDay(campaign_id=key[0], day=key[1]))
        row.sent += values["n"] if values["status"] in HANDED_OVER else 0
        row.delivered += values["n"] if values["status"] == S.DELIVERED else 0
        row.failed += values["n"] if values["status"] in FAILED else 0
    never_sent = Message.objects.filter(
        Q(sent_at__isnull=True) & Q(status__in=FAILED) & Q(status_at__isnull=False)
    )
    for values in (
        never_sent.annotate(day=TruncDate("status_at"))
        .values("campaign_id", "day")
        .annotate(n=Count("id"))
        .order_by()
    ):
        key = (values["campaign_id"], values["day"])
        row = rows.setdefault(key, CampaignDay(campaign_id=key[0], day=key[1]))
        row.failed += values["n"]
    CampaignDay.objects.all().delete()
    CampaignDay.objects.bulk_create(rows.values(), batch_size=1000)
    return len(rows)
