"""The engine's pacer: the hook a backend calls before every provider call.

``SmsBackend.request()`` calls ``backend.pacer(operation)`` immediately
before each HTTP call (see ``providers.backends.base.Pacer``), so the
account's requests-per-second limit holds per *call*, however many calls one
batch needs (a personalised campaign on The SMS Works makes one call per
distinct text). The limiter itself is :mod:`campaigns.pacing` (slots booked
in the shared cache, so every worker on every machine shares one budget).

Before each call the pacer, in this order:

1. refuses at once while the account is blocked by a provider's 429
   (``ProviderError`` kind ``rate_limit`` with the time left as
   ``retry_after``): nobody calls inside a Retry-After window;
2. books the next request slot and sleeps until it, or, when the slot is
   further away than the run may wait, refuses (kind ``deferred``);
3. after that wait, checks again that the account is not blocked and that
   the campaign is still ``sending``: a pause lets no further call out.

A refusal means the call was never made: the backend reports its messages
``NOT_ATTEMPTED`` (no attempt counted) and the engine re-queues them.

The dispatch step books the first call of each batch itself, together with
the message-rate slot (:meth:`CallPacer.prebooked`), so a backend that makes
one call per batch waits exactly once.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator

import httpx

from campaigns import pacing
from campaigns.engine import clock
from campaigns.engine.batch import BACKOFF_BASE
from campaigns.engine.common import MAX_INLINE_WAIT, C
from campaigns.models import Campaign
from providers.backends.base import ErrorKind, ProviderError, parse_retry_after

#: Seconds of calls the first batch of a run may need, at one call per message.
PROBE_SECONDS = 10.0


class CallPacer:
    """Paces every provider call of one dispatch run (see the module docstring).

    ``deadline`` (``clock.monotonic()`` seconds) is when the run must have
    stopped starting calls; a slot beyond it is refused, so a batch of many
    calls ends inside the run's time slice and its rest goes to the next run.
    """

    def __init__(
        self,
        *,
        campaign_id: int | None,
        account_id: int,
        limits: pacing.Limits,
        deadline: float,
        stopping: threading.Event | None = None,
    ) -> None:
        #: Set when the worker shuts down: no call starts any more.
        self.stopping = stopping
        self.campaign_id = campaign_id
        self.account_id = account_id
        self.limits = limits
        self.deadline = deadline
        #: Calls let through since the last :meth:`prebooked` block began.
        self.calls = 0
        #: Provider calls per message of the last batch (None: not known yet).
        self.calls_per_message: float | None = None
        self._prebooked = False

    def batch_size(self, *, limit: int, seconds_left: float, max_calls: int = 0) -> int:
        """How many messages the next batch may carry so that its calls fit
        in ``seconds_left`` at the account's request rate (and in the
        backend's ``max_calls`` per send): a run then always ends inside its
        time slice. Until a batch has shown how many calls a message costs,
        a probe of :data:`PROBE_SECONDS` of calls at one call per message."""
        rate = self.limits.requests_per_second
        if rate <= 0:
            return limit
        per_message = self.calls_per_message
        seconds = max(1.0, seconds_left) if per_message is not None else PROBE_SECONDS
        calls = rate * seconds
        if max_calls:
            calls = min(calls, max_calls)
        return max(1, min(limit, math.floor(calls / (per_message or 1.0))))

    def measured(self, *, messages: int) -> None:
        """Record the calls the last batch of ``messages`` messages made."""
        if messages > 0 and self.calls > 0:
            self.calls_per_message = self.calls / messages

    def attach(self, backend) -> None:
        """Install on ``backend``: it asks this pacer before every call, and
        every HTTP answer of its client is watched for a 429, which blocks
        the whole account for its Retry-After at once (every worker, the
        rest of this batch included), before the backend even reads it."""
        backend.pacer = self
        client = getattr(backend, "client", None)
        if isinstance(client, httpx.Client) and not getattr(client, "_smsoffice_watched", False):

            def watch(response: httpx.Response) -> None:
                # Whichever pacer is installed now: a backend instance may
                # be reused for several accounts (the polling tasks).
                pacer = getattr(backend, "pacer", None)
                if isinstance(pacer, CallPacer):
                    pacer._observe(response)

            hooks = client.event_hooks
            hooks["response"] = [*hooks.get("response", []), watch]
            client.event_hooks = hooks
            client._smsoffice_watched = True

    def _observe(self, response: httpx.Response) -> None:
        if response.status_code == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            pacing.pace_block(
                account_id=self.account_id,
                seconds=retry_after if retry_after is not None else BACKOFF_BASE,
            )

    @contextlib.contextmanager
    def prebooked(self) -> Iterator[CallPacer]:
        """The caller has already booked (and waited for) the next call's
        slot: the first call inside the block uses it. Counts the calls."""
        self._prebooked = True
        self.calls = 0
        try:
            yield self
        finally:
            self._prebooked = False

    def __call__(self, operation: str) -> None:
        if self.stopping is not None and self.stopping.is_set():
            raise ProviderError(
                f"Not sent: the worker is stopping ({operation}); queued for the next one.",
                kind=ErrorKind.DEFERRED,
            )
        self._refuse_if_blocked(operation)
        if self._prebooked:
            self._prebooked = False
        else:
            while True:
                permit = pacing.pace_acquire(account_id=self.account_id, limits=self.limits)
                if permit.granted:
                    self._wait(permit.wait, operation, inline_cap=None)
                    break
                self._refuse_if_blocked(operation)
                self._wait(permit.retry_in, operation, inline_cap=MAX_INLINE_WAIT)
            self._refuse_if_blocked(operation)
            if operation == "send" and self.campaign_id is not None:
                status = (
                    Campaign.objects.filter(pk=self.campaign_id)
                    .values_list("status", flat=True)
                    .first()
                )
                if status != C.SENDING:
                    raise ProviderError(
                        f"Not sent: the campaign is {status} (checked before the call).",
                        kind=ErrorKind.DEFERRED,
                    )
        self.calls += 1

    def _wait(self, seconds: float, operation: str, *, inline_cap: float | None) -> None:
        """Sleep ``seconds`` inside the run, or refuse the call if that goes
        past the run's deadline (or ``inline_cap``, for a retry)."""
        left = self.deadline - clock.monotonic()
        cap = left if inline_cap is None else min(inline_cap, left)
        if seconds > cap:
            raise ProviderError(
                f"Not sent now: the account's request rate has no free slot within "
                f"{max(cap, 0.0):.1f} s ({operation}).",
                kind=ErrorKind.DEFERRED,
                retry_after=seconds,
            )
        pacing.pace_wait(seconds)

    def _refuse_if_blocked(self, operation: str) -> None:
        blocked = pacing.blocked_for(self.account_id)
        if blocked > 0:
            raise ProviderError(
                f"Not sent: the provider asked us to wait {blocked:.1f} s more "
                f"(Retry-After) before calling again ({operation}).",
                kind=ErrorKind.RATE_LIMIT,
                retry_after=blocked,
            )


def prebooked(backend) -> contextlib.AbstractContextManager:
    """``backend.pacer.prebooked()`` when the engine's pacer is installed on
    ``backend``, else a no-op: for callers that book a call's slot themselves."""
    pacer = getattr(backend, "pacer", None)
    if isinstance(pacer, CallPacer):
        return pacer.prebooked()
    return contextlib.nullcontext()
