"""The senders a provider accepts for an account, for the sender choices of
the account and campaign forms.

A backend with the ``senders`` capability lists them (FullSMS:
``account/senderids`` and ``account/numbers``). Forms render on every page
view, so the list is cached per account and credentials for
:data:`CACHE_SECONDS`; a failed fetch is cached for a shorter while, so a
provider that is down or a wrong token does not slow every page, and the
form says why the list is missing instead of pretending there is none.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field

import httpx
from django.core.cache import cache

from providers.backends import backend_class
from providers.backends.base import Capability, ProviderError, SenderOption
from providers.models import ProviderAccount

logger = logging.getLogger("providers.senders")

CACHE_SECONDS = 600
FAILURE_CACHE_SECONDS = 60
#: A page waits at most this long for the provider's list (per call).
FETCH_TIMEOUT = httpx.Timeout(3.0)


@dataclass(frozen=True)
class AccountSenders:
    """What the provider said: ``options`` when ``known``, else ``error``
    (why not). ``known`` is false for backends without the capability too
    (``error`` empty then): any sender their rules allow may be used."""

    options: list[SenderOption] = field(default_factory=list)
    known: bool = False
    error: str = ""

    @property
    def values(self) -> list[str]:
        return [option.value for option in self.options]

    def refuses(self, sender: str) -> bool:
        """Whether the provider is known not to accept ``sender`` (never when
        it lists none: see :meth:`SmsBackend.senders`)."""
        if not self.known or not self.options or not sender:
            return False
        wanted = _comparable(sender)
        return all(_comparable(value) != wanted for value in self.values)

    def describe(self) -> str:
        """The choices for people, e.g. "COPERATO, +441111111111"."""
        return ", ".join(self.values) or "none"


def _comparable(sender: str) -> str:
    value = sender.strip()
    return value.lstrip("+") if value.lstrip("+").isdigit() else value.upper()


def supports_senders(backend: str) -> bool:
    try:
        return backend_class(backend).supports(Capability.SENDERS)
    except Exception:  # an unknown or broken backend has no sender list
        return False


def _cache_key(account: ProviderAccount) -> str:
    # New credentials or another base URL give another key: a list fetched
    # with an old token is never shown for the new one. A hash, never a secret.
    fingerprint = hashlib.sha256(
        json.dumps(
            [account.backend, account.base_url, account.credentials or {}],
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()[:24]
    return f"smsoffice:senders:{account.pk}:{fingerprint}"


def account_senders(account: ProviderAccount | None, *, refresh: bool = False) -> AccountSenders:
    """The senders the provider of ``account`` accepts (cached; never raises)."""
    if account is None or account.pk is None or not supports_senders(account.backend):
        return AccountSenders()
    key = _cache_key(account)
    if not refresh:
        cached = cache.get(key)
        if cached is not None:
            return AccountSenders(
                options=[SenderOption(**option) for option in cached["options"]],
                known=cached["known"],
                error=cached["error"],
            )
    found = _fetch(account)
    cache.set(
        key,
        {
            "options": [
                {"value": o.value, "label": o.label, "kind": o.kind} for o in found.options
            ],
            "known": found.known,
            "error": found.error,
        },
        CACHE_SECONDS if found.known else FAILURE_CACHE_SECONDS,
    )
    return found


def _fetch(account: ProviderAccount) -> AccountSenders:
    label = backend_class(account.backend).label or account.backend
    try:
        with account.get_backend() as backend:
            # A page is waiting: a slow provider must not hold it for long.
            backend.timeout = FETCH_TIMEOUT
            options = backend.senders()
    except ProviderError as exc:
        logger.warning("Sender list of account %s: %s", account.pk, exc)
        return AccountSenders(
            error=f"Could not read the senders from {label}: {exc}. Any sender is accepted "
            f"here until then; {label} refuses one it does not know."
        )
    return AccountSenders(options=options, known=True)
