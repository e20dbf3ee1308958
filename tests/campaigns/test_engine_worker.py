"""End to end with real ``qcluster`` workers (see worker_site): what only a
real worker shows — concurrent planning on SQLite, a killed worker, a stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.campaigns.worker_site import ROOT, WorkerSite

# serial: the machine to itself, in make test's one-process pass (see the Makefile).
pytestmark = pytest.mark.serial

ON_SQLITE = not os.environ.get("DATABASE_URL", "").startswith("postgres")
ON_PG_REDIS = not ON_SQLITE and bool(os.environ.get("REDIS_URL"))


def _all_completed(ids):
    def check(state):
        return all(state[str(pk)]["status"] == "completed" for pk in ids)

    return check


@pytest.fixture
def sqlite_site(tmp_path):
    site = WorkerSite(tmp_path, backend="sqlite", workers=2)
    yield site
    site.stop()


@pytest.mark.skipif(not ON_SQLITE, reason="the SQLite + ORM broker pass runs it")
def test_two_campaigns_over_2000_recipients_sent_together_on_sqlite_both_complete(sqlite_site):
    ids = sqlite_site.setup_campaigns(n=2, size=5000)
    sqlite_site.start_worker()
    sqlite_site.send_now(ids)
    state = sqlite_site.wait_for(_all_completed(ids), timeout=150)
    assert _all_completed(ids)(state), (state, sqlite_site.logs())
    for pk in ids:
        s = state[str(pk)]
        assert s["recipients"] == 5000 and s["by_status"] == {"sent": 5000}, s


def _killed_worker_resumes(site: WorkerSite) -> None:
    """Send one campaign at 200 messages/s, SIGKILL its worker mid-way, start
    another: the campaign sends again within 90 s and ends with every
    recipient sent exactly once."""
    size = 6000
    (pk,) = site.setup_campaigns(n=1, size=size, mps=200)
    first = site.start_worker()
    site.send_now([pk])
    state = site.wait_for(lambda s: s[str(pk)]["sent"] >= 600, timeout=120, every=1)
    assert state[str(pk)]["sent"] >= 600, (state, site.logs())
    site.kill(first)
    killed_at = time.monotonic()
    sent_at_kill = site.state()[str(pk)]["sent"]
    assert sent_at_kill < size, "the campaign finished before the kill: make it slower"
    site.start_worker()
    state = site.wait_for(lambda s: s[str(pk)]["sent"] > sent_at_kill, timeout=90, every=1)
    resumed_after = time.monotonic() - killed_at
    assert state[str(pk)]["sent"] > sent_at_kill, (resumed_after, state, site.logs())
    assert resumed_after <= 90
    # The batch the dead worker held is reconciled with the simulator by
    # reference (after STALE_AFTER), never re-sent.
    state = site.wait_for(_all_completed([pk]), timeout=240, every=3)
    assert state[str(pk)]["status"] == "completed", (state, site.logs())
    assert state[str(pk)]["by_status"] == {"sent": size}, state


@pytest.mark.skipif(not ON_SQLITE, reason="the SQLite + ORM broker pass runs it")
def test_a_sigkilled_workers_campaign_resumes_within_90_s_on_the_orm_broker(tmp_path):
    site = WorkerSite(tmp_path, backend="sqlite", workers=1)
    try:
        _killed_worker_resumes(site)
    finally:
        site.stop()


@pytest.mark.skipif(not ON_PG_REDIS, reason="needs DATABASE_URL=postgres://... and REDIS_URL")
def test_a_sigkilled_workers_campaign_resumes_within_90_s_on_redis(tmp_path):
    site = WorkerSite(tmp_path, backend="postgres", workers=2)
    try:
        _killed_worker_resumes(site)
    finally:
        site.stop()


@pytest.mark.skipif(not ON_SQLITE, reason="the SQLite + ORM broker pass runs it")
def test_sigterm_to_make_run_stops_everything_within_10_s_leaving_nothing_submitting(tmp_path):
    """``make run`` ends in ``python -m smsoffice.runall``: SIGTERM to it
    while a batch is at the (slow) provider."""
    site = WorkerSite(tmp_path, backend="sqlite", workers=2)
    try:
        (pk,) = site.setup_campaigns(n=1, size=3000, latency=1.5)
        log = open(tmp_path / "runall.log", "w")  # noqa: SIM115
        runall = subprocess.Popen(
            [sys.executable, "-m", "smsoffice.runall", "--port", str(_free_port())],
            cwd=ROOT,
            env=site.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        site.procs.append(runall)
        site.send_now([pk])
        state = site.wait_for(lambda s: s[str(pk)]["sent"] >= 500, timeout=120, every=0.5)
        assert state[str(pk)]["sent"] >= 500, (state, site.logs())
        time.sleep(0.5)  # the next batch is at the provider now

        asked = time.monotonic()
        runall.send_signal(signal.SIGTERM)
        runall.wait(timeout=30)
        took = time.monotonic() - asked
        time.sleep(0.5)
        leftovers = subprocess.run(
            ["pgrep", "-f", str(tmp_path)], capture_output=True, text=True
        ).stdout.split()

        state = site.state()[str(pk)]
        assert took <= 10, (took, site.logs())
        assert leftovers == [], leftovers
        assert "submitting" not in state["by_status"], (state, site.logs())
        assert state["by_status"].get("sent", 0) + state["by_status"].get("queued", 0) == 3000
    finally:
        site.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
