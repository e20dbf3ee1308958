"""A stateful fake provider on ``httpx.MockTransport``, shared by backend tests.

A test (or a contract profile) gives it routes, one per ``(method, path)``;
each route is a function ``(request, fake) -> httpx.Response`` that may read
and change the fake's state (messages it holds, opt-outs, balance...). On top
of the routes, faults can be scripted for the next calls of some paths (an
HTTP 429 with Retry-After, a 5xx, a read timeout, a connection failure), so
every backend is tried against the same failures. Every request is recorded
with its time, so tests can count calls per path and calls per second.

    fake = FakeProvider(base_path="/v1")
    fake.route("POST", "/message/send", accept_one)
    fake.fail("/message/send", rate_limit(retry_after=7))   # the next send only
    backend = TheSmsWorksBackend(credentials=..., transport=fake.transport)

Nothing here knows a provider: the payloads are the provider docs' own and
live in each backend's tests or contract profile.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

Route = Callable[[httpx.Request, "FakeProvider"], httpx.Response]
#: A scripted failure: a response to return, or an exception to raise
#: (``httpx.ReadTimeout``, ``httpx.ConnectError``) as the transport would.
Fault = Callable[[httpx.Request], httpx.Response]


def rate_limit(retry_after: float = 7, body: Any = None) -> Fault:
    """HTTP 429 with ``Retry-After`` (seconds)."""
    return lambda request: httpx.Response(
        429,
        json=body if body is not None else {"message": "Too many requests"},
        headers={"Retry-After": str(retry_after)},
    )


def unavailable(status: int = 503, body: Any = None) -> Fault:
    """A 5xx answer."""
    return lambda request: httpx.Response(
        status, json=body if body is not None else {"message": "Service unavailable"}
    )


def read_timeout() -> Fault:
    """The request went out; no answer came back in time."""

    def fault(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("simulated read timeout", request=request)

    return fault


def connect_error() -> Fault:
    """The request never left (connection refused)."""

    def fault(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("simulated connection refused", request=request)

    return fault


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Fault:
    """A fixed answer (a documented error body, say)."""
    return lambda request: httpx.Response(status, json=body, headers=headers)


@dataclass
class Call:
    """One request the fake received."""

    method: str
    path: str  # without ``base_path``
    request: httpx.Request
    at: float  # time.monotonic() when it arrived

    @property
    def json(self) -> Any:
        return json.loads(self.request.content) if self.request.content else None

    @property
    def form(self) -> dict[str, str]:
        return dict(httpx.QueryParams(self.request.content.decode()))


@dataclass
class FakeProvider:
    """A provider in memory. ``state`` is free for routes to use;
    ``accepted`` is the conventional list of destinations the provider took
    (routes append to it), so tests can check "every recipient exactly once"."""

    base_path: str = ""
    routes: dict[tuple[str, str], Route] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    accepted: list[str] = field(default_factory=list)
    _faults: list[tuple[frozenset[str], int, Fault]] = field(default_factory=list)
    _ids: int = 0

    # ----------------------------------------------------------- set-up
    def route(self, method: str, path: str, handler: Route) -> None:
        self.routes[(method.upper(), path)] = handler

    def fail(self, paths: str | Iterable[str], fault: Fault, *, after: int = 0) -> None:
        """The call to one of ``paths`` that comes after ``after`` successful
        calls to them gets ``fault`` instead of its route (once)."""
        wanted = frozenset([paths] if isinstance(paths, str) else paths)
        self._faults.append((wanted, after, fault))

    def next_id(self, prefix: str = "") -> str:
        self._ids += 1
        return f"{prefix}{self._ids}"

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    # ----------------------------------------------------------- serving
    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if self.base_path and path.startswith(self.base_path):
            path = path[len(self.base_path) :] or "/"
        self.calls.append(Call(request.method, path, request, time.monotonic()))
        for index, (paths, after, fault) in enumerate(self._faults):
            if path in paths:
                if after <= 0:
                    del self._faults[index]
                    return fault(request)
                self._faults[index] = (paths, after - 1, fault)
        handler = self.routes.get((request.method, path))
        if handler is None:
            return httpx.Response(404, json={"message": f"no route {request.method} {path}"})
        return handler(request, self)

    # ----------------------------------------------------------- reading
    def calls_to(self, *paths: str) -> list[Call]:
        return [call for call in self.calls if call.path in paths]

    def max_calls_per_second(self, *paths: str) -> int:
        """The most calls to ``paths`` (all when none given) that arrived
        within any one second."""
        times = [c.at for c in self.calls if not paths or c.path in paths]
        best = 0
        start = 0
        for end, at in enumerate(times):
            while at - times[start] >= 1.0:
                start += 1
            best = max(best, end - start + 1)
        return best

    def accepted_counts(self) -> Counter[str]:
        return Counter(self.accepted)


class ScriptedApi:
    """A MockTransport handler that answers from a script, in order, and records
    every request: an exception is raised, a callable is called with the
    request, an ``httpx.Response`` is returned as it is, anything else is the
    JSON body of a 200. Backend tests subclass it with a ``calls`` property
    that checks their provider's envelope."""

    def __init__(self, *responses):
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        item = self.responses.pop(0)
        if isinstance(item, Exception):
            raise item
        if callable(item):
            return item(request)
        if isinstance(item, httpx.Response):
            return item
        return httpx.Response(200, json=item)
