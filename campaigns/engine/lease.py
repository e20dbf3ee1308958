"""The dispatch lease: one worker at a time dispatches a campaign.

Taken with a conditional UPDATE; it expires on its own, so a dead worker
never blocks the campaign, and a task delivered twice finds the lease taken
and leaves.

The lease is short (:data:`LEASE`) and a live run keeps it with a
:class:`Heartbeat` (a thread that renews it every :data:`HEARTBEAT` seconds,
whatever the run is doing: planning a million recipients, waiting on a slow
provider). So a lease that has expired means its worker is gone, and the
campaign can be taken over within seconds (see :mod:`campaigns.engine.run`).
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import timedelta

from django.db import DatabaseError, connection
from django.db.models import Q

from campaigns.engine import clock
from campaigns.models import Campaign

logger = logging.getLogger("campaigns.engine")

#: The dispatch lease; renewed by the run's heartbeat (:meth:`Heartbeat.keep`).
LEASE = timedelta(seconds=30)
#: Seconds between two heartbeats: a third of the lease, so two can be late.
HEARTBEAT = 10.0


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


class Heartbeat:
    """Keeps a run's lease alive from a background thread.

    ``with Heartbeat(campaign_id, token):`` renews the lease every
    :data:`HEARTBEAT` seconds until the block ends; :attr:`lost` is set when
    the lease was taken over (the run must stop claiming). The thread uses its
    own database connection and closes it. Off (``enabled=False``) inside an
    outer transaction, where another connection could not see the run's rows
    (the test suite); the run then renews before every batch (:meth:`keep`).
    """

    def __init__(self, campaign_id: int, token: uuid.UUID, *, enabled: bool | None = None):
        self.campaign_id = campaign_id
        self.token = token
        self.enabled = (not connection.in_atomic_block) if enabled is None else enabled
        self.lost = threading.Event()
        #: ``clock.monotonic()`` of the last renewal (the lease was just taken).
        self.renewed_at = clock.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        if self.enabled:
            self._thread = threading.Thread(
                target=self._beat, name=f"lease-heartbeat-{self.campaign_id}", daemon=True
            )
            self._thread.start()
        return self

    def keep(self) -> bool:
        """Before a batch: False when the lease is lost (stop claiming).

        Renews it from the run's own thread only when the heartbeat is off,
        or has not renewed it for :data:`HEARTBEAT` seconds (a failed beat).
        A live heartbeat keeps it otherwise: a renewal per batch was one more
        statement and one more commit (a WAL flush) per 500 messages, ~4 % of
        a PostgreSQL dispatch, and guarded nothing the heartbeat does not: a
        lease is only taken over once it has expired, three beats late.
        """
        if self.lost.is_set():
            return False
        if self.enabled and clock.monotonic() - self.renewed_at < HEARTBEAT:
            return True
        if not lease_renew(self.campaign_id, self.token):
            self.lost.set()
            return False
        self.renewed_at = clock.monotonic()
        return True

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=HEARTBEAT)

    def _beat(self) -> None:
        from django.db import connections

        try:
            while not self._stop.wait(HEARTBEAT):
                try:
                    if not lease_renew(self.campaign_id, self.token):
                        self.lost.set()
                        return
                    self.renewed_at = clock.monotonic()
                except DatabaseError as exc:
                    # One missed beat is survivable (the lease lasts three).
                    logger.warning("Campaign %s: heartbeat failed: %s", self.campaign_id, exc)
        finally:
            connections.close_all()
