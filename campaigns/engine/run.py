"""A dispatch run: one django-q2 task ``campaigns.tasks.dispatch_campaign``.

For one campaign:

1. start it if it is ``scheduled`` and due (→ ``sending``);
2. take the campaign's dispatch lease (:mod:`campaigns.engine.lease`);
3. plan it once (:mod:`campaigns.engine.plan`);
4. loop for about :data:`TIME_SLICE` seconds: take a pacing permit, claim,
   wash, send and record the next batch (:mod:`campaigns.engine.batch`);
5. re-enqueue itself (now, or at the time it has to wait for: quiet hours,
   rate limit, retry backoff) unless the campaign is done, paused or
   cancelled.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.cache import cache
from django.db import DatabaseError, InterfaceError, OperationalError, connection
from django.db.models import F, Min

from campaigns import pacing, quiet_hours
from campaigns.engine import clock
from campaigns.engine.batch import (
    BACKOFF_BASE,
    ClaimCursor,
    batch_claim_next,
    batch_record,
    batch_send,
)
from campaigns.engine.common import MAX_INLINE_WAIT, STALE_AFTER, C, S, event
from campaigns.engine.enqueue import enqueue_dispatch
from campaigns.engine.lease import LEASE, Heartbeat, lease_release, lease_take
from campaigns.engine.pacer import CallPacer, prebooked
from campaigns.engine.plan import campaign_plan
from campaigns.engine.recover import batches_recover
from campaigns.engine.transitions import (
    campaign_auto_pause,
    campaign_complete_if_done,
    campaign_fail,
    campaign_start_if_due,
)
from campaigns.models import Campaign, CampaignEvent, Message
from providers.backends.base import ErrorKind

logger = logging.getLogger("campaigns.engine")

#: A run stops taking new batches after this many seconds (task timeout 90 s).
TIME_SLICE = 60.0
#: Whole batches refused permanently in a row before the campaign fails.
FAIL_CAMPAIGN_AFTER = 3
#: After a transient error, every worker leaves the account alone this long.
TRANSIENT_PAUSE = 5.0
#: A run's calls may start this long after its slice ended (the batch in
#: hand finishes; the task timeout is 30 s further).
CALL_GRACE = 10.0
#: A run comes back this long after a lease it found taken expires.
WATCHDOG_MARGIN = timedelta(seconds=2)
#: The ``CampaignEvent.action`` of a note on why dispatching stalled.
STALLED = "stalled"
#: Set when the worker process is asked to stop (SIGTERM, Ctrl-C): runs end
#: after the batch in hand, and the campaign goes to the next worker.
STOP = threading.Event()

#: A run stopped by a transient database error is retried after this many
#: seconds, doubling for each consecutive error up to DB_RETRY_MAX.
DB_RETRY_BASE = 2.0
DB_RETRY_MAX = 60.0


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
    *,
    campaign: Campaign,
    backend,
    limits: pacing.Limits,
    budget: float = TIME_SLICE,
    pacer: CallPacer | None = None,
    cursor: ClaimCursor | None = None,
) -> Step:
    """Send one batch of ``campaign`` (pacing, quiet hours, claim, wash, send,
    record), or say why not: ``wait`` (until ``wait_until``), ``done``,
    ``stopped`` (the campaign was paused or failed by this step).

    With ``pacer`` (installed as ``backend.pacer``), every provider call of
    the batch is paced, and the batch is only as large as its calls can be
    made in ``budget`` seconds at the account's request rate. ``cursor``: the
    run's claim position (a run passes the same one to every step)."""
    now = clock.now()
    zones, opening = _zones_now(campaign, now)
    if zones is not None and not zones:
        # Quiet hours everywhere: done if nothing is left, else wait for the opening.
        return _nothing_to_claim(campaign, opening)

    deadline = clock.monotonic() + max(0.0, budget)
    while True:
        permit = pacing.pace_acquire(
            account_id=campaign.account_id, limits=limits, messages=limits.batch_size
        )
        if permit.granted:
            pacing.pace_wait(permit.wait)
            break
        if permit.retry_in > min(MAX_INLINE_WAIT, deadline - clock.monotonic()):
            return Step(
                "wait",
                wait_until=clock.now() + timedelta(seconds=permit.retry_in),
                detail="Rate limit.",
            )
        pacing.pace_wait(permit.retry_in)

    # The claim itself re-checks the campaign's status under its lock, after
    # any wait above: a pause recorded meanwhile lets nothing out.
    size = limits.batch_size
    if pacer is not None:
        if pacer.calls_per_message is None and not _personalised(campaign):
            # One text for everyone: the backend carries up to max_batch
            # messages per call, so the first batch needs no probe.
            pacer.calls_per_message = 1.0 / max(1, int(getattr(backend, "max_batch", 1) or 1))
        size = pacer.batch_size(
            limit=size,
            seconds_left=deadline - clock.monotonic(),
            max_calls=int(getattr(backend, "max_calls_per_send", 0) or 0),
        )
    batch = batch_claim_next(
        campaign=campaign, size=size, zones=zones, cursor=cursor or ClaimCursor()
    )
    if batch is None:
        if _status(campaign.pk) != C.SENDING:
            return Step("stopped", detail="The campaign is no longer sending.")
        return _nothing_to_claim(campaign, opening)
    if not batch.rows:
        return Step("sent", skipped=batch.skipped)

    # The permit above booked the batch's first call: the pacer lets that one
    # through at once and paces the others.
    with prebooked(backend):
        outcomes, error = batch_send(campaign=campaign, batch=batch, backend=backend)
    if pacer is not None:
        pacer.measured(messages=len(batch.rows))
    if error is not None and error.maybe_processed:
        # Reconcile only after any straggling processing is surely over.
        Message.objects.filter(claim_token=batch.token, status=S.SUBMITTING).update(
            claimed_at=clock.now()
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
            campaign_fail(
                campaign_id=campaign.pk,
                reason=f"The provider refused {failures} batches in a row; last error: {error}",
            )
            return Step("stopped", detail=str(error))
        return step
    if error.kind == ErrorKind.DEFERRED:
        # Our own pacer held calls back (rate, deadline, a pause): nothing to
        # hold the account off for; the untried messages are queued again.
        return step
    # Transient (429, 5xx, timeout): the batch waits for its retry or its
    # reconciliation; every worker holds off this account for a moment.
    if error.retry_after is not None:
        wait = error.retry_after
    else:
        wait = BACKOFF_BASE if error.kind == "rate_limit" else TRANSIENT_PAUSE
    pacing.pace_block(account_id=campaign.account_id, seconds=wait)
    return step


def _status(campaign_id: int) -> str:
    return Campaign.objects.filter(pk=campaign_id).values_list("status", flat=True)[0]


def _count_failure(campaign_id: int) -> int:
    Campaign.objects.filter(pk=campaign_id).update(
        consecutive_failures=F("consecutive_failures") + 1
    )
    return Campaign.objects.filter(pk=campaign_id).values_list("consecutive_failures", flat=True)[0]


def _nothing_to_claim(campaign: Campaign, opening: datetime | None) -> Step:
    now = clock.now()
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
    another worker holds the lease. A transient database error (SQLite's
    "database is locked", a dropped PostgreSQL connection, a deadlock) ends
    the run early and re-enqueues it with backoff (:func:`_after_db_error`):
    everything the run wrote is in committed steps that a later run
    continues from, so the error costs time, never a message.
    """
    try:
        return _dispatch(
            campaign_id=campaign_id,
            backend=backend,
            time_budget=time_budget,
            max_batches=max_batches,
        )
    except (OperationalError, InterfaceError) as exc:
        return _after_db_error(campaign_id, exc)


def _dispatch(
    *, campaign_id: int, backend, time_budget: float, max_batches: int | None
) -> DispatchRun:
    started = clock.monotonic()
    campaign = campaign_start_if_due(campaign_id)
    if campaign is None:
        return DispatchRun("missing")
    if campaign.status == C.SCHEDULED:
        enqueue_dispatch(campaign_id, at=campaign.scheduled_at)
        return DispatchRun("scheduled", next_at=campaign.scheduled_at)
    if campaign.status != C.SENDING:
        return DispatchRun(campaign.status)
    token = lease_take(campaign_id)
    if token is None:
        return _busy(campaign_id)
    run = DispatchRun("slice_over")
    heartbeat = Heartbeat(campaign_id, token)
    if heartbeat.enabled:
        # The watchdog: should this worker die (SIGKILL, OOM, a lost host),
        # a run comes back once the lease has expired, whatever the broker
        # does with the dead worker's task (Redis forgets it).
        enqueue_dispatch(campaign_id, at=clock.now() + LEASE + WATCHDOG_MARGIN)
    try:
        with heartbeat:
            _loop(
                run,
                campaign=campaign,
                heartbeat=heartbeat,
                backend=backend,
                deadline=started + time_budget,
                max_batches=max_batches,
            )
    except (OperationalError, InterfaceError):
        raise  # campaign_dispatch re-enqueues it with backoff
    except Exception as exc:
        # A bug or an unexpected answer: recorded where the page shows it;
        # the watchdog (or the recovery sweep) brings the next run.
        logger.exception("Campaign %s: dispatch run failed.", campaign_id)
        dispatch_note(campaign_id, f"Dispatch failed: {type(exc).__name__}: {exc}")
        raise
    finally:
        try:
            lease_release(campaign_id, token)
        except DatabaseError:
            # The lease expires on its own; a later run takes it then.
            logger.warning("Campaign %s: could not release the dispatch lease.", campaign_id)
    if run.state == "slice_over":
        enqueue_dispatch(campaign_id)
    elif run.state == "waiting":
        Campaign.objects.filter(pk=campaign_id).update(next_dispatch_at=run.next_at)
        enqueue_dispatch(campaign_id, at=run.next_at)
    elif run.state not in ("done", "lease_lost", "stopping") and _status(campaign_id) == C.SENDING:
        # Paused and resumed while this run was finishing its batch: the
        # resume's own run found the lease taken, so this one hands over.
        run.state = "resumed"
        enqueue_dispatch(campaign_id)
    return run


def _loop(
    run: DispatchRun,
    *,
    campaign: Campaign,
    heartbeat: Heartbeat,
    backend,
    deadline: float,
    max_batches: int | None,
) -> None:
    """The body of a run, holding the lease: plan, recover, then batches."""
    campaign_id = campaign.pk
    if backend is None:
        backend = campaign.account.get_backend()
    if not campaign.planned:
        if not campaign_plan(campaign_id=campaign_id, lease=heartbeat):
            run.state = "lease_lost"
            return
        campaign = Campaign.objects.select_related("account", "template").get(pk=campaign_id)
    limits = pacing.limits_for(campaign.account, type(backend))
    # Every provider call of this run (sends and recovery lookups) asks the
    # pacer first; it stops starting calls a little after the slice ends.
    pacer = CallPacer(
        campaign_id=campaign_id,
        account_id=campaign.account_id,
        limits=limits,
        deadline=deadline + CALL_GRACE,
        stopping=STOP,
    )
    pacer.attach(backend)
    batches_recover(campaign_id=campaign_id, backend=backend)
    cursor = ClaimCursor()
    while True:
        status = _status(campaign_id)
        if status != C.SENDING:
            run.state = status
            return
        left = deadline - clock.monotonic()
        if left <= 0 or (max_batches is not None and run.batches >= max_batches):
            run.state = "slice_over"
            return
        if STOP.is_set():
            # The worker is shutting down: hand the campaign to the next one.
            run.state = "slice_over"
            return
        if not heartbeat.keep():
            run.state = "lease_lost"
            return
        step = dispatch_step(
            campaign=campaign,
            backend=backend,
            limits=limits,
            budget=left,
            pacer=pacer,
            cursor=cursor,
        )
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
            run.state = _status(campaign_id)
        return


def _busy(campaign_id: int) -> DispatchRun:
    """Another run holds the lease. Come back when it expires: if that run
    is alive it has renewed it by then (and this is a cheap no-op); if it
    died, this takes over within seconds of the expiry."""
    until = (
        Campaign.objects.filter(pk=campaign_id)
        .values_list("dispatch_lease_until", flat=True)
        .first()
    )
    at = max(until or clock.now(), clock.now()) + WATCHDOG_MARGIN
    enqueue_dispatch(campaign_id, at=at)
    return DispatchRun("busy", next_at=at)


def dispatch_note(campaign_id: int, detail: str) -> None:
    """Record why dispatching a campaign stopped or stalled, where its page
    shows it (a ``CampaignEvent`` with action ``stalled``); the same note
    twice in a row is written once. Best effort: never raises."""
    try:
        last = (
            CampaignEvent.objects.filter(campaign_id=campaign_id)
            .order_by("-id")
            .values_list("action", "detail")
            .first()
        )
        if last != (STALLED, detail[:5000]):
            event(campaign_id, STALLED, detail=detail)
    except DatabaseError:
        logger.warning("Campaign %s: could not record: %s", campaign_id, detail)


def listen_for_stop(**_signal_kwargs) -> None:
    """Make SIGINT set :data:`STOP` in this process (a django-q2 worker: the
    cluster's sentinel makes its workers ignore SIGINT, so the cluster's main
    process alone reacts to it; the handler gives the worker a say too).

    The run in hand then stops claiming, its pacer refuses further calls
    (their messages are queued again, no attempt counted), its batch is
    recorded, and it re-enqueues the campaign for the next worker. Only
    installed where SIGINT is ignored, so an interactive process (a shell,
    pytest) keeps its Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, lambda _signum, _frame: STOP.set())


def _after_db_error(campaign_id: int, exc: DatabaseError) -> DispatchRun:
    """Re-enqueue a run that a transient database error stopped: after
    ``DB_RETRY_BASE`` seconds doubling to ``DB_RETRY_MAX`` for consecutive
    errors (counted in the cache, best effort)."""
    if not connection.in_atomic_block:
        # A broken connection is replaced on the next query.
        connection.close_if_unusable_or_obsolete()
    key = f"dispatch:db-errors:{campaign_id}"
    try:
        errors = cache.get(key, 0) + 1
        cache.set(key, errors, timeout=int(DB_RETRY_MAX * 4))
    except Exception:  # the cache may be the same database (SQLite)
        errors = 1
    delay = min(DB_RETRY_MAX, DB_RETRY_BASE * 2 ** (errors - 1))
    logger.warning(
        "Campaign %s: database error during dispatch (%s); retrying in %.0f s.",
        campaign_id,
        exc,
        delay,
    )
    at = clock.now() + timedelta(seconds=delay)
    dispatch_note(
        campaign_id,
        f"Database error while dispatching ({type(exc).__name__}: {exc}); retried with backoff.",
    )
    try:
        enqueue_dispatch(campaign_id, at=at)
    except DatabaseError:
        # Still failing: the recovery sweep restarts campaigns nobody dispatches.
        logger.exception("Campaign %s: could not re-enqueue the dispatch.", campaign_id)
    return DispatchRun("db_error", next_at=at)


def messages_for(campaign_id: int, statuses: Iterable[str]) -> int:
    """How many messages of the campaign are in ``statuses`` (for tests/admin)."""
    return Message.objects.filter(campaign_id=campaign_id, status__in=list(statuses)).count()


def _personalised(campaign: Campaign) -> bool:
    """Whether the campaign's messages may differ from one recipient to the
    next (placeholders in its body or template): then a provider call may
    carry only one of them, and the first batch probes."""
    text = campaign.body or ""
    if not text and campaign.template_id:
        text = campaign.template.body
    return "{{" in text or "{%" in text
