"""Provider backends, chosen per account like ``EMAIL_BACKEND``.

``settings.SMS_BACKENDS`` maps a ``ProviderAccount.backend`` key to a dotted
path of an :class:`~providers.backends.base.SmsBackend` subclass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from providers.backends.base import WEBHOOK_KINDS, WebhookUrls

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


def webhook_urls_for(account: ProviderAccount) -> WebhookUrls:
    """The absolute webhook addresses of ``account``, one per kind its backend
    offers, built from ``settings.PUBLIC_BASE_URL`` and the URL name (so
    providers never import campaigns, which serves them). Empty when
    ``PUBLIC_BASE_URL`` is not set: a provider must never be given a
    relative address."""
    from django.urls import reverse

    base = (settings.PUBLIC_BASE_URL or "").rstrip("/")
    if not base:
        return WebhookUrls()
    capabilities = backend_capabilities(account.backend)
    urls = {
        kind: base
        + reverse(
            "hooks:webhook",
            kwargs={"provider": account.backend, "token": account.webhook_token, "kind": kind},
        )
        for kind, capability in WEBHOOK_KINDS.items()
        if capability in capabilities
    }
    return WebhookUrls(**urls)


def get_backend(account: ProviderAccount, **options) -> SmsBackend:
    """Instantiate the backend of ``account`` with its credentials, base URL,
    webhook URLs and the account's provider options (``time_zone``,
    ``validity_minutes``).

    ``options`` reach the backend's constructor (tests pass ``transport``).
    """
    cls = backend_class(account.backend)
    options.setdefault("webhook_urls", webhook_urls_for(account))
    validity = getattr(account, "message_validity", None)
    if validity:
        options.setdefault("validity_minutes", int(validity))
    # The zone the provider's timestamps are in, when the account knows it.
    zone = getattr(account, "provider_time_zone", "")
    if zone:
        options.setdefault("time_zone", zone)
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
