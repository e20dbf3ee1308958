"""Every change to a credit balance, each written to the ledger in the same
transaction as the balance change it records."""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from providers.models import CreditTransaction, ProviderAccount

CENT = Decimal("0.01")


class CreditError(ValidationError):
    """A credit movement that cannot be applied (message says why and the numbers)."""


def _amount(value) -> Decimal:
    amount = Decimal(str(value)).quantize(CENT)
    if amount <= 0:
        raise CreditError(f"The amount must be more than zero (got {value}).", code="amount")
    return amount


def _existing(idempotency_key: str | None) -> CreditTransaction | None:
    if not idempotency_key:
        return None
    return CreditTransaction.objects.filter(idempotency_key=idempotency_key).first()


def _post(
    *,
    account_id: int,
    kind: str,
    amount: Decimal = Decimal("0"),
    reserved_change: Decimal = Decimal("0"),
    user=None,
    reference: str = "",
    idempotency_key: str | None = None,
    note: str = "",
    counterparty: ProviderAccount | None = None,
    provider_response=None,
) -> CreditTransaction:
    """Lock the account row, check the result stays valid, update it and write
    the ledger row. Must run inside ``transaction.atomic``."""
    account = ProviderAccount.objects.select_for_update().get(pk=account_id)
    balance = account.balance + amount
    reserved = account.reserved + reserved_change
    if balance < 0 or reserved < 0 or reserved > balance:
        raise CreditError(
            f"{account.name} has {account.available} credits available "
            f"({account.balance} balance, {account.reserved} reserved); "
            f"this needs {-(amount - reserved_change) if amount - reserved_change < 0 else 0}.",
            code="insufficient_credit",
        )
    ProviderAccount.objects.filter(pk=account.pk).update(balance=balance, reserved=reserved)
    return CreditTransaction.objects.create(
        account=account,
        kind=kind,
        amount=amount,
        reserved_change=reserved_change,
        balance_after=balance,
        reserved_after=reserved,
        counterparty=counterparty,
        reference=reference,
        idempotency_key=idempotency_key or None,
        provider_response=provider_response,
        note=note,
        created_by=user if getattr(user, "pk", None) else None,
    )


def credits_top_up(
    *,
    account: ProviderAccount,
    amount,
    user=None,
    note: str = "",
    idempotency_key: str | None = None,
) -> CreditTransaction:
    """Add credits to ``account`` (e.g. after a payment). Applies once per key."""
    amount = _amount(amount)
    if (row := _existing(idempotency_key)) is not None:
        return row
    try:
        with transaction.atomic():
            return _post(
                account_id=account.pk,
                kind=CreditTransaction.Kind.TOP_UP,
                amount=amount,
                user=user,
                note=note,
                idempotency_key=idempotency_key,
            )
    except IntegrityError:
        # A concurrent request with the same key won the race.
        if (row := _existing(idempotency_key)) is not None:
            return row
        raise
