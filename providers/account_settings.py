"""The account's settings at its provider, read and cached on the account.

Providers that say what an account may do (SMS Everyone's
``RetrieveUserSettings``: Unicode allowed, international allowed) are asked
by :func:`account_settings_refresh`; the answer is kept on the
:class:`~providers.models.ProviderAccount` (``provider_*`` fields), shown on
its page and read by the campaign quote, which refuses before anything is
sent what the provider would refuse for every message.
"""

from __future__ import annotations

import logging

from django.utils import timezone

from providers.backends.base import AccountSettings, Capability, SmsBackend
from providers.models import ProviderAccount

logger = logging.getLogger("providers.account_settings")


def account_settings_refresh(
    *, account: ProviderAccount, backend: SmsBackend | None = None
) -> AccountSettings:
    """Ask the provider for ``account``'s settings and cache them on it (also
    on the ``account`` instance given). A time zone is only taken when the
    provider names one; otherwise the zone staff set stays. Raises
    ProviderError when the provider cannot answer, UnsupportedOperation when
    its backend has no such call."""
    backend = backend or account.get_backend()
    backend.require(Capability.ACCOUNT_SETTINGS, "account settings")
    settings = backend.account_settings()
    fields = {
        "provider_allows_unicode": settings.allows_unicode,
        "provider_allows_international": settings.allows_international,
        "provider_home_country": settings.home_country.upper()[:2],
        "provider_settings_checked_at": timezone.now(),
    }
    if settings.time_zone:
        fields["provider_time_zone"] = settings.time_zone[:64]
    ProviderAccount.objects.filter(pk=account.pk).update(**fields)
    for name, value in fields.items():
        setattr(account, name, value)
    logger.info("Account %s: provider settings %s", account.pk, settings)
    return settings
