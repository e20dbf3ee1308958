"""The shared rate limiter (cache slots), driven by a virtual clock."""

from __future__ import annotations

import itertools
from collections import Counter
from decimal import Decimal
from types import SimpleNamespace

import pytest

from campaigns import pacing
from campaigns.pacing import Limits, limits_for, pace_acquire, pace_block, reply_poll_due

pytestmark = pytest.mark.django_db


def backend_cls(max_batch=500, rps=0.0):
    return SimpleNamespace(max_batch=max_batch, max_requests_per_second=rps)


def account(rps="5", mps=100):
    return SimpleNamespace(requests_per_second=Decimal(rps), messages_per_second=mps)


@pytest.mark.parametrize(
    ("acct", "cls", "expected"),
    [
        (account("5", 100), backend_cls(500), Limits(5.0, 100.0, 100, 1)),
        (account("5", 1000), backend_cls(500), Limits(5.0, 1000.0, 500, 2)),
        (account("5", 150), backend_cls(100), Limits(5.0, 150.0, 75, 2)),
        (account("0", 0), backend_cls(500), Limits(0.0, 0.0, 500, 0)),
        # The provider's own cap wins over a looser account setting (TransmitSMS 2/s).
        (account("10", 0), backend_cls(500, rps=2), Limits(2.0, 0.0, 500, 0)),
        (account("0", 0), backend_cls(500, rps=2), Limits(2.0, 0.0, 500, 0)),
        (account("1", 0), backend_cls(5000), Limits(1.0, 0.0, 500, 0)),
    ],
)
def test_limits_combine_account_and_provider(acct, cls, expected):
    assert limits_for(acct, cls) == expected


def call_times(clock, limits, *, calls, messages=0, workers=1):
    """Make ``calls`` calls from ``workers`` interleaved callers, honouring
    every permit; returns the virtual times the calls were made."""
    times = []
    while len(times) < calls:
        for _ in range(workers):
            permit = pace_acquire(account_id=1, limits=limits, messages=messages)
            if permit.granted:
                pacing.pace_wait(permit.wait)
                times.append(clock.time())
            else:
                clock.advance(permit.retry_in)
    return times


def per_second(times):
    return Counter(int(t) for t in times)


def max_in_any_second(times):
    """Most calls in any sliding one-second window [t, t + 1)."""
    return max(sum(1 for u in times if t <= u < t + 1 - 1e-9) for t in times)


def test_request_rate_is_never_exceeded_in_any_second(clock):
    times = call_times(clock, Limits(2.0, 0.0, 500, 0), calls=20, workers=3)
    assert max(per_second(times).values()) == 2
    assert max_in_any_second(times) == 2
    assert all(b - a >= 0.5 - 1e-9 for a, b in itertools.pairwise(times))


def test_message_rate_caps_batches_per_second(clock):
    limits = Limits(0.0, 1000.0, 500, 2)
    times = call_times(clock, limits, calls=12, messages=500, workers=4)
    assert max(per_second(times).values()) == 2  # 2 x 500 = the 1,000 msg/s
    assert max_in_any_second(times) == 2


def test_both_limits_hold_together(clock):
    limits = Limits(3.0, 200.0, 100, 2)
    times = call_times(clock, limits, calls=15, messages=100, workers=2)
    assert max(per_second(times).values()) <= 2  # the message rate is the tighter one


def test_a_429_blocks_every_worker_for_retry_after(clock):
    pace_block(account_id=1, seconds=7)
    permit = pace_acquire(account_id=1, limits=Limits(5.0, 0.0, 500, 0))
    assert not permit.granted and permit.retry_in == pytest.approx(7)
    clock.advance(7.01)
    assert pace_acquire(account_id=1, limits=Limits(5.0, 0.0, 500, 0)).granted


def test_no_limits_means_no_waiting(clock):
    permit = pace_acquire(account_id=1, limits=Limits(0.0, 0.0, 500, 0), messages=500)
    assert permit.granted and permit.wait == 0 and clock.sleeps == []


def test_reply_polls_at_most_once_per_interval(clock):
    assert reply_poll_due(account_id=9, interval=60)
    assert not reply_poll_due(account_id=9, interval=60)
    assert reply_poll_due(account_id=10, interval=60)  # per account
