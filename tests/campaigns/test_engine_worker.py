"""End to end with real ``qcluster`` workers (see worker_site): what only a
real worker shows — concurrent planning on SQLite, a killed worker, a stop."""

from __future__ import annotations

import os

import pytest

from tests.campaigns.worker_site import WorkerSite

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
