"""Recovery: batches whose fate is unknown (worker died, read timeout) stay
``submitting`` until reconciled with the provider by our reference
(``f"m{pk}"``) or, where the provider cannot tell, marked ``unknown`` for a
person to decide. Nothing is re-sent blindly. Also finds campaigns that are
``sending`` but that no worker dispatches.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from datetime import datetime, timedelta

from django.db.models import Q

from campaigns import pacing
from campaigns.engine import clock
from campaigns.engine.batch import Outcome, batch_record, result_outcome
from campaigns.engine.common import (
    MAX_INLINE_WAIT,
    STALE_AFTER,
    C,
    S,
    event,
    message_reference,
)
from campaigns.engine.pacer import prebooked
from campaigns.models import Campaign, Message
from providers.backends.base import Capability, ProviderError, ProviderRef

logger = logging.getLogger("campaigns.engine")

#: A sending campaign whose lease expired this long ago, with no wake-up
#: due, is stalled (the watchdog of its last run should have come by now).
STALL_AFTER = timedelta(seconds=60)


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
        with prebooked(backend):  # _paced_call booked this call's slot
            answer = backend.lookup_by_reference(list(numbers), numbers=numbers)
        found = {r.reference: r for r in answer}
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
        outcome = result_outcome(result, attempts=attempts, now=now)
        if outcome is not None:
            outcomes[pk] = outcome
    return outcomes


def _finals_to_fetch(backend, outcomes: dict[int, Outcome]) -> dict[int, Outcome]:
    """The found messages whose fate is already final at the provider, when
    the provider can report it the way live reports do (status polling).

    A lookup answer says *what* happened but not whether the provider gave
    the credits back; its delivery report does (``StatusUpdate.refunded``).
    Those messages are recorded ``sent`` here (charged, as the provider did)
    and their reports fetched and applied like any poll's, refund included
    (:func:`_apply_fetched_finals`). Returns them; ``outcomes`` is changed
    to record them as plain ``sent``.
    """
    if not backend.supports(Capability.DLR_POLL):
        return {}  # only the lookup's status: applied as it is (see batch_record)
    finals = {pk: o for pk, o in outcomes.items() if o.status == S.SENT and o.delivery}
    for pk, outcome in finals.items():
        outcomes[pk] = dataclasses.replace(outcome, delivery="")
    return finals


def _apply_fetched_finals(campaign: Campaign, backend, finals: dict[int, Outcome]) -> None:
    """Fetch and apply the delivery reports of ``finals`` (see
    :func:`_finals_to_fetch`). When the provider cannot answer now, the
    messages stay ``sent`` and the status poll applies their reports later."""
    from campaigns.reports import statuses_apply

    phones = dict(Message.objects.filter(pk__in=list(finals)).values_list("pk", "phone"))
    refs = [
        ProviderRef(
            provider_ref=o.provider_ref,
            provider_batch_ref=o.provider_batch_ref,
            reference=message_reference(pk),
            to=phones.get(pk, ""),
        )
        for pk, o in sorted(finals.items())
    ]
    if not _paced_call(campaign, backend):
        return
    try:
        with prebooked(backend):  # _paced_call booked this call's slot
            updates = backend.fetch_statuses(refs)
    except ProviderError as exc:
        logger.warning(
            "Campaign %s: reports of recovered messages not fetched: %s", campaign.pk, exc
        )
        return
    if updates:
        statuses_apply(account=campaign.account, updates=updates)


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
    now = clock.now()
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
        finals = _finals_to_fetch(be, outcomes)
        moved = batch_record(campaign=campaign, token=token, outcomes=outcomes)
        if finals:
            _apply_fetched_finals(campaign, be, finals)
        if moved:
            total += sum(moved.values())
            summary = ", ".join(f"{n} {status}" for status, n in sorted(moved.items()))
            event(cid, "recover", detail=f"Batch {token} reconciled with the provider: {summary}.")
    return total


def stalled_campaigns(*, now: datetime | None = None) -> list[int]:
    """Campaigns ``sending`` whose lease expired over :data:`STALL_AFTER` ago
    with no wake-up due: a worker died and its watchdog run was lost too, or
    no worker ran at all. The recovery sweep (every minute) enqueues them
    again. One indexed query: cheap enough to run that often."""
    now = now or clock.now()
    return list(
        Campaign.objects.filter(status=C.SENDING)
        .filter(
            Q(dispatch_lease_until__isnull=True) | Q(dispatch_lease_until__lt=now - STALL_AFTER)
        )
        .filter(
            Q(next_dispatch_at__isnull=True) | Q(next_dispatch_at__lt=now - timedelta(minutes=1))
        )
        .values_list("pk", flat=True)
    )
