"""Pace: how fast one provider account may be called, shared by every worker.

Limits come from the account (``requests_per_second``, ``messages_per_second``;
0 = no limit of ours) and from the backend class (``max_requests_per_second``,
e.g. TransmitSMS 2 calls/s; ``min_reply_poll_interval``, e.g. SMS Everyone
60 s). The state lives in the Django cache (Redis in production, the database
cache by default), never in process memory, so all workers on all machines
share one budget.

The limiter hands out *slots*. With a rate of R calls per second, time is cut
into slots of 1/R seconds aligned on the epoch, and each slot admits one call,
made when the slot starts; a worker takes a slot with ``cache.add`` (atomic
on every cache backend: Redis ``SET NX``, a unique key on the database
cache), trying the next slot, then the ones after. So calls are at least 1/R
seconds apart and no second holds more than R of them, whatever the number
of workers and machines. The message rate works the same
way with slots of ``batch_size / messages_per_second`` seconds, each admitting
one batch; :func:`batch_size` picks batches that divide a second's quota.

A provider that answers 429 blocks the account for ``Retry-After`` seconds
(:func:`pace_block`); every worker then waits.

``_now`` and ``_sleep`` are module attributes so tests can drive the limiter
with a fake clock instead of waiting.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from django.core.cache import cache

#: Largest batch we ever send in one call, whatever the provider allows.
MAX_BATCH = 500
#: How far ahead a worker may book a slot (seconds) before giving up for now.
HORIZON = 5.0
#: Reply polls default to this interval when the backend names none.
DEFAULT_REPLY_POLL_INTERVAL = 60.0

_now = time.time
_sleep = time.sleep


@dataclass(frozen=True, slots=True)
class Limits:
    """Effective limits of one account: calls/s and messages/s (0 = none)."""

    requests_per_second: float
    messages_per_second: float
    batch_size: int
    #: Batch slots per second under the message rate (0 = no message rate).
    batches_per_second: int = 0


def limits_for(account, backend_cls) -> Limits:
    """Combine the account's limits with the backend's own.

    The batch size is what one provider call carries (``max_batch``) or,
    for a provider that takes one recipient per call (CALLR), what one
    ``send()`` may carry (``max_calls_per_send``: 25 messages in 25 paced
    calls, not one message per step), at most :data:`MAX_BATCH` and, with a message
    rate, at most one second's messages, split evenly (1,000 msg/s with
    batches of 500 → two batches per second). The engine's pacer may make a
    batch smaller still, to fit its calls in the run's time slice.
    """
    rates = [float(account.requests_per_second or 0), float(backend_cls.max_requests_per_second)]
    rps = min((r for r in rates if r > 0), default=0.0)
    mps = float(account.messages_per_second or 0)
    per_call = max(1, int(backend_cls.max_batch or 1))
    size = min(per_call, MAX_BATCH)
    if per_call == 1:
        # One recipient per call (CALLR): a batch is several calls, each
        # paced (0 = no cap on calls; a class that does not say makes one).
        calls = int(getattr(backend_cls, "max_calls_per_send", 1))
        size = min(calls, MAX_BATCH) if calls > 0 else MAX_BATCH
    size = max(1, size)
    per_second = 0
    if mps > 0:
        per_second = max(1, math.ceil(mps / size))
        size = max(1, min(size, math.floor(mps / per_second)))
    return Limits(
        requests_per_second=rps,
        messages_per_second=mps,
        batch_size=size,
        batches_per_second=per_second,
    )


def _key(account_id: int, name: str) -> str:
    return f"pace:{account_id}:{name}"


def blocked_for(account_id: int) -> float:
    """Seconds left of a provider-imposed block (429 Retry-After), else 0."""
    until = cache.get(_key(account_id, "blocked_until"))
    return max(0.0, float(until) - _now()) if until else 0.0


def pace_block(*, account_id: int, seconds: float) -> None:
    """Stop every worker calling ``account_id`` for ``seconds`` (a 429 answer)."""
    seconds = max(0.0, float(seconds))
    until = _now() + seconds
    current = cache.get(_key(account_id, "blocked_until"))
    if current is None or float(current) < until:
        cache.set(_key(account_id, "blocked_until"), until, timeout=int(seconds) + 5)


def _take_slot(name: str, rate: float, *, not_before: float, horizon: float) -> int | None:
    """Book the first free slot of a ``rate``/s limiter that starts at or
    after ``not_before`` and within ``horizon`` seconds of it; returns the
    slot number, or None when all are taken."""
    # Slot k covers [k / rate, (k + 1) / rate): dividing (not multiplying by
    # a rounded width) keeps whole-second boundaries exact for whole rates.
    # Calls start on slot boundaries only (never mid-slot), so two calls are
    # always at least 1/rate apart and no window of one second holds more
    # than ``rate`` of them.
    current = math.ceil(not_before * rate)
    hint = cache.get(f"{name}:next")
    first = max(current, int(hint)) if hint is not None else current
    last = math.floor((not_before + horizon) * rate)
    ttl = int(horizon + 1.0 / rate) + 10
    for slot in range(first, last + 1):
        if cache.add(f"{name}:{slot}", 1, timeout=ttl):
            # Only a hint (not atomic): lets the next caller skip taken slots.
            cache.set(f"{name}:next", slot + 1, timeout=ttl)
            return slot
    return None


@dataclass(frozen=True, slots=True)
class Permit:
    """The answer of :func:`pace_acquire`: go after ``wait`` seconds, or, if
    ``granted`` is false, come back after ``retry_in`` seconds."""

    granted: bool
    wait: float = 0.0
    retry_in: float = 0.0


def pace_acquire(*, account_id: int, limits: Limits, messages: int = 0) -> Permit:
    """Book one call (carrying ``messages`` messages, 0 for a poll).

    A granted permit has reserved the slots: the caller must sleep ``wait``
    (under a second unless the rate is below 1/s) and then make the call.
    The call time lies inside every slot booked for it, so each limiter
    admits at most its rate per second.
    """
    blocked = blocked_for(account_id)
    if blocked > 0:
        return Permit(granted=False, retry_in=blocked)
    limiters: list[tuple[str, float]] = []
    if messages and limits.batches_per_second > 0:
        # One slot per batch of at most ``batch_size`` messages, so a second
        # carries at most batches_per_second * batch_size <= messages_per_second.
        limiters.append((_key(account_id, "msg"), float(limits.batches_per_second)))
    if limits.requests_per_second > 0:
        limiters.append((_key(account_id, "req"), limits.requests_per_second))
    if not limiters:
        return Permit(granted=True)
    now = _now()
    horizon = _horizon(limits)
    start = now
    for _ in range(8):
        booked: list[tuple[str, float, int]] = []
        at = start
        for name, rate in limiters:
            slot = _take_slot(name, rate, not_before=at, horizon=horizon - (at - now))
            if slot is None:
                _give_back(booked)
                return Permit(granted=False, retry_in=1.0 / rate)
            booked.append((name, rate, slot))
            at = max(at, slot / rate)
        if all(slot / rate <= at < (slot + 1) / rate for _, rate, slot in booked):
            return Permit(granted=True, wait=max(0.0, at - now))
        # A later limiter pushed the call out of an earlier one's slot: give
        # the slots back and try again from that later time.
        _give_back(booked)
        start = at
        if start - now > horizon:
            break
    return Permit(granted=False, retry_in=max(0.0, start - now))


def _give_back(booked: list[tuple[str, float, int]]) -> None:
    for name, _rate, slot in booked:
        cache.delete(f"{name}:{slot}")


def _horizon(limits: Limits) -> float:
    # A limiter slower than one call per HORIZON must still be able to book
    # its next slot.
    slowest = min(
        (r for r in (limits.requests_per_second, limits.batches_per_second) if r > 0),
        default=1.0,
    )
    return max(HORIZON, 1.0 / slowest + 1.0)


def pace_wait(seconds: float) -> None:
    """Sleep inside a task's time slice (sub-second pacing)."""
    if seconds > 0:
        _sleep(seconds)


def reply_poll_due(*, account_id: int, interval: float) -> bool:
    """True at most once per ``interval`` seconds per account (atomic
    ``cache.add``), so replies are never polled faster than the provider allows."""
    interval = max(float(interval or 0), 1.0)
    return cache.add(_key(account_id, "reply_poll"), _now(), timeout=math.ceil(interval))
