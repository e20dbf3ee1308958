"""The engine's own campaign status changes, each in one clearly named function.

- :func:`campaign_start_if_due`: ``scheduled`` → ``sending`` when due;
- :func:`campaign_pause_locked` / :func:`campaign_auto_pause`: ``sending`` or
  ``scheduled`` → ``paused`` (auth/credit trouble, a plan the reservation
  cannot cover);
- :func:`campaign_fail`: ``sending`` → ``failed`` (the provider refused batch
  after batch);
- :func:`campaign_complete_if_done`: ``sending`` → ``completed``.

A person's transitions (send, pause, resume, cancel) live in
:mod:`campaigns.services`.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Coalesce

from campaigns.counters import counters_move
from campaigns.engine import clock
from campaigns.engine.common import C, S, credit_move, credits_of, event
from campaigns.models import Campaign, Message

logger = logging.getLogger("campaigns.engine")


def campaign_start_if_due(campaign_id: int) -> Campaign | None:
    """``scheduled`` → ``sending`` when its time has come; returns the campaign."""
    now = clock.now()
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
            event(campaign_id, "start", from_status=C.SCHEDULED, to_status=C.SENDING)
    return Campaign.objects.select_related("account", "template").get(pk=campaign_id)


def campaign_pause_locked(campaign: Campaign, *, reason: str) -> None:
    """Pause a locked campaign on the engine's own initiative."""
    if campaign.status not in (C.SENDING, C.SCHEDULED):
        return
    Campaign.objects.filter(pk=campaign.pk).update(status=C.PAUSED, status_reason=reason[:500])
    event(campaign.pk, "auto_pause", from_status=campaign.status, to_status=C.PAUSED, detail=reason)
    campaign.status = C.PAUSED


def campaign_auto_pause(*, campaign_id: int, reason: str) -> None:
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        campaign_pause_locked(campaign, reason=reason)


def campaign_fail(*, campaign_id: int, reason: str) -> None:
    """``sending`` → ``failed``: the rest of the queue fails, credits released."""
    now = clock.now()
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
        credit_move("release", campaign=campaign, amount=amount, key=f"release:fail:{campaign_id}")
        Campaign.objects.filter(pk=campaign_id).update(
            status=C.FAILED,
            status_reason=reason[:500],
            finished_at=now,
            credits_reserved=F("credits_reserved") - amount,
        )
        event(campaign_id, "fail", from_status=C.SENDING, to_status=C.FAILED, detail=reason)


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
            credit_move(
                "release", campaign=campaign, amount=leftover, key=f"release:complete:{campaign_id}"
            )
        Campaign.objects.filter(pk=campaign_id).update(
            status=C.COMPLETED,
            finished_at=clock.now(),
            credits_reserved=F("credits_reserved") - leftover,
            next_dispatch_at=None,
            status_reason=(
                f"{campaign.unknown_count} message(s) need a decision (status unknown)."
                if campaign.unknown_count
                else ""
            ),
        )
        event(campaign_id, "complete", from_status=C.SENDING, to_status=C.COMPLETED)
    return True
