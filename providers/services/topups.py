"""Credit movements that may reach the provider: top-ups (credits coming in)
and transfers from a reseller account to one of its sub-accounts.

When the account's backend can ``topup``, the provider side is topped up as
part of the movement, and its answer kept in the ledger row's
``provider_response``.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction

from providers.backends.base import Capability, ProviderError
from providers.locking import lock_account, lock_accounts, retry_on_conflict
from providers.models import CreditTransaction, ProviderAccount
from providers.services import ledger
from providers.services.amounts import ZERO, parse_amount
from providers.services.errors import CreditError, busy_error

if TYPE_CHECKING:
    from providers.backends.base import SmsBackend

logger = logging.getLogger("providers.credits")

Kind = CreditTransaction.Kind


def _topup_backend(account: ProviderAccount, backend: SmsBackend | None) -> SmsBackend | None:
    """The backend to top up at the provider, or None when it has no such thing."""
    from providers.backends import backend_class

    if backend is None:
        try:
            capabilities = backend_class(account.backend).capabilities
        except (ImproperlyConfigured, ImportError) as exc:
            raise CreditError(
                f"Cannot load the backend {account.backend!r} of {account.name} ({exc}), so "
                "cannot tell whether the provider must be topped up too. Fix the account's "
                "backend or settings.SMS_BACKENDS.",
                code="backend",
            ) from None
        if Capability.TOPUP not in capabilities:
            return None
        return account.get_backend()
    return backend if Capability.TOPUP in backend.capabilities else None


def _provider_top_up(
    account: ProviderAccount, amount: Decimal, backend: SmsBackend | None
) -> dict | None:
    """Top up the provider side of ``account``; the answer for ``provider_response``.

    Runs after the row lock was taken and the movement checked, before any
    ledger row is written: if the provider refuses, nothing is recorded.
    """
    from providers import reseller_sync

    try:
        # A TransmitSMS reseller's sub-account is topped up on its client there.
        if (mirrored := reseller_sync.top_up_mirror(account, amount, backend)) is not None:
            return mirrored
        backend = _topup_backend(account, backend)
        if backend is None:
            return None
        new_balance = backend.top_up(amount)
    except ProviderError as exc:
        hint = ""
        if getattr(exc, "maybe_processed", False) or exc.kind in {"timeout", "protocol"}:
            hint = (
                " The provider did not confirm: it may or may not have added them. Check the "
                "provider balance (Check provider balance) before trying again."
            )
        raise CreditError(
            f"The provider refused to add {amount} credits to {account.name}: {exc}. "
            f"Nothing was recorded here.{hint}",
            code="provider",
        ) from exc
    return {
        "backend": backend.name,
        "credits_added": str(amount),
        "provider_balance": None if new_balance is None else str(new_balance),
    }


def _loud_if_provider_applied(run, *, what: str, account_name: str, amount: Decimal):
    """Run ``run(done)``; if it fails after the provider accepted, say so loudly.

    ``done`` is a dict ``run`` fills with the provider's answer once the
    provider accepted. A local failure after that (database error, commit
    failure of our own transaction) leaves credits at the provider that our
    ledger does not show: log it at CRITICAL with the numbers, and tell the
    user not to retry (a retry would top the provider up a second time).
    A failure of an outer transaction after we return is beyond our sight;
    ``credits_reconcile`` reports that drift.
    """
    done: dict = {}
    try:
        return run(done)
    except Exception as exc:
        if done:
            logger.critical(
                "PROVIDER TOPPED UP BUT NOT RECORDED: %s of %s credits on %s was accepted by "
                "the provider (%s) and then recording it failed (%r). Add the credits with "
                "an adjustment after checking the provider balance; do not retry the top-up.",
                what,
                amount,
                account_name,
                done,
                exc,
            )
            raise CreditError(
                f"The provider added {amount} credits to {account_name} but recording it here "
                f"failed ({type(exc).__name__}). Do not retry: ask an administrator to check "
                "the provider balance and record it with an adjustment.",
                code="provider_applied_not_recorded",
            ) from exc
        raise


def _once_unless_provider_applied(key, replayed, apply, done: dict) -> CreditTransaction:
    """``ledger.once``, except that a unique-key collision after the provider
    accepted is raised, not replayed (see ``_loud_if_provider_applied``)."""
    if (row := replayed()) is not None:
        return row
    try:
        with transaction.atomic():
            return apply()
    except IntegrityError:
        if key is None or done:
            raise
        if (row := replayed()) is not None:
            return row
        raise


# ------------------------------------------------------------------ services


@retry_on_conflict(busy_error)
def credits_top_up(
    *,
    account: ProviderAccount,
    amount,
    user=None,
    note: str = "",
    idempotency_key: str | None = None,
    backend: SmsBackend | None = None,
) -> CreditTransaction:
    """Add credits to ``account`` (e.g. after a payment). Applies once per key.

    ``user``: None for the system (seed data, payment hooks); a user needs
    ``providers.add_credits``. When the account's backend can ``topup``, the
    provider is topped up first (under the lock) and its answer stored in
    ``provider_response``; a provider refusal records nothing. ``backend``
    replaces ``account.get_backend()`` (tests inject a MockTransport).
    """
    amount = parse_amount(amount)
    key = ledger.clean_key(idempotency_key)
    if user is not None and not ledger.user_may(user, "add_credits"):
        raise CreditError(
            f"{user} may not add credits; ask a user with the 'add credits' permission.",
            code="forbidden",
        )

    def replay():
        return ledger.replay(
            key, account_id=account.pk, kind=Kind.TOP_UP, amount=amount, reserved_change=ZERO
        )

    def apply(done: dict):
        locked = lock_account(account.pk)
        if (row := replay()) is not None:
            return row
        response = _provider_top_up(locked, amount, backend)
        if response is not None:
            done.update(response)
        return ledger.write(
            locked,
            kind=Kind.TOP_UP,
            amount=amount,
            user=user,
            note=note,
            idempotency_key=key,
            provider_response=response,
        )

    return _loud_if_provider_applied(
        lambda done: _once_unless_provider_applied(key, replay, lambda: apply(done), done),
        what="top-up",
        account_name=account.name,
        amount=amount,
    )


def transfer_refusal(*, user, source: ProviderAccount, target: ProviderAccount) -> str | None:
    """Why ``user`` may not move credits from ``source`` to ``target`` (None: may).

    Credits only go from a reseller account down to one of its own
    sub-accounts. Staff who see every account may move them for any
    reseller; anyone else needs ``top_up_account`` and must own ``source``.
    """
    if source.pk == target.pk:
        return f"{source.name} cannot transfer credits to itself."
    if target.parent_id != source.pk:
        return (
            f"{target.name} is not a sub-account of {source.name}; credits only go from a "
            "reseller account to its own sub-accounts."
        )
    if user is None or not user.is_active:
        return "A transfer needs an active user."
    if user.is_superuser or user.has_perm("providers.view_all_accounts"):
        return None
    if not user.has_perm("providers.top_up_account"):
        return f"{user} may not top up accounts (the 'top up account' permission is missing)."
    if not source.owners.filter(pk=user.pk).exists():
        return f"{user} does not manage {source.name}."
    return None


@retry_on_conflict(busy_error)
def credits_transfer(
    *,
    source: ProviderAccount,
    target: ProviderAccount,
    amount,
    user,
    note: str = "",
    idempotency_key: str | None = None,
    backend: SmsBackend | None = None,
) -> CreditTransaction:
    """Move credits from a reseller account to one of its sub-accounts.

    Writes a ``transfer_out`` row on ``source`` and a ``transfer_in`` row on
    ``target`` (each naming the other as counterparty) and returns the
    ``transfer_out`` row. Refused when ``source`` has less available than
    ``amount`` ("has X available, needs Y") or ``user`` may not (see
    :func:`transfer_refusal`). When the target's backend can ``topup`` the
    provider-side sub-account is topped up under the locks before any row is
    written; ``backend`` is the target's backend (tests inject one).
    """
    amount = parse_amount(amount)
    key = ledger.clean_key(idempotency_key)
    if (reason := transfer_refusal(user=user, source=source, target=target)) is not None:
        raise CreditError(reason, code="forbidden")

    def replay():
        return ledger.replay(
            key,
            account_id=source.pk,
            kind=Kind.TRANSFER_OUT,
            amount=-amount,
            reserved_change=ZERO,
            counterparty_id=target.pk,
        )

    def apply(done: dict):
        locked = lock_accounts([source.pk, target.pk])
        src, dst = locked[source.pk], locked[target.pk]
        if (row := replay()) is not None:
            return row
        if dst.parent_id != src.pk:  # re-parented since the check above
            raise CreditError(f"{dst.name} is no longer a sub-account of {src.name}.")
        if src.available < amount:
            raise ledger.shortfall(src, amount, f"to transfer to {dst.name}")
        response = _provider_top_up(dst, amount, backend)
        if response is not None:
            done.update(response)
        out = ledger.write(
            src,
            kind=Kind.TRANSFER_OUT,
            amount=-amount,
            user=user,
            note=note,
            counterparty=dst,
            idempotency_key=key,
        )
        ledger.write(
            dst,
            kind=Kind.TRANSFER_IN,
            amount=amount,
            user=user,
            note=note,
            counterparty=src,
            reference=f"transfer_out:{out.pk}",
            provider_response=response,
        )
        return out

    return _loud_if_provider_applied(
        lambda done: _once_unless_provider_applied(key, replay, lambda: apply(done), done),
        what="transfer",
        account_name=target.name,
        amount=amount,
    )
