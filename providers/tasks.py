"""django-q2 entry points for credits. Tasks take ids and call a service."""

from __future__ import annotations

import logging

from django.core.exceptions import ImproperlyConfigured

from providers.account_settings import account_settings_refresh
from providers.backends import backend_class
from providers.backends.base import Capability, ProviderError
from providers.models import ProviderAccount
from providers.services import credits_reconcile, topup_intents_reconcile

logger = logging.getLogger("providers.credits")


def reconcile_balances(account_ids: list[int] | None = None) -> dict:
    """Compare our balance with the provider's for every active account whose
    backend reports a balance (or only ``account_ids``).

    Reports drift (log, ``provider_balance`` on the account, return value);
    never corrects a balance. One account failing does not stop the others.
    Schedule it, e.g. hourly: ``Schedule.objects.create(func=
    "providers.tasks.reconcile_balances", schedule_type=Schedule.HOURLY)``.
    Returns ``{"checked": n, "drift": [Drift.as_dict()...], "errors": {name: text}}``.
    """
    accounts = ProviderAccount.objects.filter(is_active=True).order_by("pk")
    if account_ids is not None:
        accounts = accounts.filter(pk__in=account_ids)
    checked, drifts, errors = 0, [], {}
    for account in accounts:
        try:
            if Capability.BALANCE not in backend_class(account.backend).capabilities:
                continue
            drift = credits_reconcile(account=account)
        except (ProviderError, ImproperlyConfigured, ImportError) as exc:
            logger.warning("Could not check the provider balance of %s: %s", account.name, exc)
            errors[account.name] = str(exc)
            continue
        checked += 1
        if not drift.ok:
            drifts.append(drift.as_dict())
    if drifts:
        logger.warning("Balance drift on %d account(s): %s", len(drifts), drifts)
    return {"checked": checked, "drift": drifts, "errors": errors}


def reconcile_topup_intents() -> dict:
    """Record provider top-ups the provider confirmed but we did not record,
    and hand the ones abandoned by a crash to a person (``unknown``).

    Scheduled every 5 minutes (``campaigns.tasks.PERIODIC``, ``manage.py
    sync_schedules``). Never decides by itself whether a provider applied a
    top-up it did not confirm.
    """
    return topup_intents_reconcile()


def refresh_account_settings(account_ids: list[int] | None = None) -> dict:
    """Read the provider's settings (Unicode, international, time zone) of
    every active account whose backend has them (or only ``account_ids``)
    and cache them on the account. One account failing does not stop the
    others. Returns ``{"checked": n, "errors": {name: text}}``."""
    accounts = ProviderAccount.objects.filter(is_active=True).order_by("pk")
    if account_ids is not None:
        accounts = accounts.filter(pk__in=account_ids)
    checked, errors = 0, {}
    for account in accounts:
        try:
            if not backend_class(account.backend).supports(Capability.ACCOUNT_SETTINGS):
                continue
            account_settings_refresh(account=account)
        except (ProviderError, ImproperlyConfigured, ImportError) as exc:
            logger.warning("Could not read the provider settings of %s: %s", account.name, exc)
            errors[account.name] = str(exc)
            continue
        checked += 1
    return {"checked": checked, "errors": errors}
