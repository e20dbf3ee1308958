"""Low-balance warnings: once per crossing of an account's threshold, by
e-mail after the movement commits."""

from __future__ import annotations

import logging
from decimal import Decimal

from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from providers.models import ProviderAccount

logger = logging.getLogger("providers.credits")


def low_balance_recipients(account: ProviderAccount) -> list[str]:
    """E-mail addresses warned about ``account``.

    The account's own list (``low_balance_emails``, set by its reseller) when
    it has one; otherwise its owners and its reseller's owners.
    """
    chosen = [e.strip() for e in (account.low_balance_emails or "").split(",") if e.strip()]
    if chosen:
        return sorted(set(chosen))
    from django.contrib.auth import get_user_model

    users = get_user_model().objects.filter(
        Q(provider_accounts=account) | Q(provider_accounts__sub_accounts=account),
        is_active=True,
    )
    return sorted({u.email for u in users if u.email})


def low_balance_watch(account: ProviderAccount, *, available_before: Decimal) -> None:
    """Warn the owners once per crossing of the threshold, re-arm above it.

    Runs under the account's row lock, so two concurrent debits cannot both
    see "not notified yet"; the mail goes out only if the transaction commits.
    """
    threshold = account.low_balance_threshold
    if threshold <= 0:
        return
    available = account.available
    if available >= threshold and account.low_balance_notified_at is not None:
        ProviderAccount.objects.filter(pk=account.pk).update(low_balance_notified_at=None)
        account.low_balance_notified_at = None
    elif (
        available < threshold
        and available < available_before
        and account.low_balance_notified_at is None
    ):
        now = timezone.now()
        ProviderAccount.objects.filter(pk=account.pk).update(low_balance_notified_at=now)
        account.low_balance_notified_at = now
        recipients = low_balance_recipients(account)
        subject = f"Low balance on {account.name}: {available} credits available"
        body = (
            f"The available credits of {account.name} fell below its warning threshold.\n\n"
            f"Available: {available}\n"
            f"Balance:   {account.balance}\n"
            f"Reserved:  {account.reserved}\n"
            f"Threshold: {threshold}\n\n"
            "Top the account up to keep campaigns sending. You will not be warned again "
            "until the available credits have gone back above the threshold."
        )
        logger.warning("%s (threshold %s)", subject, threshold)
        if recipients:
            transaction.on_commit(lambda: _send_low_balance_mail(subject, body, recipients))


def _send_low_balance_mail(subject: str, body: str, recipients: list[str]) -> None:
    try:
        send_mail(subject, body, None, recipients)
    except Exception:
        # The credits moved and are recorded; a mail server outage must not
        # turn that into an error for the user (the banner still shows it).
        logger.exception("Could not send the low-balance e-mail to %s", recipients)
