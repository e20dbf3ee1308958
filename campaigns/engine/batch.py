"""One batch: claim (queued → submitting), wash against opt-outs, send,
record each message's outcome with its counters and credits.

Money: ``Campaign.credits_reserved`` is the part of the account's
reservation that belongs to the campaign and, once planned, always equals
the credits of its messages that are queued or submitting. Every move out of
those states charges (sent, and unknown: the provider most likely took it)
or releases (anything else) exactly those credits, in the same transaction
as the status change, which is itself conditional on the message still being
``submitting`` under our claim token: a message can only leave
``submitting`` once, so it is charged or released once.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import F, Q

from campaigns.counters import counters_move
from campaigns.engine import clock
from campaigns.engine.common import ZERO, C, S, credit_move, event, message_reference
from campaigns.models import Campaign, Message
from contacts.models import OptOut
from providers.backends.base import (
    FINAL_STATUSES,
    DeliveryStatus,
    ErrorKind,
    OutboundSms,
    ProviderError,
    SendOutcome,
    SendResult,
    StatusUpdate,
    batch_stop_error,
)
from providers.services import CreditError
from smsoffice.lookups import array_literal

logger = logging.getLogger("campaigns.engine")

#: Transient failures of one message before it is failed for good.
MAX_ATTEMPTS = 5
BACKOFF_BASE = 30.0
BACKOFF_MAX = 900.0


def backoff(attempt: int, retry_after: float | None = None) -> float:
    """Seconds before retry number ``attempt`` (1, 2, ...): 30 s doubling to
    15 min, or longer if the provider asked for it."""
    delay = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** max(0, attempt - 1))
    return max(delay, float(retry_after or 0))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happens to one submitting message."""

    status: str  # target Message.Status
    provider_ref: str = ""
    provider_batch_ref: str = ""
    raw_status: str = ""
    error_code: str = ""
    error: str = ""
    reason: str = ""
    retry_at: datetime | None = None
    attempt: bool = False  # counts as a failed attempt
    delivery: str = ""  # a final DeliveryStatus the provider already gave


#: Where credits go when a message leaves ``submitting``. ``unknown`` is
#: charged: the provider most likely took it (a person may decide otherwise,
#: see campaigns.services.messages_resolve_unknown, which refunds).
CHARGED = frozenset({S.SENT, S.UNKNOWN})
RELEASED = frozenset({S.FAILED, S.REJECTED, S.SKIPPED, S.CANCELLED})


@dataclass
class Batch:
    """A claimed batch: rows ``(id, phone, body, credits, attempts)``;
    ``last_id``: the highest id claimed (washed-out rows included)."""

    token: uuid.UUID
    rows: list[tuple[int, str, str, Decimal, int]]
    skipped: int = 0
    last_id: int = 0


@dataclass
class ClaimCursor:
    """Where a dispatch run's claims go on from: the highest id it claimed.

    Why: PostgreSQL with statistics on a table that holds mostly one
    campaign's messages takes the primary key's order for "queued, oldest
    first, LIMIT n" (it expects most rows to be queued), and walks every
    message already sent on each claim: quadratic, 50 ms a claim at 100k.
    ``id > after`` starts that walk where the last claim ended, so either
    index is cheap. Messages queued again behind the cursor (retries, not
    attempted) are found by one claim from the start when the forward pass
    finds nothing (:func:`batch_claim_next`).
    """

    after: int = 0


def batch_claim_next(
    *, campaign: Campaign, size: int, zones: set[str] | None, cursor: ClaimCursor
) -> Batch | None:
    """:func:`batch_claim` going on from ``cursor``, then from the start if
    nothing is left after it; moves the cursor. None: nothing claimable."""
    batch = None
    if cursor.after:
        batch = batch_claim(campaign=campaign, size=size, zones=zones, after=cursor.after)
    if batch is None:
        batch = batch_claim(campaign=campaign, size=size, zones=zones)
    if batch is not None:
        cursor.after = max(cursor.after, batch.last_id)
    return batch


def batch_claim(
    *, campaign: Campaign, size: int, zones: set[str] | None = None, after: int = 0
) -> Batch | None:
    """Claim up to ``size`` queued messages (oldest first, ids above
    ``after``), then wash them.

    The claim is a conditional UPDATE (``status='queued'`` re-checked on every
    row) of ids picked with ``FOR UPDATE SKIP LOCKED`` where the database has
    it, in one transaction, so concurrent claims never share a message.
    ``zones``: only recipients in these time zones (quiet hours). Returns
    None when nothing was claimable.

    Pause means pause: the campaign's status is read under its row lock in
    the claim's own transaction (campaign first, then its messages: the
    documented lock order), so a pause or cancel that committed before is
    always seen and one that comes later waits for the claim to commit.
    Nothing is claimed (None) unless the campaign is ``sending``.
    """
    now = clock.now()
    token = uuid.uuid4()
    candidates = Message.objects.filter(campaign_id=campaign.pk, status=S.QUEUED).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )
    if zones is not None:
        candidates = candidates.filter(time_zone__in=zones)
    if after:
        candidates = candidates.filter(id__gt=after)
    with transaction.atomic():
        # NO KEY: a foreign-key check on the campaign (a new message, an
        # event) does not wait for this lock.
        status = (
            Campaign.objects.select_for_update(no_key=True)
            .filter(pk=campaign.pk)
            .values_list("status", flat=True)
            .first()
        )
        if status != C.SENDING:
            return None
        if connection.features.has_select_for_update_skip_locked:
            candidates = candidates.select_for_update(skip_locked=True)
        # Two statements, not UPDATE ... WHERE id IN (SELECT ... LIMIT n FOR
        # UPDATE SKIP LOCKED): PostgreSQL may run such a subquery more than
        # once, each run skipping the rows the last one locked, and so claim
        # more than n rows. The ids are locked here until the UPDATE commits.
        # The rows themselves, not just their ids: they are locked (FOR
        # UPDATE, or SQLite's IMMEDIATE transaction) until the claim commits,
        # so what is read here is what is claimed, without reading it again.
        rows = list(candidates.order_by("id").values_list(*BATCH_ROW)[:size])
        if not rows:
            return None
        ids = [row[0] for row in rows]
        claimed = Message.objects.filter(id__anyof=frozenset(ids), status=S.QUEUED).update(
            status=S.SUBMITTING, claim_token=token, claimed_at=now, status_reason=""
        )
        if claimed != len(rows):  # pragma: no cover - the rows are locked above
            rows = list(
                Message.objects.filter(claim_token=token, status=S.SUBMITTING)
                .order_by("id")
                .values_list(*BATCH_ROW)
            )
    if not rows:
        return None
    batch = _wash(campaign, token, rows)
    batch.last_id = rows[-1][0]
    return batch


#: What a batch carries per message (the order of :attr:`Batch.rows`' tuples).
BATCH_ROW = ("id", "phone", "body", "credits", "attempts")


def _wash(campaign: Campaign, token: uuid.UUID, rows: list[tuple]) -> Batch:
    """Skip the claimed recipients that opted out since planning."""
    opted = set(
        OptOut.objects.filter(phone__anyof=frozenset(row[1] for row in rows))
        .order_by()
        .values_list("phone", flat=True)
    )
    batch = Batch(token=token, rows=rows)
    if opted:
        outcome = Outcome(status=S.SKIPPED, reason="Opted out before it was sent.")
        moved = batch_record(
            campaign=campaign,
            token=token,
            outcomes={row[0]: outcome for row in rows if row[1] in opted},
        )
        batch.skipped = sum(moved.values())
        batch.rows = [row for row in rows if row[1] not in opted]
    return batch


def batch_send(
    *, campaign: Campaign, batch: Batch, backend
) -> tuple[dict[int, Outcome], ProviderError | None]:
    """Call the provider for ``batch``. Returns the outcome per message id and
    the error that refused the whole call, if any (no database writes here).

    Messages absent from the outcomes stay ``submitting``: their fate is
    unknown and :func:`batches_recover` reconciles them later.
    """
    sender = campaign.effective_sender
    outbound = [
        OutboundSms(reference=message_reference(pk), to=phone, body=body, sender=sender)
        for pk, phone, body, _credits, _attempts in batch.rows
    ]
    try:
        results = backend.send(outbound)
    except ProviderError as exc:
        return _error_outcomes(exc, batch), exc
    except Exception as exc:  # a bug or an unexpected answer: we cannot know what went out
        logger.exception("Campaign %s: send failed unexpectedly; reconciling later.", campaign.pk)
        return {}, ProviderError(
            f"Unexpected error while sending: {type(exc).__name__}: {exc}",
            kind="protocol",
            maybe_processed=True,
        )
    by_ref = {r.reference: r for r in results}
    stop = batch_stop_error(results)
    now = clock.now()
    outcomes: dict[int, Outcome] = {}
    for pk, _phone, _body, _credits, attempts in batch.rows:
        result = by_ref.get(message_reference(pk))
        if result is None:
            continue  # the backend did not say: reconcile later
        outcome = result_outcome(result, attempts=attempts, now=now)
        if outcome is not None:
            outcomes[pk] = outcome
    return outcomes, stop


def result_outcome(result: SendResult, *, attempts: int, now: datetime) -> Outcome | None:
    if result.accepted:
        delivery = result.status if result.status in FINAL_STATUSES else ""
        return Outcome(
            status=S.SENT,
            provider_ref=result.provider_ref,
            provider_batch_ref=result.provider_batch_ref,
            raw_status=result.raw_status,
            delivery=delivery,
        )
    if getattr(result, "outcome_unknown", False):
        return None  # may have gone out: reconcile, never re-send
    if result.outcome == SendOutcome.NOT_ATTEMPTED:
        if result.retry_after is not None:
            return Outcome(
                status=S.QUEUED,
                reason="Not attempted (provider asked to wait); requeued.",
                retry_at=now + timedelta(seconds=result.retry_after),
            )
        return Outcome(status=S.QUEUED, reason="Not attempted by the provider call; requeued.")
    if result.outcome == SendOutcome.UNKNOWN:
        return None  # may have gone out: reconcile, never re-send
    if result.error_kind == ErrorKind.OPTED_OUT:
        # The provider washed the destination against its own opt-out list:
        # nothing was sent, so nothing is charged; the opt-out itself reaches
        # the local list through the provider opt-out sync.
        return Outcome(
            status=S.SKIPPED,
            raw_status=result.raw_status,
            error_code=result.error_code,
            error=result.error_message or "opted out at the provider",
            reason="Skipped: the number is on the provider's opt-out list.",
        )
    error = result.error_message or result.raw_status or "refused by the provider"
    if result.permanent:
        status = S.REJECTED if result.status == DeliveryStatus.REJECTED else S.FAILED
        return Outcome(
            status=status,
            raw_status=result.raw_status,
            error_code=result.error_code,
            error=error,
            reason=f"Refused by the provider: {error}"[:255],
        )
    return _retry_or_fail(attempts, error=error, code=result.error_code, now=now)


def _retry_or_fail(
    attempts: int, *, error: str, code: str, now: datetime, retry_after: float | None = None
) -> Outcome:
    attempt = attempts + 1
    if attempt >= MAX_ATTEMPTS:
        return Outcome(
            status=S.FAILED,
            error_code=code,
            error=error,
            reason=f"Gave up after {attempt} attempts: {error}"[:255],
            attempt=True,
        )
    return Outcome(
        status=S.QUEUED,
        error_code=code,
        error=error,
        reason=f"Attempt {attempt} failed, retrying: {error}"[:255],
        retry_at=now + timedelta(seconds=backoff(attempt, retry_after)),
        attempt=True,
    )


def _error_outcomes(exc: ProviderError, batch: Batch) -> dict[int, Outcome]:
    """Outcomes of a batch whose whole call was refused with ``exc``."""
    now = clock.now()
    if getattr(exc, "maybe_processed", False):
        return {}  # stays submitting until reconciled with the provider
    if exc.kind in ("auth", "credit"):
        # Nothing went out; the campaign pauses (see dispatch_step).
        outcome = Outcome(status=S.QUEUED, reason=f"Not sent: {exc}"[:255])
        return {row[0]: outcome for row in batch.rows}
    if exc.kind == ErrorKind.RATE_LIMIT:
        # Refused before the provider looked at the messages (or held back by
        # our pacer during a Retry-After): not an attempt of theirs.
        wait = exc.retry_after if exc.retry_after is not None else BACKOFF_BASE
        outcome = Outcome(
            status=S.QUEUED,
            reason=f"Not attempted: rate limited by the provider; requeued. ({exc})"[:255],
            retry_at=now + timedelta(seconds=wait),
        )
        return {row[0]: outcome for row in batch.rows}
    if exc.kind == ErrorKind.DEFERRED:
        # Our pacer held the call back (no slot in time, the run's deadline,
        # a pause): it never reached the provider.
        retry_at = now + timedelta(seconds=exc.retry_after) if exc.retry_after else None
        outcome = Outcome(status=S.QUEUED, reason=f"Not attempted: {exc}"[:255], retry_at=retry_at)
        return {row[0]: outcome for row in batch.rows}
    if exc.permanent:
        outcome = Outcome(
            status=S.FAILED,
            error_code=exc.code,
            error=str(exc),
            reason=f"Refused by the provider: {exc}"[:255],
        )
        return {row[0]: outcome for row in batch.rows}
    return {
        row[0]: _retry_or_fail(
            row[4], error=str(exc), code=exc.code or exc.kind, now=now, retry_after=exc.retry_after
        )
        for row in batch.rows
    }


#: What a message that would go back to the queue becomes when its
#: campaign has ended meanwhile.
_ENDED_REQUEUE = {
    C.CANCELLED: Outcome(status=S.CANCELLED, reason="Campaign cancelled."),
    C.FAILED: Outcome(status=S.FAILED, reason="Not sent: the campaign failed."),
}


def batch_record(
    *, campaign: Campaign, token: uuid.UUID, outcomes: Mapping[int, Outcome]
) -> Counter[str]:
    """Apply ``outcomes`` to the messages still ``submitting`` under ``token``,
    with counters and credits, in one transaction. Returns the moves made
    (target status → count). Messages that already left ``submitting`` are
    ignored, so recording twice changes nothing."""
    if not outcomes:
        return Counter()
    outcomes = dict(outcomes)
    now = clock.now()
    with transaction.atomic():
        # The campaign row first (as cancel does), so a cancel either
        # happened before, and is seen here, or waits for this to commit.
        status = (
            Campaign.objects.select_for_update()
            .filter(pk=campaign.pk)
            .values_list("status", flat=True)[0]
        )
        credits = dict(
            Message.objects.select_for_update()
            .filter(id__anyof=frozenset(outcomes), claim_token=token, status=S.SUBMITTING)
            .values_list("id", "credits")
        )
        if not credits:
            return Counter()
        ended = _ENDED_REQUEUE.get(status)
        groups: dict[tuple, list[int]] = defaultdict(list)
        for pk in credits:
            o = outcomes[pk]
            if o.status == S.QUEUED and ended is not None:
                # Nothing left to send it: the campaign was cancelled or failed
                # while this batch was out.
                o = outcomes[pk] = ended
            groups[
                (
                    o.status,
                    o.provider_batch_ref,
                    o.raw_status,
                    o.error_code,
                    o.error,
                    o.reason,
                    o.retry_at,
                    o.attempt,
                )
            ].append(pk)
        moved: Counter[str] = Counter()
        for (status, batch_ref, raw, code, error, reason, retry_at, attempt), ids in groups.items():
            # The claim token only finds a batch while it is out: cleared as
            # each message leaves ``submitting``, so the token's (partial)
            # index holds in-flight rows only and later writes skip it.
            fields: dict = {"status": status, "status_at": now, "claim_token": None}
            if status == S.SENT:
                # The reason describes the message as it is now: whatever an
                # earlier attempt went through is over.
                fields.update(
                    sent_at=now,
                    provider_batch_ref=batch_ref[:100],
                    raw_status=raw[:100],
                    status_reason="",
                    error_code="",
                    raw_error="",
                )
            else:
                fields.update(status_reason=reason, error_code=code[:50], raw_error=error)
                if raw:
                    fields["raw_status"] = raw[:100]
            if status == S.QUEUED:
                fields.update(claimed_at=None, next_attempt_at=retry_at)
            if attempt:
                fields["attempts"] = F("attempts") + 1
            if status == S.SENT:
                _update_with_refs(fields, {pk: outcomes[pk].provider_ref[:100] for pk in ids})
            else:
                Message.objects.filter(id__anyof=frozenset(ids)).update(**fields)
            moved[status] += len(ids)
        counters_move(
            campaign_id=campaign.pk,
            moves={(S.SUBMITTING, status): n for status, n in moved.items()},
        )
        charge = sum((c for pk, c in credits.items() if outcomes[pk].status in CHARGED), ZERO)
        release = sum((c for pk, c in credits.items() if outcomes[pk].status in RELEASED), ZERO)
        first = min(credits)
        update: dict = {}
        if charge or release:
            update["credits_reserved"] = F("credits_reserved") - charge - release
        if charge:
            update["credits_charged"] = F("credits_charged") + charge
        if moved[S.SENT]:
            update["consecutive_failures"] = 0
        if update:
            Campaign.objects.filter(pk=campaign.pk).update(**update)
        try:
            with transaction.atomic():
                credit_move(
                    "charge", campaign=campaign, amount=charge, key=f"charge:{token}:{first}"
                )
                credit_move(
                    "release", campaign=campaign, amount=release, key=f"release:{token}:{first}"
                )
        except CreditError as exc:
            # Cannot happen while the reservation invariant holds; the message
            # statuses are the truth and are kept, the ledger gap is shouted.
            logger.error("Campaign %s: credit movement failed: %s", campaign.pk, exc)
            event(campaign.pk, "credit_error", detail=" ".join(exc.messages))
        finals = [
            StatusUpdate(
                status=DeliveryStatus(outcomes[pk].delivery),
                provider_ref=outcomes[pk].provider_ref,
                reference=message_reference(pk),
                raw_status=outcomes[pk].raw_status,
            )
            for pk in credits
            if outcomes[pk].status == S.SENT and outcomes[pk].delivery
        ]
        if finals:
            from campaigns.reports import statuses_apply

            statuses_apply(account=campaign.account, updates=finals)
    return moved


def _update_with_refs(fields: dict, refs: dict[int, str]) -> None:
    """``UPDATE`` the messages ``refs`` (id → the provider's id for it) with
    ``fields`` and their own provider id, in ONE statement per
    :data:`REFS_PER_STATEMENT` messages:

    - PostgreSQL: ``UPDATE ... SET ..., provider_ref = v.ref FROM
      unnest(ids, refs) AS v(id, ref) WHERE id = v.id``: two array
      parameters, and a plan that looks each id up by primary key (with a
      ``VALUES`` list of 500 rows and statistics, PostgreSQL hash-joins it
      against a scan of the whole table: 20 ms a batch at 100k messages);
    - SQLite >= 3.33: the same with ``FROM (VALUES (id, ref), ...)``.

    A single-row UPDATE per message (``executemany``) cost more than the
    claim and the status change together; ``bulk_update``'s CASE costs more
    in Python than the rest of the batch. ``fields`` are plain values (no
    expressions). A message without a provider id gets "" (as before).
    """
    if not refs:
        return
    table = quote(Message._meta.db_table)
    assignments, params = [], []
    for name, value in fields.items():
        field = Message._meta.get_field(name)
        assignments.append(f"{quote(field.column)} = %s")
        params.append(field.get_db_prep_save(value, connection))
    pk = quote(Message._meta.pk.column)
    ref_column = quote(Message._meta.get_field("provider_ref").column)
    keys = sorted(refs)
    for start in range(0, len(keys), REFS_PER_STATEMENT):
        chunk = keys[start : start + REFS_PER_STATEMENT]
        source, values, match, ref = id_ref_source(chunk, [refs[key] for key in chunk])
        sql = (
            f"UPDATE {table} SET {', '.join(assignments)}, {ref_column} = {ref} "
            f"FROM {source} WHERE {table}.{pk} = {match}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, *values])


def id_ref_source(ids: list[int], refs: list[str]) -> tuple[str, list, str, str]:
    """(id, provider id) pairs as the ``FROM`` source of an UPDATE: its SQL,
    its parameters, and the expressions of the id and of the provider id.
    PostgreSQL: two ``unnest()``ed arrays (see :func:`_update_with_refs`);
    elsewhere a ``VALUES`` list."""
    if connection.vendor == "postgresql":
        source = "unnest(CAST(%s AS bigint[]), CAST(%s AS varchar(100)[])) AS v(id, ref)"
        # Text literals built here (smsoffice.lookups.array_literal), not
        # lists for psycopg's per-value dumper.
        return source, [array_literal(ids), array_literal(refs)], "v.id", "v.ref"
    rows = ", ".join(["(CAST(%s AS bigint), CAST(%s AS varchar(100)))"] * len(ids))
    params = [x for pair in zip(ids, refs, strict=True) for x in pair]
    return f"(VALUES {rows}) AS v", params, "v.column1", "v.column2"


#: Rows per ``UPDATE ... FROM (VALUES ...)`` (two parameters each: well
#: inside SQLite's and PostgreSQL's parameter limits).
REFS_PER_STATEMENT = 1000


def quote(name: str) -> str:
    return connection.ops.quote_name(name)
