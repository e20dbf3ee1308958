"""What the contract test needs to know of each backend: a *profile*.

One module per backend, ``profile_<key>.py`` next to this one, defines a
:class:`ContractProfile` subclass decorated with :func:`register`; the
contract test loads them all and fails for a backend of
``settings.SMS_BACKENDS`` that has none. A profile builds the backend wired
to a :class:`~tests.providers.contract.fakes.FakeProvider` that behaves as
the provider's doc says (routes answering with the doc's payloads), and
knows how to make that provider refuse a number, fail a send call, or
refuse the credentials.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections import Counter
from collections.abc import Sequence
from typing import ClassVar

import pytest

from providers.backends.base import OutboundSms, SmsBackend
from tests.providers.contract import fakes
from tests.providers.contract.fakes import FakeProvider

PROFILES: dict[str, type[ContractProfile]] = {}

#: The faults :meth:`ContractProfile.fail_send` can script.
FAULTS = ("rate_limit", "unavailable", "timeout", "connect")


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

    def skip_unless(self, case: str) -> None:
        if case in self.not_applicable:
            pytest.skip(f"{self.key}: {self.not_applicable[case]}")
