"""Provider backends, chosen per account like ``EMAIL_BACKEND``.

``settings.SMS_BACKENDS`` maps a ``ProviderAccount.backend`` key to a dotted
path of an :class:`~providers.backends.base.SmsBackend` subclass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from providers.backends.base import SmsBackend
    from providers.models import ProviderAccount


def backend_class(key: str) -> type[SmsBackend]:
    try:
        path = settings.SMS_BACKENDS[key]
    except KeyError:
        raise ImproperlyConfigured(
            f"No SMS backend {key!r}; known: {', '.join(sorted(settings.SMS_BACKENDS))}."
        ) from None
    return import_string(path)


def backend_capabilities(key: str) -> frozenset[str]:
    """What the backend ``key`` can do, without instantiating it (for the
    admin to show or hide buttons). Unknown keys have no capabilities."""
    try:
        return frozenset(backend_class(key).capabilities)
    except (ImproperlyConfigured, ImportError):
        return frozenset()


def get_backend(account: ProviderAccount, **options) -> SmsBackend:
    """Instantiate the backend of ``account`` with its credentials and base URL.

    ``options`` reach the backend's constructor (tests pass ``transport``).
    """
    cls = backend_class(account.backend)
    return cls(
        credentials=dict(account.credentials or {}),
        base_url=account.base_url or None,
        account_key=str(account.pk),
        **options,
    )


def delivery_reports_missing(key: str) -> str:
    """Why backend ``key`` never reports deliveries (accepted messages stay
    ``sent``), for pages to say so; empty when it does report them (or is
    unknown: nothing to claim)."""
    try:
        return backend_class(key).delivery_reports_missing()
    except (ImproperlyConfigured, ImportError):
        return ""
