"""Campaign counters: each message is counted in exactly one bucket, by its
current status, so ``sum(buckets) == recipients_total`` always holds.

Every service that changes message statuses calls :func:`counters_move` (or
:func:`counters_move_many` for several campaigns) in the same transaction, so
pages never need ``COUNT(*)`` over all messages. Updating a counter locks
the campaign row; several campaigns are updated in ascending pk, the order
``providers.locking`` documents, so two callers never wait on each other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from django.db.models import F

from campaigns.daily import daily_record
from campaigns.models import Campaign, Message

S = Message.Status

#: Message status -> Campaign counter field.
BUCKETS: dict[str, str] = {
    S.QUEUED: "queued_count",
    S.SUBMITTING: "queued_count",
    S.SENT: "sent_count",
    S.DELIVERED: "delivered_count",
    S.UNDELIVERED: "failed_count",
    S.EXPIRED: "failed_count",
    S.REJECTED: "failed_count",
    S.FAILED: "failed_count",
    S.SKIPPED: "skipped_count",
    S.CANCELLED: "cancelled_count",
    S.UNKNOWN: "unknown_count",
}

COUNTER_FIELDS = tuple(dict.fromkeys(BUCKETS.values()))


def counters_move(
    *, campaign_id: int, moves: Mapping[tuple[str, str], int] | Iterable[tuple[str, str]]
) -> None:
    """Apply status moves ``{(from_status, to_status): n}`` to a campaign's counters.

    ``from_status`` may be ``""`` for a new message (it only adds). Must run in
    the transaction that changed the messages.
    """
    if not isinstance(moves, Mapping):
        moves = Counter(moves)
    delta: Counter[str] = Counter()
    for (old, new), n in moves.items():
        if not n:
            continue
        if old:
            delta[BUCKETS[old]] -= n
        delta[BUCKETS[new]] += n
    changes = {field: F(field) + n for field, n in delta.items() if n}
    if changes:
        Campaign.objects.filter(pk=campaign_id).update(**changes)
        # After the counter update, which locked the campaign row: the daily
        # row adds no lock of its own to the order providers.locking documents.
        daily_record(campaign_id=campaign_id, moves=moves)


def counters_move_many(*, moves_by_campaign: Mapping[int, Mapping[tuple[str, str], int]]) -> None:
    """:func:`counters_move` for several campaigns, in ascending campaign pk
    (the lock order): two callers touching the same campaigns in different
    orders would otherwise deadlock."""
    for campaign_id in sorted(moves_by_campaign):
        counters_move(campaign_id=campaign_id, moves=moves_by_campaign[campaign_id])


def counters_recount(*, campaign_id: int) -> dict[str, int]:
    """Recompute the counters from the messages (repair/verification); returns them."""
    from django.db.models import Count

    values = dict.fromkeys(COUNTER_FIELDS, 0)
    rows = Message.objects.filter(campaign_id=campaign_id).values("status").annotate(n=Count("id"))
    for row in rows:
        values[BUCKETS[row["status"]]] += row["n"]
    total = sum(values.values())
    Campaign.objects.filter(pk=campaign_id).update(recipients_total=total, **values)
    return {**values, "recipients_total": total}
