"""The dispatch lease between batches: a live heartbeat keeps it, the run
renews it itself only when the heartbeat is late, and a lease taken over
stops the run before its next claim."""

from __future__ import annotations

import functools
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.engine import campaign_dispatch
from campaigns.engine import lease as engine_lease
from campaigns.engine import run as engine_run
from campaigns.models import Campaign, Message
from tests.campaigns.engine_helpers import RecordingBackend

pytestmark = pytest.mark.django_db

HEARTBEAT = engine_lease.HEARTBEAT


@pytest.fixture
def live_heartbeat(monkeypatch):
    """Runs get a heartbeat that counts as running (the test's transaction
    hides rows from another connection, so its thread never beats here:
    HEARTBEAT seconds of real time never pass)."""
    monkeypatch.setattr(
        engine_run, "Heartbeat", functools.partial(engine_lease.Heartbeat, enabled=True)
    )


def lease_writes(queries) -> int:
    return sum(
        1
        for q in queries
        if q["sql"].startswith('UPDATE "campaigns_campaign"') and "dispatch_lease_until" in q["sql"]
    )


class ClockedBackend(RecordingBackend):
    """Each send takes ``seconds`` of the fake clock."""

    def __init__(self, clock, seconds: float, **options) -> None:
        super().__init__(**options)
        self.clock, self.seconds = clock, seconds

    def send(self, batch):
        self.clock.advance(self.seconds)
        return super().send(batch)


def test_a_live_heartbeat_keeps_the_lease_without_a_write_per_batch(sending, live_heartbeat):
    campaign = sending(200)  # 4 batches of 50
    with CaptureQueriesContext(connection) as queries:
        run = campaign_dispatch(campaign_id=campaign.pk, backend=RecordingBackend())
    assert run.state == "done" and run.batches == 4
    # Taken and released, nothing in between.
    assert lease_writes(queries.captured_queries) == 2


def test_a_late_heartbeat_is_covered_by_the_run_itself(sending, live_heartbeat, clock):
    campaign = sending(200)
    backend = ClockedBackend(clock, HEARTBEAT + 1)  # the heartbeat never got to beat
    with CaptureQueriesContext(connection) as queries:
        run = campaign_dispatch(campaign_id=campaign.pk, backend=backend)
    assert run.state == "done" and run.batches == 4
    # Taken and released; renewed before the claims of batches 2-4 and before
    # the last claim, which finds nothing left (the first claim follows the take).
    assert lease_writes(queries.captured_queries) == 2 + 4


def test_without_a_heartbeat_the_run_renews_before_every_batch(sending):
    campaign = sending(200)
    with CaptureQueriesContext(connection) as queries:
        run = campaign_dispatch(campaign_id=campaign.pk, backend=RecordingBackend())
    assert run.state == "done" and run.batches == 4
    # Before each of the 5 claims (the last finds nothing) and after the plan's
    # one chunk.
    assert lease_writes(queries.captured_queries) == 2 + 5 + 1


@pytest.mark.parametrize("heartbeat", ["late", "off"])
def test_a_lease_taken_over_stops_the_run_before_its_next_claim(
    sending, clock, monkeypatch, heartbeat
):
    if heartbeat == "late":
        monkeypatch.setattr(
            engine_run, "Heartbeat", functools.partial(engine_lease.Heartbeat, enabled=True)
        )
    campaign = sending(200)

    class TakenOver(ClockedBackend):
        def send(self, batch):
            results = super().send(batch)
            # This worker stalled past its lease; another one took it.
            Campaign.objects.filter(pk=campaign.pk).update(dispatch_token=uuid.uuid4())
            return results

    backend = TakenOver(clock, HEARTBEAT + 1)
    run = campaign_dispatch(campaign_id=campaign.pk, backend=backend)
    assert run.state == "lease_lost"
    assert len(backend.calls) == 1  # the batch in hand was recorded, no other claimed
    assert Message.objects.filter(campaign=campaign, status="sent").count() == 50
    assert Message.objects.filter(campaign=campaign, status="queued").count() == 150


def test_keep_is_false_once_the_heartbeat_lost_the_lease(sending):
    campaign = sending(10)
    token = engine_lease.lease_take(campaign.pk)
    heartbeat = engine_lease.Heartbeat(campaign.pk, token, enabled=True)
    assert heartbeat.keep()
    heartbeat.lost.set()
    with CaptureQueriesContext(connection) as queries:
        assert not heartbeat.keep()
    assert queries.captured_queries == []
