"""Posting to the ledger: the primitives every credit movement is built from.

- :func:`write` applies a change to a LOCKED account (see
  ``providers.locking``) and writes its ledger row, re-checking the bounds;
- :func:`replay` / :func:`once` make a movement idempotent per key;
- small validators for references, keys and permissions.

Nothing here takes a lock or opens a transaction of its own except
:func:`once` (a savepoint around the movement).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Sum

from providers.models import CreditTransaction, ProviderAccount
from providers.services.amounts import CENT, MAX_AMOUNT, ZERO
from providers.services.errors import CreditError
from providers.services.notifications import low_balance_watch

Kind = CreditTransaction.Kind


def clean_reference(reference: str) -> str:
    reference = (reference or "").strip()
    if not reference:
        raise CreditError(
            'A reference is required (what the credits are for, e.g. "campaign:12").',
            code="reference",
        )
    if len(reference) > 100:
        raise CreditError(
            f"The reference is {len(reference)} characters long; at most 100.", code="reference"
        )
    return reference


def clean_key(idempotency_key: str | None) -> str | None:
    key = (idempotency_key or "").strip() or None
    if key is not None and len(key) > 100:
        raise CreditError(
            f"The idempotency key is {len(key)} characters long; at most 100.",
            code="idempotency_key",
        )
    return key


def real_user(user):
    return user if getattr(user, "pk", None) else None


def user_may(user, perm: str) -> bool:
    """Whether ``user`` is active and has ``providers.<perm>`` (superusers have all)."""
    return bool(
        user is not None
        and user.is_active
        and (user.is_superuser or user.has_perm(f"providers.{perm}"))
    )


# --------------------------------------------------------------- idempotency


def replay(
    key: str | None,
    *,
    account_id: int,
    kind: str,
    amount: Decimal,
    reserved_change: Decimal,
    counterparty_id: int | None = None,
) -> CreditTransaction | None:
    """The row already written under ``key``, if any.

    Refuses a key that was used for a different movement: returning that row
    would report success for something that never happened.
    """
    if key is None:
        return None
    row = CreditTransaction.objects.filter(idempotency_key=key).first()
    if row is None:
        return None
    if (
        row.account_id != account_id
        or row.kind != kind
        or row.amount != amount
        or row.reserved_change != reserved_change
        or (counterparty_id is not None and row.counterparty_id != counterparty_id)
    ):
        raise CreditError(
            f"The idempotency key {key!r} was already used for another movement "
            f"({row.get_kind_display()} of {row.amount or row.reserved_change} on account "
            f"#{row.account_id}, ledger row #{row.pk}). Use a new key for a new movement.",
            code="idempotency_conflict",
        )
    return row


def once(
    key: str | None,
    replayed: Callable[[], CreditTransaction | None],
    apply: Callable[[], CreditTransaction],
) -> CreditTransaction:
    """Run ``apply`` in a savepoint unless ``key`` was used already.

    ``apply`` must call ``replayed`` again once it holds the row lock: a second
    request with the same key waits on the lock and then sees the first row.
    The unique index on the key catches what the lock cannot (the same key
    used on two accounts at once) and the loser returns the winner's row, or
    the conflict error.
    """
    if (row := replayed()) is not None:
        return row
    try:
        with transaction.atomic():
            return apply()
    except IntegrityError:
        if key is None:
            raise
        if (row := replayed()) is not None:
            return row
        raise


# ------------------------------------------------------------------- posting


def write(
    account: ProviderAccount,
    *,
    kind: str,
    amount: Decimal = ZERO,
    reserved_change: Decimal = ZERO,
    user=None,
    reference: str = "",
    idempotency_key: str | None = None,
    note: str = "",
    counterparty: ProviderAccount | None = None,
    provider_response=None,
) -> CreditTransaction:
    """Apply a change to a LOCKED account and write its ledger row.

    The caller has checked the movement is allowed; the bounds are checked
    again here so no code path can write a negative balance, or one the
    column cannot hold.
    """
    available_before = account.available
    balance = account.balance + amount
    reserved = account.reserved + reserved_change
    if balance < 0 or reserved < 0 or reserved > balance:
        raise CreditError(
            f"{account.name} has {account.balance} credits ({account.reserved} reserved, "
            f"{account.available} available); this change ({amount} to the balance, "
            f"{reserved_change} to the reserved credits) would leave it inconsistent.",
            code="insufficient_credit",
        )
    if balance > MAX_AMOUNT:
        raise CreditError(
            f"{account.name} has {account.balance} credits; adding {amount} would make "
            f"{balance}, more than an account can hold ({MAX_AMOUNT}). Enter a smaller amount.",
            code="amount",
        )
    ProviderAccount.objects.filter(pk=account.pk).update(balance=balance, reserved=reserved)
    account.balance, account.reserved = balance, reserved
    row = CreditTransaction.objects.create(
        account=account,
        kind=kind,
        amount=amount,
        reserved_change=reserved_change,
        balance_after=balance,
        reserved_after=reserved,
        counterparty=counterparty,
        reference=reference,
        idempotency_key=idempotency_key,
        provider_response=provider_response,
        note=note,
        created_by=real_user(user),
    )
    low_balance_watch(account, available_before=available_before)
    return row


def write_pair(
    src: ProviderAccount,
    dst: ProviderAccount,
    *,
    out_kind: str,
    in_kind: str,
    amount: Decimal,
    user=None,
    note: str = "",
    idempotency_key: str | None = None,
    reference: str = "",
    provider_response=None,
) -> CreditTransaction:
    """Move ``amount`` from LOCKED ``src`` to LOCKED ``dst``: an ``out_kind`` row
    on ``src`` (with the key and reference) and an ``in_kind`` row on ``dst``
    (with the provider's answer) whose reference names the first,
    ``"<out_kind>:<pk>"``; each names the other account as counterparty.
    Returns the ``src`` row."""
    out = write(
        src,
        kind=out_kind,
        amount=-amount,
        user=user,
        note=note,
        counterparty=dst,
        idempotency_key=idempotency_key,
        reference=reference,
    )
    write(
        dst,
        kind=in_kind,
        amount=amount,
        user=user,
        note=note,
        counterparty=src,
        reference=f"{out_kind}:{out.pk}",
        provider_response=provider_response,
    )
    return out


def shortfall(account: ProviderAccount, needed: Decimal, purpose: str) -> CreditError:
    return CreditError(
        f"{account.name} has {account.available} credits available "
        f"({account.balance} balance, {account.reserved} reserved), needs {needed} {purpose}.",
        code="insufficient_credit",
    )


def reserved_for(account_id: int, reference: str) -> Decimal:
    """Credits still reserved on the account under ``reference`` (from the ledger)."""
    total = CreditTransaction.objects.filter(account_id=account_id, reference=reference).aggregate(
        total=Sum("reserved_change")
    )["total"]
    return ZERO if total is None else Decimal(total).quantize(CENT)
