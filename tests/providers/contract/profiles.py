"""What the contract test needs to know of each backend: a *profile*.

One module per backend, ``profile_<key>.py`` next to this one, defines a
:class:`ContractProfile` subclass decorated with :func:`register`; the
contract tests load them all and fail for a backend of
``settings.SMS_BACKENDS`` that has none. A profile builds the backend wired
to a :class:`~tests.providers.contract.fakes.FakeProvider` that behaves as
the provider's doc says (routes answering with the doc's payloads).

The profile interface, what a contributor writes (test_contract.py and
test_contract_reports.py call nothing else):

Sending (test_contract.py)
    ``key``, ``numbers``, ``send_paths``, ``base_path``, ``credentials``;
    :meth:`~ContractProfile.install` (the routes), :meth:`~ContractProfile.backend`,
    :meth:`~ContractProfile.refuse` (a number refused alone); optionally
    :meth:`~ContractProfile.fault` (the provider's own error bodies),
    :meth:`~ContractProfile.accepted`.

Delivery statuses (test_contract_reports.py), by each channel the backend
has (capability ``dlr_poll`` → case ``status_poll``, ``dlr_webhook`` →
``status_webhook``)
    ``statuses``: every status the doc lists, as the provider writes it,
    with the status of our vocabulary it must map to;
    ``undocumented_status``: a code the doc does not list (kept raw);
    :meth:`~ContractProfile.report_status` (the fake answers that status
    for a sent message when polled);
    :meth:`~ContractProfile.status_webhook` (the provider's webhook call
    reporting it, a :class:`Hook`).

Replies (capability ``replies_poll`` → ``reply_poll``, ``replies_webhook``
→ ``reply_webhook``)
    :meth:`~ContractProfile.add_reply` (the fake holds a reply for the next
    poll), :meth:`~ContractProfile.reply_webhook` (the provider's call);
    ``reply_time_zone``: the zone the provider writes reply times in (where
    the account has a setting, :meth:`~ContractProfile.backend` builds the
    backend with that zone, one that is not UTC);
    ``webhook_reply_times``: False when the provider's reply webhook carries
    no time (we stamp it on arrival).

Webhook verification (case ``signature``)
    :meth:`~ContractProfile.sign` (a signed copy of a hook) and
    ``signing_credentials`` (what the account needs to check it), for a
    provider that signs its calls.

A case a backend's channel cannot show is in ``not_applicable`` with the
reason from the provider's doc; a missing channel without a reason fails
(say why, or implement it).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar
from urllib.parse import urlencode

import pytest

from providers.backends.base import DeliveryStatus, OutboundSms, SendResult, SmsBackend
from tests.providers.contract import fakes
from tests.providers.contract.fakes import FakeProvider

PROFILES: dict[str, type[ContractProfile]] = {}

#: The faults :meth:`ContractProfile.fail_send` can script.
FAULTS = ("rate_limit", "unavailable", "timeout", "connect")


@dataclass(frozen=True)
class Hook:
    """One webhook call as the provider makes it: a GET with ``query`` or a
    POST with ``body``."""

    method: str = "POST"
    body: bytes = b""
    query: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def request(self, rf, path: str = "/hooks/x/"):
        """A Django request for ``backend.parse_webhook`` (``rf``: RequestFactory)."""
        extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in self.headers.items()}
        if self.method == "GET":
            return rf.get(path, self.query, **extra)
        return rf.post(path, self.body, content_type=self.content_type, **extra)

    def send(self, client, path: str):
        """Make the call to our webhook view with the test ``client``."""
        if self.method == "GET":
            return client.get(f"{path}?{urlencode(self.query)}", headers=self.headers)
        return client.post(path, self.body, content_type=self.content_type, headers=self.headers)


def register(cls: type[ContractProfile]) -> type[ContractProfile]:
    PROFILES[cls.key] = cls
    return cls


def load_profiles() -> dict[str, type[ContractProfile]]:
    """Import every ``profile_*`` module of this package (they register)."""
    package = importlib.import_module(__package__)
    for module in pkgutil.iter_modules(package.__path__):
        if module.name.startswith("profile_"):
            importlib.import_module(f"{__package__}.{module.name}")
    return PROFILES


class ContractProfile:
    """One backend as the contract test drives it. A fresh instance per test."""

    #: The backend's key in ``settings.SMS_BACKENDS``.
    key: ClassVar[str] = ""
    #: Destinations the provider accepts (E.164); the test uses the first few.
    numbers: ClassVar[tuple[str, ...]] = tuple(f"+4477009000{i:02d}" for i in range(1, 20))
    #: Cases the provider cannot show, with the reason (the test is skipped).
    not_applicable: ClassVar[dict[str, str]] = {}
    #: Paths (after ``base_path``) of the provider's send calls.
    send_paths: ClassVar[tuple[str, ...]] = ()
    #: Path prefix of the provider's base URL (e.g. ``/v1``).
    base_path: ClassVar[str] = ""
    #: The good credentials; no value may ever appear in a result or a log.
    credentials: ClassVar[dict[str, str]] = {}

    def __init__(self) -> None:
        self.fake = FakeProvider(base_path=self.base_path)
        self.good_credentials = True
        self.install(self.fake)

    # ---- to implement
    def install(self, fake: FakeProvider) -> None:
        """Routes of a working provider. Routes append each destination the
        provider takes to ``fake.accepted`` (E.164)."""
        raise NotImplementedError

    def backend(self) -> SmsBackend:
        """The backend under test, on ``self.fake.transport``, with good or
        bad credentials per ``self.good_credentials``."""
        raise NotImplementedError

    def refuse(self, number: str) -> None:
        """Make the provider refuse ``number`` (per message, permanently)."""
        raise NotImplementedError

    # ---- defaults for HTTP providers
    def fault(self, kind: str, *, retry_after: float = 7) -> fakes.Fault:
        """The provider's answer for a fault; override for its own error bodies."""
        return {
            "rate_limit": lambda: fakes.rate_limit(retry_after),
            "unavailable": lambda: fakes.unavailable(503),
            "timeout": fakes.read_timeout,
            "connect": fakes.connect_error,
        }[kind]()

    def fail_send(self, kind: str, *, after: int = 0, retry_after: float = 7) -> None:
        """The send call coming after ``after`` successful ones fails with
        fault ``kind`` (one of :data:`FAULTS`)."""
        self.fake.fail(self.send_paths, self.fault(kind, retry_after=retry_after), after=after)

    def break_credentials(self) -> None:
        self.good_credentials = False

    def accepted(self, batch: Sequence[OutboundSms]) -> Counter[str]:
        """How many times the provider took each destination."""
        return self.fake.accepted_counts()

    # ---- statuses and replies (test_contract_reports.py)
    #: Each status the doc lists, as the provider writes it → ours.
    statuses: ClassVar[dict[str, DeliveryStatus]] = {}
    #: A status the doc does not list: unknown, its raw code kept.
    undocumented_status: ClassVar[str] = "NOT_IN_THE_DOC"
    #: The zone the provider writes reply times in.
    reply_time_zone: ClassVar[str] = "UTC"
    #: Whether the reply webhook carries the time the reply was received.
    webhook_reply_times: ClassVar[bool] = True
    #: Credentials that make the backend check the provider's signature.
    signing_credentials: ClassVar[dict[str, str]] = {}

    def report_status(self, sent: SendResult, sms: OutboundSms, raw: str) -> None:
        """The provider reports ``raw`` for ``sent`` from now on, when polled."""
        raise NotImplementedError

    def status_webhook(self, sent: SendResult, sms: OutboundSms, raw: str) -> Hook:
        """The provider's webhook call reporting ``raw`` for ``sent``."""
        raise NotImplementedError

    def add_reply(self, *, sender: str, body: str, at: datetime, ref: str) -> None:
        """The provider holds a reply (id ``ref``) for the next poll."""
        raise NotImplementedError

    def reply_webhook(
        self, *, sender: str, body: str, at: datetime, ref: str, sent: SendResult | None = None
    ) -> Hook:
        """The provider's webhook call for a reply (``sent``: the message it
        answers, where the provider says so)."""
        raise NotImplementedError

    def sign(self, hook: Hook, *, secret: str) -> Hook:
        """``hook`` signed as the provider signs it with ``secret``."""
        raise NotImplementedError

    def skip_unless(self, case: str) -> None:
        if case in self.not_applicable:
            pytest.skip(f"{self.key}: {self.not_applicable[case]}")
