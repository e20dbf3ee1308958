"""Two workers dispatching the same campaign at once (PostgreSQL, real threads)."""

from __future__ import annotations

import threading
from collections import Counter
from decimal import Decimal

import pytest
from django.db import connection, connections

from campaigns.engine import batch_claim, batch_record, batch_send, campaign_dispatch
from campaigns.models import Campaign, Message
from campaigns.services import campaign_send_now
from tests.campaigns.engine_helpers import (
    RecordingBackend,
    assert_books_balance,
    assert_campaign_consistent,
    make_campaign,
    new_phones,
)

# serial: the machine to itself, in make test's one-process pass (see the Makefile).
pytestmark = [
    pytest.mark.serial,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL: SQLite serialises writers, so there is no race to test",
    ),
]


class ThreadSafeBackend(RecordingBackend):
    max_batch = 25

    def __init__(self, **options):
        super().__init__(**options)
        self.lock = threading.Lock()

    def send(self, batch):
        with self.lock:
            return super().send(batch)


def run_workers(n: int, target) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def work(index):
        try:
            barrier.wait()
            target(index)
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return errors


@pytest.fixture
def planned(make_account, enqueue_calls):
    account = make_account(balance=Decimal("1000"), requests_per_second=0, messages_per_second=0)
    campaign = make_campaign(account=account, phones=new_phones(400))
    campaign_send_now(campaign=campaign, user=None)
    campaign_dispatch(campaign_id=campaign.pk, backend=ThreadSafeBackend(), max_batches=0)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENDING and campaign.planned
    return campaign


def test_two_workers_claiming_at_once_never_take_the_same_message(planned):
    backend = ThreadSafeBackend()
    claimed: dict[int, list[int]] = {0: [], 1: []}

    def worker(index):
        campaign = Campaign.objects.select_related("account").get(pk=planned.pk)
        while True:
            batch = batch_claim(campaign=campaign, size=25)
            if batch is None:
                return
            claimed[index] += [row[0] for row in batch.rows]
            outcomes, _ = batch_send(campaign=campaign, batch=batch, backend=backend)
            batch_record(campaign=campaign, token=batch.token, outcomes=outcomes)

    assert run_workers(2, worker) == []

    assert claimed[0] and claimed[1]  # both really worked
    assert not set(claimed[0]) & set(claimed[1])
    assert len(claimed[0]) + len(claimed[1]) == 400
    assert Counter(backend.sent.values()) == Counter({1: 400})
    assert not Message.objects.filter(campaign=planned).exclude(status="sent").exists()
    assert_campaign_consistent(planned)
    assert_books_balance(planned.account)


def test_the_dispatch_task_run_twice_at_once_sends_each_once(planned):
    backend = ThreadSafeBackend()
    states: list[str] = []

    def worker(index):
        states.append(campaign_dispatch(campaign_id=planned.pk, backend=backend).state)

    assert run_workers(2, worker) == []

    assert sorted(states) in (["busy", "done"], ["done", "done"], ["done", "idle"])
    assert Counter(backend.sent.values()) == Counter({1: 400})
    planned.refresh_from_db()
    assert planned.status == Campaign.Status.COMPLETED and planned.credits_reserved == 0
    assert_campaign_consistent(planned)
    assert_books_balance(planned.account)
