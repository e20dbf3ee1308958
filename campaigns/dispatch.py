"""Planning and dispatch: from a scheduled campaign to messages at the provider.

One dispatch *run* (the django-q2 task ``campaigns.tasks.dispatch_campaign``)
does, for one campaign:

1. start it if it is ``scheduled`` and due (→ ``sending``);
2. take the campaign's dispatch lease (a conditional UPDATE; it expires on
   its own, so a dead worker never blocks the campaign, and a task delivered
   twice finds the lease taken and leaves);
3. plan it once: one ``Message`` per recipient from
   :func:`campaigns.quote.campaign_recipients`, bulk-inserted in chunks of
   :data:`PLAN_CHUNK` (``ignore_conflicts`` on the unique (campaign, phone):
   re-planning after a crash adds only what is missing), then the counters
   and the credit reservation are set to what was planned;
4. loop for about :data:`TIME_SLICE` seconds: take a pacing permit, claim the
   next batch (queued → submitting with a fresh claim token, a conditional
   UPDATE, so two workers never hold the same message), wash it against the
   opt-outs, ``backend.send()``, record the outcome, charge what was accepted
   and release what was not;
5. re-enqueue itself (now, or at the time it has to wait for: quiet hours,
   rate limit, retry backoff) unless the campaign is done, paused or
   cancelled.

Money: ``Campaign.credits_reserved`` is the part of the account's reservation
that belongs to the campaign and, once planned, always equals the credits of
its messages that are queued or submitting. Every move out of those states
charges (sent, and unknown: the provider most likely took it) or releases
(anything else) exactly those credits, in the same transaction as the status
change, which is itself conditional on the message still being
``submitting`` under our claim token: a message can only leave
``submitting`` once, so it is charged or released once. When the campaign
ends nothing is reserved any more.

Never sent twice: a message is sent only from a batch it was claimed into;
a batch whose fate is unknown (worker died, read timeout) stays
``submitting`` until :func:`batches_recover` reconciles it with the provider
by our reference (``f"m{pk}"``) or, where the provider cannot tell, marks
it ``unknown`` for a person to decide. Nothing is re-sent blindly.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Min, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from campaigns import pacing, quiet_hours
from campaigns.counters import counters_move, counters_recount
from campaigns.models import Campaign, CampaignEvent, Message
from contacts.models import OptOut
from providers.backends.base import (
    FINAL_STATUSES,
    Capability,
    DeliveryStatus,
    ErrorKind,
    OutboundSms,
    ProviderError,
    SendOutcome,
    SendResult,
    StatusUpdate,
    batch_stop_error,
)
from providers.services import CreditError, credits_charge, credits_release, credits_reserve

logger = logging.getLogger("campaigns.dispatch")

S = Message.Status
C = Campaign.Status
ZERO = Decimal("0")
CENT = Decimal("0.01")

DISPATCH_TASK = "campaigns.tasks.dispatch_campaign"
#: Recipients inserted per transaction while planning.
PLAN_CHUNK = 2000
#: A run stops taking new batches after this many seconds (task timeout 90 s).
TIME_SLICE = 60.0
#: The dispatch lease; renewed before every batch.
LEASE = timedelta(seconds=100)
#: A claim older than this belongs to a worker that is certainly gone: the
#: task timeout kills a worker long before (django-q2 ``timeout`` + margin).
STALE_AFTER = timedelta(seconds=int(settings.Q_CLUSTER.get("timeout", 90)) + 30)
#: Transient failures of one message before it is failed for good.
MAX_ATTEMPTS = 5
BACKOFF_BASE = 30.0
BACKOFF_MAX = 900.0
#: Whole batches refused permanently in a row before the campaign fails.
FAIL_CAMPAIGN_AFTER = 3
#: Waits up to this long are slept inside the task; longer ones reschedule it.
MAX_INLINE_WAIT = 2.0
#: After a transient error, every worker leaves the account alone this long.
TRANSIENT_PAUSE = 5.0
#: Our error code for a message a backend did not even try (see SmsEveryone).


# ------------------------------------------------------------------ helpers


def message_reference(pk: int) -> str:
    """Our reference for a message at the provider (agreed with campaigns.reports)."""
    return f"m{pk}"


def campaign_reference(campaign_id: int) -> str:
    """The ledger reference of a campaign's reservation, charges and releases."""
    return f"campaign:{campaign_id}"


def dispatch_schedule_name(campaign_id: int) -> str:
    return f"campaign {campaign_id}: dispatch"


def _now() -> datetime:
    return timezone.now()


def credits_of(messages) -> Decimal:
    """The credits of a queryset of messages, to the cent."""
    total = messages.aggregate(total=Sum("credits"))["total"]
    return (total or ZERO).quantize(CENT)


def backoff(attempt: int, retry_after: float | None = None) -> float:
    """Seconds before retry number ``attempt`` (1, 2, ...): 30 s doubling to
    15 min, or longer if the provider asked for it."""
    delay = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** max(0, attempt - 1))
    return max(delay, float(retry_after or 0))


def enqueue_dispatch(campaign_id: int, *, at: datetime | None = None) -> None:
    """Dispatch ``campaign_id`` once the current transaction commits: now, or
    at ``at`` through a one-off django-q2 Schedule (one per campaign, the
    earliest wins)."""
    transaction.on_commit(lambda: _enqueue(campaign_id, at))


def _enqueue(campaign_id: int, at: datetime | None) -> None:
    from django_q.models import Schedule
    from django_q.tasks import async_task

    if at is None or at <= _now() + timedelta(seconds=1):
        async_task(
            DISPATCH_TASK,
            campaign_id,
            task_name=f"dispatch campaign {campaign_id}",
            group=f"campaign-{campaign_id}",
        )
        return
    name = dispatch_schedule_name(campaign_id)
    with transaction.atomic():
        existing = list(Schedule.objects.select_for_update().filter(name=name))
        if any(s.next_run and s.next_run <= at for s in existing):
            return
        Schedule.objects.filter(pk__in=[s.pk for s in existing]).delete()
        Schedule.objects.create(
            name=name,
            func=DISPATCH_TASK,
            args=str(int(campaign_id)),
            schedule_type=Schedule.ONCE,
            repeats=-1,
            next_run=at,
        )


def _event(campaign_id: int, action: str, *, from_status="", to_status="", detail="", user=None):
    CampaignEvent.objects.create(
        campaign_id=campaign_id,
        action=action,
        from_status=from_status,
        to_status=to_status,
        detail=detail[:5000],
        user=user if getattr(user, "pk", None) else None,
    )


def _credit_move(
    kind: str, *, campaign: Campaign, amount: Decimal, key: str | None, user=None
) -> None:
    """Charge/release/reserve ``amount`` for ``campaign`` (no-op for zero)."""
    if amount <= 0:
        return
    account = campaign.account
    reference = campaign_reference(campaign.pk)
    if kind == "charge":
        credits_charge(account=account, amount=amount, reference=reference, idempotency_key=key)
    elif kind == "release":
        credits_release(account=account, amount=amount, reference=reference, idempotency_key=key)
    else:
        credits_reserve(
            account=account, amount=amount, reference=reference, user=user, idempotency_key=key
        )


# ------------------------------------------------------------------- lease


def _lease_take(campaign_id: int) -> uuid.UUID | None:
    token, now = uuid.uuid4(), _now()
    taken = (
        Campaign.objects.filter(pk=campaign_id)
        .filter(Q(dispatch_lease_until__isnull=True) | Q(dispatch_lease_until__lte=now))
        .update(dispatch_token=token, dispatch_lease_until=now + LEASE)
    )
    return token if taken else None


def _lease_renew(campaign_id: int, token: uuid.UUID) -> bool:
    return bool(
        Campaign.objects.filter(pk=campaign_id, dispatch_token=token).update(
            dispatch_lease_until=_now() + LEASE
        )
    )


def _lease_release(campaign_id: int, token: uuid.UUID) -> None:
    # An expired lease, not NULL: it records when a worker last dispatched.
    Campaign.objects.filter(pk=campaign_id, dispatch_token=token).update(
        dispatch_token=None, dispatch_lease_until=_now()
    )


# ---------------------------------------------------------------- planning


def _start_if_due(campaign_id: int) -> Campaign | None:
    """``scheduled`` → ``sending`` when its time has come; returns the campaign."""
    now = _now()
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().filter(pk=campaign_id).first()
        if campaign is None:
            return None
        if campaign.status == C.SCHEDULED and (
            campaign.scheduled_at is None or campaign.scheduled_at <= now
        ):
            Campaign.objects.filter(pk=campaign_id).update(
                status=C.SENDING,
                started_at=Coalesce(F("started_at"), now),
                status_reason="",
                next_dispatch_at=None,
            )
            _event(campaign_id, "start", from_status=C.SCHEDULED, to_status=C.SENDING)
    return Campaign.objects.select_related("account", "template").get(pk=campaign_id)


def campaign_plan(*, campaign_id: int, lease: uuid.UUID | None = None) -> bool:
    """Materialise one ``Message`` per recipient, then reconcile counters and
    the reservation with the plan. Returns True once the campaign is planned.

    Streams the recipients and inserts them in chunks of :data:`PLAN_CHUNK`,
    one transaction each; memory stays flat. Safe to run again after a crash
    (the unique (campaign, phone) ignores what is there). With ``lease``, the
    lease is renewed per chunk and planning stops (False) if it was lost.
    """
    from campaigns.quote import campaign_recipients

    campaign = Campaign.objects.select_related("account", "template").get(pk=campaign_id)
    if campaign.planned:
        return True
    account = campaign.account
    quiet = quiet_hours.has_window(account)
    zones: set[str] = set()
    insert = _PlanInsert(campaign_id)
    chunk: list[tuple] = []
    for recipient in campaign_recipients(campaign=campaign):
        tz = ""
        if quiet:
            tz = quiet_hours.recipient_time_zone(recipient.phone, default=account.time_zone)
            zones.add(tz)
        chunk.append(
            (
                recipient.contact_id,
                recipient.phone,
                recipient.body,
                recipient.encoding,
                recipient.segments,
                recipient.credits,
                tz,
            )
        )
        if len(chunk) >= PLAN_CHUNK:
            insert(chunk)
            chunk = []
            if lease is not None and not _lease_renew(campaign_id, lease):
                return False
            if Campaign.objects.filter(pk=campaign_id, status=C.CANCELLED).exists():
                break
    else:
        insert(chunk)
    return _plan_finalize(campaign_id, zones)


class _PlanInsert:
    """``INSERT ... ON CONFLICT DO NOTHING`` of planned messages with
    ``executemany`` (PostgreSQL and SQLite >= 3.24 both have it).

    ``bulk_create`` spends most of its time preparing 22 values per row in
    Python; here each row carries only what differs between recipients and
    every other column gets its model default, prepared once. The unique
    (campaign, phone) makes a re-run after a crash insert only what is
    missing.
    """

    VARIABLE = ("contact", "phone", "body", "encoding", "segments", "credits", "time_zone")

    def __init__(self, campaign_id: int) -> None:
        self.campaign_id = campaign_id
        fields = [f for f in Message._meta.concrete_fields if not f.primary_key]
        by_name = {f.name: f for f in fields}
        self.variable = [by_name[name] for name in self.VARIABLE]
        self.fixed = [f for f in fields if f.name not in self.VARIABLE]
        columns = [f.column for f in self.fixed + self.variable]
        quote = connection.ops.quote_name
        self.sql = (
            f"INSERT INTO {quote(Message._meta.db_table)} "
            f"({', '.join(quote(c) for c in columns)}) "
            f"VALUES ({', '.join(['%s'] * len(columns))}) ON CONFLICT DO NOTHING"
        )

    def _fixed_values(self) -> tuple:
        now = _now()
        values = []
        for field in self.fixed:
            if field.name == "campaign":
                value = self.campaign_id
            elif field.name == "created_at":
                value = now
            else:
                value = field.get_default()
            values.append(field.get_db_prep_save(value, connection))
        return tuple(values)

    def __call__(self, rows: list[tuple]) -> None:
        if not rows:
            return
        fixed = self._fixed_values()
        credits = self.variable[self.VARIABLE.index("credits")]
        adapt = connection.ops.adapt_decimalfield_value
        params = [
            (
                *fixed,
                contact_id,
                phone,
                body,
                encoding,
                segments,
                adapt(amount, credits.max_digits, credits.decimal_places),
                tz,
            )
            for contact_id, phone, body, encoding, segments, amount, tz in rows
        ]
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(self.sql, params)


def _plan_finalize(campaign_id: int, zones: set[str]) -> bool:
    now = _now()
    with transaction.atomic():
        campaign = (
            Campaign.objects.select_for_update(of=("self",))
            .select_related("account")
            .get(pk=campaign_id)
        )
        if campaign.planned:
            return True
        counts = counters_recount(campaign_id=campaign_id)
        if campaign.status == C.CANCELLED:
            # Cancelled while planning: the cancel released the whole
            # reservation, so what was planned meanwhile is cancelled as is.
            n = Message.objects.filter(campaign_id=campaign_id, status=S.QUEUED).update(
                status=S.CANCELLED, status_reason="Campaign cancelled.", status_at=now
            )
            counters_move(campaign_id=campaign_id, moves={(S.QUEUED, S.CANCELLED): n})
            detail = f"{counts['recipients_total']} recipients planned after the cancel."
        else:
            needed = credits_of(Message.objects.filter(campaign_id=campaign_id, status=S.QUEUED))
            shortfall = reservation_reconcile(campaign=campaign, target=needed)
            detail = (
                f"{counts['recipients_total']} recipients planned, {needed} credits "
                f"(quoted {campaign.credits_reserved})."
            )
            if shortfall:
                _pause_locked(campaign, reason=shortfall)
        Campaign.objects.filter(pk=campaign_id).update(planned=True, time_zones=sorted(zones))
        _event(campaign_id, "plan", detail=detail)
    return True


def reservation_reconcile(*, campaign: Campaign, target: Decimal, user=None) -> str:
    """Make the campaign's reservation ``target`` credits (release the excess
    or reserve the difference). Call with the campaign row locked. Returns ""
    or, when the account cannot cover the difference, the reason (nothing
    changed)."""
    held = campaign.credits_reserved
    if target < held:
        _credit_move("release", campaign=campaign, amount=held - target, key=None)
    elif target > held:
        try:
            with transaction.atomic():
                _credit_move(
                    "reserve", campaign=campaign, amount=target - held, key=None, user=user
                )
        except CreditError as exc:
            return (
                f"Not enough credits: the campaign now needs {target} credits, "
                f"{target - held} more than reserved. {' '.join(exc.messages)} "
                "Top up, then resume."
            )
    Campaign.objects.filter(pk=campaign.pk).update(credits_reserved=target)
    campaign.credits_reserved = target
    return ""


# -------------------------------------------------------------- the batch


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
    """A claimed batch: rows ``(id, phone, body, credits, attempts)``."""

    token: uuid.UUID
    rows: list[tuple[int, str, str, Decimal, int]]
    skipped: int = 0


def batch_claim(*, campaign: Campaign, size: int, zones: set[str] | None = None) -> Batch | None:
    """Claim up to ``size`` queued messages (oldest first), then wash them.

    The claim is a conditional UPDATE (``status='queued'`` re-checked on every
    row) of ids picked with ``FOR UPDATE SKIP LOCKED`` where the database has
    it, in one transaction, so concurrent claims never share a message.
    ``zones``: only recipients in these time zones (quiet hours). Returns
    None when nothing was claimable.
    """
    now = _now()
    token = uuid.uuid4()
    candidates = Message.objects.filter(campaign_id=campaign.pk, status=S.QUEUED).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )
    if zones is not None:
        candidates = candidates.filter(time_zone__in=zones)
    with transaction.atomic():
        if connection.features.has_select_for_update_skip_locked:
            candidates = candidates.select_for_update(skip_locked=True)
        # Two statements, not UPDATE ... WHERE id IN (SELECT ... LIMIT n FOR
        # UPDATE SKIP LOCKED): PostgreSQL may run such a subquery more than
        # once, each run skipping the rows the last one locked, and so claim
        # more than n rows. The ids are locked here until the UPDATE commits.
        ids = list(candidates.order_by("id").values_list("id", flat=True)[:size])
        if not ids:
            return None
        claimed = Message.objects.filter(id__in=ids, status=S.QUEUED).update(
            status=S.SUBMITTING, claim_token=token, claimed_at=now
        )
    if not claimed:
        return None
    return _wash(campaign, token)


def _wash(campaign: Campaign, token: uuid.UUID) -> Batch:
    """Skip the claimed recipients that opted out since planning."""
    rows = list(
        Message.objects.filter(claim_token=token, status=S.SUBMITTING)
        .order_by("id")
        .values_list("id", "phone", "body", "credits", "attempts")
    )
    opted = set(
        OptOut.objects.filter(phone__in=[row[1] for row in rows]).values_list("phone", flat=True)
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
    now = _now()
    outcomes: dict[int, Outcome] = {}
    for pk, _phone, _body, _credits, attempts in batch.rows:
        result = by_ref.get(message_reference(pk))
        if result is None:
            continue  # the backend did not say: reconcile later
        outcome = _result_outcome(result, attempts=attempts, now=now)
        if outcome is not None:
            outcomes[pk] = outcome
    return outcomes, stop


def _result_outcome(result: SendResult, *, attempts: int, now: datetime) -> Outcome | None:
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
    now = _now()
    if getattr(exc, "maybe_processed", False):
        return {}  # stays submitting until reconciled with the provider
    if exc.kind in ("auth", "credit"):
        # Nothing went out; the campaign pauses (see dispatch_step).
        outcome = Outcome(status=S.QUEUED, reason=f"Not sent: {exc}"[:255])
        return {row[0]: outcome for row in batch.rows}
    if exc.kind == "rate_limit":
        wait = exc.retry_after if exc.retry_after is not None else BACKOFF_BASE
        outcome = Outcome(
            status=S.QUEUED,
            error_code=exc.code,
            error=str(exc),
            reason=f"Rate limited by the provider, retrying: {exc}"[:255],
            retry_at=now + timedelta(seconds=wait),
            attempt=True,
        )
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
    now = _now()
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
            .filter(id__in=list(outcomes), claim_token=token, status=S.SUBMITTING)
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
            fields: dict = {"status": status, "status_at": now}
            if status == S.SENT:
                fields.update(sent_at=now, provider_batch_ref=batch_ref[:100], raw_status=raw[:100])
            else:
                fields.update(status_reason=reason, error_code=code[:50], raw_error=error)
                if raw:
                    fields["raw_status"] = raw[:100]
            if status == S.QUEUED:
                fields.update(claim_token=None, claimed_at=None, next_attempt_at=retry_at)
            if attempt:
                fields["attempts"] = F("attempts") + 1
            Message.objects.filter(id__in=ids).update(**fields)
            moved[status] += len(ids)
        _set_provider_refs(
            [
                (outcomes[pk].provider_ref[:100], pk)
                for pk in credits
                if outcomes[pk].status == S.SENT and outcomes[pk].provider_ref
            ]
        )
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
                _credit_move(
                    "charge", campaign=campaign, amount=charge, key=f"charge:{token}:{first}"
                )
                _credit_move(
                    "release", campaign=campaign, amount=release, key=f"release:{token}:{first}"
                )
        except CreditError as exc:
            # Cannot happen while the reservation invariant holds; the message
            # statuses are the truth and are kept, the ledger gap is shouted.
            logger.error("Campaign %s: credit movement failed: %s", campaign.pk, exc)
            _event(campaign.pk, "credit_error", detail=" ".join(exc.messages))
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


def _set_provider_refs(pairs: list[tuple[str, int]]) -> None:
    """Write each message's own provider id: one ``executemany`` (a driver
    loop over one prepared statement) instead of ``bulk_update``, whose
    CASE expression costs more in Python than the whole rest of a batch."""
    if not pairs:
        return
    quote = connection.ops.quote_name
    sql = (
        f"UPDATE {quote(Message._meta.db_table)} SET "
        f"{quote(Message._meta.get_field('provider_ref').column)} = %s WHERE "
        f"{quote(Message._meta.pk.column)} = %s"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, pairs)


def _lookup_outcomes(backend, rows: list[tuple], *, now: datetime) -> dict[int, Outcome] | None:
    """Reconcile rows ``(id, attempts, phone)`` of a batch whose fate is unknown.

    With ``lookup_by_reference``: what the provider accepted is sent, what it
    refused is failed/retried, what it never saw is requeued. Without it:
    ``unknown`` for a person to decide. None when the lookup itself failed
    (try again later).
    """
    if not backend.supports(Capability.LOOKUP_BY_REFERENCE):
        outcome = Outcome(
            status=S.UNKNOWN,
            reason=(
                "The provider may or may not have received it (the worker stopped or the "
                "call timed out) and cannot be asked by reference: check at the provider, "
                "then mark it sent, failed or to send again."
            ),
        )
        return {row[0]: outcome for row in rows}
    try:
        # The numbers let providers that tag a whole batch with one reference
        # (The SMS Works) match each member by destination.
        numbers = {message_reference(pk): phone for pk, _, phone in rows}
        found = {
            r.reference: r for r in backend.lookup_by_reference(list(numbers), numbers=numbers)
        }
    except ProviderError as exc:
        logger.warning("Lookup by reference failed (%s); will retry.", exc)
        return None
    outcomes: dict[int, Outcome] = {}
    for pk, attempts, _ in rows:
        result = found.get(message_reference(pk))
        if result is None:
            outcomes[pk] = Outcome(
                status=S.QUEUED, reason="The provider never received it; requeued."
            )
            continue
        outcome = _result_outcome(result, attempts=attempts, now=now)
        if outcome is not None:
            outcomes[pk] = outcome
    return outcomes


def _paced_call(campaign: Campaign, backend) -> bool:
    """Wait for a slot of the account's request rate (a lookup or poll is a
    call too); False when none is free soon enough."""
    limits = pacing.limits_for(campaign.account, type(backend))
    permit = pacing.pace_acquire(account_id=campaign.account_id, limits=limits)
    if not permit.granted and permit.retry_in <= MAX_INLINE_WAIT:
        pacing.pace_wait(permit.retry_in)
        permit = pacing.pace_acquire(account_id=campaign.account_id, limits=limits)
    if permit.granted:
        pacing.pace_wait(permit.wait)
    return permit.granted


def batches_recover(
    *,
    campaign_id: int | None = None,
    older_than: timedelta | None = None,
    backend=None,
    limit: int = 100,
) -> int:
    """Reconcile batches stuck in ``submitting`` for longer than ``older_than``
    (default :data:`STALE_AFTER`: their worker is gone). Returns how many
    messages left ``submitting``."""
    now = _now()
    older_than = STALE_AFTER if older_than is None else older_than
    if campaign_id is not None:
        campaign_ids = [campaign_id]
    else:
        # Only campaigns with something queued or submitting (one counter),
        # so each query below runs on the (campaign, status) index.
        campaign_ids = list(
            Campaign.objects.filter(queued_count__gt=0).values_list("pk", flat=True)
        )
    pairs: list[tuple[int, uuid.UUID]] = []
    for cid in campaign_ids:
        stuck = Message.objects.filter(
            campaign_id=cid, status=S.SUBMITTING, claimed_at__lte=now - older_than
        )
        # order_by(): the model's default ordering would make DISTINCT per row.
        tokens = stuck.order_by().values_list("claim_token", flat=True).distinct()
        pairs += [(cid, token) for token in tokens[: max(0, limit - len(pairs))]]
        if len(pairs) >= limit:
            break
    backends: dict[int, object] = {}
    total = 0
    for cid, token in pairs:
        campaign = Campaign.objects.select_related("account").get(pk=cid)
        be = backend or backends.get(campaign.account_id)
        if be is None:
            be = backends[campaign.account_id] = campaign.account.get_backend()
        rows = list(
            Message.objects.filter(claim_token=token, status=S.SUBMITTING).values_list(
                "id", "attempts", "phone"
            )
        )
        if not rows:
            continue
        if be.supports(Capability.LOOKUP_BY_REFERENCE) and not _paced_call(campaign, be):
            continue  # the account's rate limit is used up: next time
        outcomes = _lookup_outcomes(be, rows, now=now)
        if outcomes is None:
            continue
        moved = batch_record(campaign=campaign, token=token, outcomes=outcomes)
        if moved:
            total += sum(moved.values())
            summary = ", ".join(f"{n} {status}" for status, n in sorted(moved.items()))
            _event(cid, "recover", detail=f"Batch {token} reconciled with the provider: {summary}.")
    return total


# ------------------------------------------------------- campaign effects


def _pause_locked(campaign: Campaign, *, reason: str) -> None:
    """Pause a locked campaign on the engine's own initiative."""
    if campaign.status not in (C.SENDING, C.SCHEDULED):
        return
    Campaign.objects.filter(pk=campaign.pk).update(status=C.PAUSED, status_reason=reason[:500])
    _event(
        campaign.pk, "auto_pause", from_status=campaign.status, to_status=C.PAUSED, detail=reason
    )
    campaign.status = C.PAUSED


def campaign_auto_pause(*, campaign_id: int, reason: str) -> None:
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        _pause_locked(campaign, reason=reason)


def _campaign_fail(*, campaign_id: int, reason: str) -> None:
    """``sending`` → ``failed``: the rest of the queue fails, credits released."""
    now = _now()
    with transaction.atomic():
        campaign = (
            Campaign.objects.select_for_update(of=("self",))
            .select_related("account")
            .get(pk=campaign_id)
        )
        if campaign.status != C.SENDING:
            return
        queued = Message.objects.filter(campaign_id=campaign_id, status=S.QUEUED)
        amount = credits_of(queued)
        n = queued.update(status=S.FAILED, status_reason=f"Not sent: {reason}"[:255], status_at=now)
        counters_move(campaign_id=campaign_id, moves={(S.QUEUED, S.FAILED): n})
        _credit_move("release", campaign=campaign, amount=amount, key=f"release:fail:{campaign_id}")
        Campaign.objects.filter(pk=campaign_id).update(
            status=C.FAILED,
            status_reason=reason[:500],
            finished_at=now,
            credits_reserved=F("credits_reserved") - amount,
        )
        _event(campaign_id, "fail", from_status=C.SENDING, to_status=C.FAILED, detail=reason)


def campaign_complete_if_done(*, campaign_id: int) -> bool:
    """``sending`` → ``completed`` once nothing is queued or submitting; any
    reservation left over (none, while the invariant holds) is released."""
    open_ = Message.objects.filter(campaign_id=campaign_id, status__in=[S.QUEUED, S.SUBMITTING])
    if open_.exists():
        return False
    with transaction.atomic():
        campaign = (
            Campaign.objects.select_for_update(of=("self",))
            .select_related("account")
            .get(pk=campaign_id)
        )
        if campaign.status != C.SENDING or not campaign.planned or open_.exists():
            return False
        leftover = campaign.credits_reserved
        if leftover:
            logger.warning(
                "Campaign %s completes with %s credits still reserved; releasing them.",
                campaign_id,
                leftover,
            )
            _credit_move(
                "release", campaign=campaign, amount=leftover, key=f"release:complete:{campaign_id}"
            )
        Campaign.objects.filter(pk=campaign_id).update(
            status=C.COMPLETED,
            finished_at=_now(),
            credits_reserved=F("credits_reserved") - leftover,
            next_dispatch_at=None,
            status_reason=(
                f"{campaign.unknown_count} message(s) need a decision (status unknown)."
                if campaign.unknown_count
                else ""
            ),
        )
        _event(campaign_id, "complete", from_status=C.SENDING, to_status=C.COMPLETED)
    return True


# ----------------------------------------------------------------- a step


@dataclass
class Step:
    """What one :func:`dispatch_step` did."""

    state: str  # "sent" | "wait" | "done" | "stopped"
    sent: int = 0
    skipped: int = 0
    wait_until: datetime | None = None
    detail: str = ""


def _zones_now(campaign: Campaign, now: datetime) -> tuple[set[str] | None, datetime | None]:
    """Time zones (as stored on messages) open now, and when the next opens.

    ``None`` zones means no quiet hours: claim anyone.
    """
    account = campaign.account
    if not quiet_hours.has_window(account):
        return None, None
    stored = set(campaign.time_zones or []) | {""}
    effective = {tz: tz or account.time_zone for tz in stored}
    open_ = quiet_hours.open_zones(account=account, zones=set(effective.values()), at=now)
    zones = {tz for tz, real in effective.items() if real in open_}
    closed = set(effective.values()) - open_
    opening = quiet_hours.earliest_opening(account=account, zones=closed, after=now)
    return zones, opening


def dispatch_step(
    *, campaign: Campaign, backend, limits: pacing.Limits, budget: float = TIME_SLICE
) -> Step:
    """Send one batch of ``campaign`` (pacing, quiet hours, claim, wash, send,
    record), or say why not: ``wait`` (until ``wait_until``), ``done``,
    ``stopped`` (the campaign was paused or failed by this step)."""
    now = _now()
    zones, opening = _zones_now(campaign, now)
    if zones is not None and not zones:
        # Quiet hours everywhere: done if nothing is left, else wait for the opening.
        return _nothing_to_claim(campaign, opening)

    deadline = time.monotonic() + max(0.0, budget)
    while True:
        permit = pacing.pace_acquire(
            account_id=campaign.account_id, limits=limits, messages=limits.batch_size
        )
        if permit.granted:
            pacing.pace_wait(permit.wait)
            break
        if permit.retry_in > min(MAX_INLINE_WAIT, deadline - time.monotonic()):
            return Step(
                "wait",
                wait_until=_now() + timedelta(seconds=permit.retry_in),
                detail="Rate limit.",
            )
        pacing.pace_wait(permit.retry_in)

    batch = batch_claim(campaign=campaign, size=limits.batch_size, zones=zones)
    if batch is None:
        return _nothing_to_claim(campaign, opening)
    if not batch.rows:
        return Step("sent", skipped=batch.skipped)

    outcomes, error = batch_send(campaign=campaign, batch=batch, backend=backend)
    if error is not None and error.maybe_processed:
        # Reconcile only after any straggling processing is surely over.
        Message.objects.filter(claim_token=batch.token, status=S.SUBMITTING).update(
            claimed_at=_now()
        )
    moved = batch_record(campaign=campaign, token=batch.token, outcomes=outcomes)
    step = Step("sent", sent=moved[S.SENT], skipped=batch.skipped)
    if error is None:
        return step
    logger.warning("Campaign %s: batch refused: %s", campaign.pk, error)
    if error.kind in ("auth", "credit"):
        what = "authentication failed" if error.kind == "auth" else "out of credit at the provider"
        campaign_auto_pause(
            campaign_id=campaign.pk,
            reason=f"Paused: {what} ({error}). Fix the account, then resume.",
        )
        return Step("stopped", detail=str(error))
    if error.permanent and not error.maybe_processed:
        failures = _count_failure(campaign.pk)
        if failures >= FAIL_CAMPAIGN_AFTER:
            _campaign_fail(
                campaign_id=campaign.pk,
                reason=f"The provider refused {failures} batches in a row; last error: {error}",
            )
            return Step("stopped", detail=str(error))
        return step
    # Transient (429, 5xx, timeout): the batch waits for its retry or its
    # reconciliation; every worker holds off this account for a moment.
    if error.retry_after is not None:
        wait = error.retry_after
    else:
        wait = BACKOFF_BASE if error.kind == "rate_limit" else TRANSIENT_PAUSE
    pacing.pace_block(account_id=campaign.account_id, seconds=wait)
    return step


def _count_failure(campaign_id: int) -> int:
    Campaign.objects.filter(pk=campaign_id).update(
        consecutive_failures=F("consecutive_failures") + 1
    )
    return Campaign.objects.filter(pk=campaign_id).values_list("consecutive_failures", flat=True)[0]


def _nothing_to_claim(campaign: Campaign, opening: datetime | None) -> Step:
    now = _now()
    left = Message.objects.filter(campaign_id=campaign.pk, status__in=[S.QUEUED, S.SUBMITTING])
    if not left.exists():
        return Step("done")
    waits = []
    retry = left.filter(status=S.QUEUED, next_attempt_at__gt=now).aggregate(
        t=Min("next_attempt_at")
    )
    if retry["t"]:
        waits.append(retry["t"])
    if opening is not None and left.filter(status=S.QUEUED).exists():
        waits.append(opening)
    stuck = left.filter(status=S.SUBMITTING).aggregate(t=Min("claimed_at"))["t"]
    if stuck is not None:
        waits.append(max(now, stuck + STALE_AFTER))
    if not waits:
        # Queued but not claimable now and no known reason: look again soon.
        waits.append(now + timedelta(seconds=BACKOFF_BASE))
    return Step("wait", wait_until=min(waits), detail="Nothing claimable now.")


# ------------------------------------------------------------------ a run


@dataclass
class DispatchRun:
    """What one :func:`campaign_dispatch` run did."""

    state: str
    batches: int = 0
    sent: int = 0
    skipped: int = 0
    next_at: datetime | None = None


def campaign_dispatch(
    *,
    campaign_id: int,
    backend=None,
    time_budget: float = TIME_SLICE,
    max_batches: int | None = None,
) -> DispatchRun:
    """One dispatch run of ``campaign_id`` (see the module docstring).

    Re-enqueues itself (after commit) when it stops for time or has to wait;
    never when the campaign is done, paused, cancelled or failed, or when
    another worker holds the lease.
    """
    started = time.monotonic()
    campaign = _start_if_due(campaign_id)
    if campaign is None:
        return DispatchRun("missing")
    if campaign.status == C.SCHEDULED:
        enqueue_dispatch(campaign_id, at=campaign.scheduled_at)
        return DispatchRun("scheduled", next_at=campaign.scheduled_at)
    if campaign.status != C.SENDING:
        return DispatchRun(campaign.status)
    token = _lease_take(campaign_id)
    if token is None:
        return DispatchRun("busy")
    run = DispatchRun("slice_over")
    try:
        if backend is None:
            backend = campaign.account.get_backend()
        if not campaign.planned:
            if not campaign_plan(campaign_id=campaign_id, lease=token):
                run.state = "lease_lost"
                return run
            campaign = Campaign.objects.select_related("account", "template").get(pk=campaign_id)
        batches_recover(campaign_id=campaign_id, backend=backend)
        limits = pacing.limits_for(campaign.account, type(backend))
        while True:
            status = Campaign.objects.filter(pk=campaign_id).values_list("status", flat=True)[0]
            if status != C.SENDING:
                run.state = status
                break
            left = time_budget - (time.monotonic() - started)
            if left <= 0 or (max_batches is not None and run.batches >= max_batches):
                run.state = "slice_over"
                break
            if not _lease_renew(campaign_id, token):
                run.state = "lease_lost"
                return run
            step = dispatch_step(campaign=campaign, backend=backend, limits=limits, budget=left)
            run.sent += step.sent
            run.skipped += step.skipped
            if step.state == "sent":
                run.batches += 1
                continue
            if step.state == "done":
                run.state = "done" if campaign_complete_if_done(campaign_id=campaign_id) else "idle"
            elif step.state == "wait":
                run.state, run.next_at = "waiting", step.wait_until
            else:  # the step paused or failed the campaign
                run.state = Campaign.objects.filter(pk=campaign_id).values_list(
                    "status", flat=True
                )[0]
            break
    finally:
        _lease_release(campaign_id, token)
    if run.state == "slice_over":
        enqueue_dispatch(campaign_id)
    elif run.state == "waiting":
        Campaign.objects.filter(pk=campaign_id).update(next_dispatch_at=run.next_at)
        enqueue_dispatch(campaign_id, at=run.next_at)
    return run


def stalled_campaigns(*, now: datetime | None = None) -> list[int]:
    """Campaigns ``sending`` with no live lease and no wake-up due soon: a
    worker died or a task was lost. The recovery task enqueues them again."""
    now = now or _now()
    return list(
        Campaign.objects.filter(status=C.SENDING)
        .filter(
            Q(dispatch_lease_until__isnull=True)
            | Q(dispatch_lease_until__lt=now - timedelta(minutes=2))
        )
        .filter(
            Q(next_dispatch_at__isnull=True) | Q(next_dispatch_at__lt=now - timedelta(minutes=1))
        )
        .values_list("pk", flat=True)
    )


def messages_for(campaign_id: int, statuses: Iterable[str]) -> int:
    """How many messages of the campaign are in ``statuses`` (for tests/admin)."""
    return Message.objects.filter(campaign_id=campaign_id, status__in=list(statuses)).count()
