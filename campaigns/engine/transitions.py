"""The engine's own campaign status changes, each in one clearly named function.

- :func:`campaign_start_if_due`: ``scheduled`` → ``sending`` when due;
- :func:`campaign_pause_locked` / :func:`campaign_auto_pause`: ``sending`` or
  ``scheduled`` → ``paused`` (auth/credit trouble, a plan the reservation
  cannot cover);
- :func:`campaign_fail`: ``sending`` → ``failed`` (the provider refused batch
  after batch);
- :func:`campaign_complete_if_done`: ``sending`` → ``completed``.

Each goes through :func:`campaigns.states.campaign_transition` (the table
checks it, the UPDATE is conditional on the old status, the event is
written there), like a person's transitions in :mod:`campaigns.services`.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Coalesce

from campaigns.counters import counters_move
from campaigns.engine import clock
from campaigns.engine.common import C, S, credit_move, credits_of
from campaigns.models import Campaign, Message
from campaigns.states import campaign_transition

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
            campaign_transition(
                campaign=campaign,
                action="start",
                fields={
                    "started_at": Coalesce(F("started_at"), now),
                    "status_reason": "",
                    "next_dispatch_at": None,
                },
            )
    return Campaign.objects.select_related("account", "template").get(pk=campaign_id)


def campaign_pause_locked(campaign: Campaign, *, reason: str) -> None:
    """Pause a locked campaign on the engine's own initiative."""
    if campaign.status not in (C.SENDING, C.SCHEDULED):
        return
    campaign_transition(
        campaign=campaign,
        action="auto_pause",
        detail=reason[:5000],
        fields={"status_reason": reason[:500]},
    )


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
        campaign_transition(
            campaign=campaign,
            action="fail",
            detail=reason[:5000],
            fields={
                "status_reason": reason[:500],
                "finished_at": now,
                "credits_reserved": F("credits_reserved") - amount,
            },
        )


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
        campaign_transition(
            campaign=campaign,
            action="complete",
            fields={
                "finished_at": clock.now(),
                "credits_reserved": F("credits_reserved") - leftover,
                "next_dispatch_at": None,
                "status_reason": (
                    f"{campaign.unknown_count} message(s) need a decision (status unknown)."
                    if campaign.unknown_count
                    else ""
                ),
            },
        )
    return True
