"""The dispatch lease: one worker at a time dispatches a campaign.

Taken with a conditional UPDATE; it expires on its own, so a dead worker
never blocks the campaign, and a task delivered twice finds the lease taken
and leaves.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.db.models import Q

from campaigns.engine import clock
from campaigns.models import Campaign

#: The dispatch lease; renewed before every batch.
LEASE = timedelta(seconds=100)


def lease_take(campaign_id: int) -> uuid.UUID | None:
    token, now = uuid.uuid4(), clock.now()
    taken = (
        Campaign.objects.filter(pk=campaign_id)
        .filter(Q(dispatch_lease_until__isnull=True) | Q(dispatch_lease_until__lte=now))
        .update(dispatch_token=token, dispatch_lease_until=now + LEASE)
    )
    return token if taken else None


def lease_renew(campaign_id: int, token: uuid.UUID) -> bool:
    return bool(
        Campaign.objects.filter(pk=campaign_id, dispatch_token=token).update(
            dispatch_lease_until=clock.now() + LEASE
        )
    )


def lease_release(campaign_id: int, token: uuid.UUID) -> None:
    # An expired lease, not NULL: it records when a worker last dispatched.
    Campaign.objects.filter(pk=campaign_id, dispatch_token=token).update(
        dispatch_token=None, dispatch_lease_until=clock.now()
    )
