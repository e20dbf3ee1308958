"""Fault test: a 20,000-row import never locks out dispatch or webhooks (SQLite).

The scenario (tests/contacts/fault_import_scenario.py) runs in a child
process on a SQLite file in WAL mode with the project's settings; the test
database here is in memory and cannot show writers queueing on a file.
Before the import was split into short transactions, the import held one
write transaction for the whole file and the others failed after the 20 s
busy timeout ("database is locked"), or planning failed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

SCENARIO = Path(__file__).with_name("fault_import_scenario.py")

# serial: the machine to itself, in make test's one-process pass (see the Makefile).
pytestmark = pytest.mark.serial


@pytest.mark.skipif(
    connection.vendor != "sqlite", reason="the scenario is about SQLite's single writer"
)
def test_import_while_a_campaign_dispatches_and_webhooks_arrive():
    done = subprocess.run(
        [sys.executable, str(SCENARIO)], capture_output=True, text=True, timeout=540, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["errors"] == []
    assert "database is locked" not in done.stderr
    # Every webhook answered 200 and was applied.
    assert result["webhook_answers"] == [200] and result["webhooks_sent"] == 300
    assert result["delivered"] == 300
    # The campaign was planned in full and handed over while the import ran.
    assert result["campaign_planned"] is True
    assert result["campaign_recipients"] == result["campaign_messages"] == 2000
    assert result["campaign_queued"] == 0
    assert result["campaign_status"] in ("sending", "completed")
    # And the import went in whole.
    assert result["import_status"] == ["done"] and result["imported"] == 20000
