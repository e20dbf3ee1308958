"""django-q2 entry points. Each takes ids (or nothing), calls services, and
returns a short summary that django-q2 stores with the task.

Periodic ones are scheduled by ``manage.py sync_schedules`` (see
:data:`PERIODIC`); ``dispatch_campaign`` is enqueued by the services and by
itself (see :mod:`campaigns.engine`).
"""

from __future__ import annotations

import logging

from django.utils import timezone

from campaigns.engine import (
    POLL_SLICE,
    batches_recover,
    campaign_dispatch,
    dispatch_note,
    enqueue_dispatch,
    replies_poll,
    stalled_campaigns,
    statuses_poll,
)
from campaigns.models import Campaign

logger = logging.getLogger("campaigns.tasks")

#: Task name -> (function path, minutes between runs).
PERIODIC: dict[str, tuple[str, int]] = {
    "smsoffice: start scheduled campaigns": ("campaigns.tasks.start_scheduled_campaigns", 1),
    "smsoffice: poll delivery statuses": ("campaigns.tasks.poll_statuses", 1),
    "smsoffice: poll replies": ("campaigns.tasks.poll_replies", 1),
    # Every minute: the backstop that restarts a campaign nobody dispatches.
    "smsoffice: recover stuck batches": ("campaigns.tasks.recover_stuck_batches", 1),
    # Numbers on a provider's own opt-out list become local opt-outs.
    "smsoffice: sync provider opt-outs": ("campaigns.provider_optouts.sync_provider_optouts", 60),
    # Unicode / international / time zone as the provider says (quote checks).
    "smsoffice: refresh provider account settings": (
        "providers.tasks.refresh_account_settings",
        360,
    ),
    # Reports drift between our ledger and provider balances; never overwrites.
    "smsoffice: reconcile provider balances": ("providers.tasks.reconcile_balances", 60),
    # Provider top-ups left open by a crash: recorded when the provider confirmed
    # them, otherwise handed to a person (never guessed).
    "smsoffice: reconcile provider top-ups": ("providers.tasks.reconcile_topup_intents", 5),
}


def dispatch_campaign(campaign_id: int) -> str:
    """Send the next batches of one campaign (see campaigns.engine.run)."""
    run = campaign_dispatch(campaign_id=int(campaign_id))
    return f"{run.state}: {run.batches} batches, {run.sent} sent, {run.skipped} skipped"


def start_scheduled_campaigns() -> int:
    """Enqueue a dispatch for every scheduled campaign whose time has come."""
    due = list(
        Campaign.objects.filter(
            status=Campaign.Status.SCHEDULED, scheduled_at__lte=timezone.now()
        ).values_list("pk", flat=True)
    )
    for pk in due:
        enqueue_dispatch(pk)
    return len(due)


def recover_stuck_batches() -> int:
    """Reconcile batches whose worker died, and restart campaigns nobody is
    dispatching (a lost task). Returns how many messages were reconciled."""
    reconciled = batches_recover()
    for pk in stalled_campaigns():
        logger.info("Campaign %s is sending but no worker has it; enqueueing.", pk)
        dispatch_note(
            pk,
            "Stalled: no worker was dispatching it (its worker stopped or its task was "
            "lost); the recovery sweep restarted it.",
        )
        enqueue_dispatch(pk)
    return reconciled


def poll_statuses(*, backend=None, time_budget: float = POLL_SLICE) -> int:
    """Poll delivery statuses (see campaigns.engine.polling.statuses_poll)."""
    return statuses_poll(backend=backend, time_budget=time_budget)


def poll_replies(*, backend=None) -> int:
    """Poll replies (see campaigns.engine.polling.replies_poll)."""
    return replies_poll(backend=backend)
