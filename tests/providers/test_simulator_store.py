"""The simulator keeps its state in the database, not the cache: with a cache
that holds 300 entries (the issue's DatabaseCache default), a 5,000-recipient
send keeps its balance and every reference kept for crash reconciliation."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import override_settings

from providers.backends.base import OutboundSms
from providers.simulator_store import SimulatorStore

pytestmark = pytest.mark.django_db

SMALL_CACHE = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "tiny",
        "OPTIONS": {"MAX_ENTRIES": 300, "CULL_FREQUENCY": 3},
    }
}


@override_settings(CACHES=SMALL_CACHE)
def test_a_5000_recipient_send_never_runs_out_of_simulated_credit(make_account):
    account = make_account(name="Demo", credentials={"seed": 3, "reply_rate": 0})
    backend = account.get_backend()
    backend.top_up(Decimal(6000))
    batch_size = backend.max_batch
    messages = [
        OutboundSms(reference=f"m{i}", to=f"+614{i:08d}", body="Hello") for i in range(5000)
    ]
    accepted = 0
    for start in range(0, len(messages), batch_size):
        results = backend.send(messages[start : start + batch_size])
        accepted += sum(1 for r in results if r.accepted)
    assert accepted == 5000
    assert backend.balance() == Decimal(1000)
    # The first references are still known (crash reconciliation).
    found = backend.lookup_by_reference(["m0", "m1", "m2"])
    assert sorted(r.reference for r in found) == ["m0", "m1", "m2"]


def test_the_store_behaves_like_the_cache_it_replaces():
    store = SimulatorStore()
    assert store.get("k") is None and store.get("k", 5) == 5
    store.set("k", {"a": [1, 2]})
    assert store.get("k") == {"a": [1, 2]}
    assert store.add("k", 9) is False and store.get("k") == {"a": [1, 2]}
    assert store.add("new", 1) is True
    store.set_many({"x": 1, "y": "2"})
    assert store.get_many(["x", "y", "missing"]) == {"x": 1, "y": "2"}
    store.delete_many(["x", "k"])
    assert store.get_many(["x", "k", "y"]) == {"y": "2"}


def test_an_expired_entry_reads_as_missing_and_can_be_added_again():
    store = SimulatorStore()
    store.set("old", 1, timeout=-1)
    assert store.get("old") is None
    assert store.add("old", 2) is True
    assert store.get("old") == 2
