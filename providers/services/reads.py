"""Reads and checks of the credits: provider drift and ledger consistency.

Nothing here moves credits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import DecimalField, OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from providers.locking import lock_account
from providers.models import CreditTransaction, ProviderAccount
from providers.services.amounts import CENT, ZERO

if TYPE_CHECKING:
    from providers.backends.base import SmsBackend

logger = logging.getLogger("providers.credits")


@dataclass(frozen=True, slots=True)
class Drift:
    """Our balance against the provider's, at one moment."""

    account_id: int
    account_name: str
    local_balance: Decimal
    provider_balance: Decimal
    checked_at: datetime

    @property
    def difference(self) -> Decimal:
        """Provider minus ours: positive when the provider holds more."""
        return self.provider_balance - self.local_balance

    @property
    def ok(self) -> bool:
        return self.difference == 0

    def as_dict(self) -> dict:
        return {
            "account_id": self.account_id,
            "account": self.account_name,
            "local_balance": str(self.local_balance),
            "provider_balance": str(self.provider_balance),
            "difference": str(self.difference),
            "checked_at": self.checked_at.isoformat(),
        }


def credits_reconcile(*, account: ProviderAccount, backend: SmsBackend | None = None) -> Drift:
    """Ask the provider for the balance and compare it with ours.

    Stores the answer in ``provider_balance``/``provider_balance_checked_at``
    with our balance at that moment (``provider_balance_ours``), and logs a
    warning on any difference; never changes ``balance`` (a difference needs
    a person: an adjustment with a reason). Raises
    ProviderError when the provider cannot answer.
    """
    backend = backend or account.get_backend()
    before = ProviderAccount.objects.values_list("balance", flat=True).get(pk=account.pk)
    provider_balance = Decimal(str(backend.balance())).quantize(CENT)
    now = timezone.now()
    with transaction.atomic():
        # Ours under the lock, so no movement is half-way through.
        locked = lock_account(account.pk)
        # The provider answered somewhere between ``before`` and now: when a
        # movement landed meanwhile, either side of it is a like-for-like
        # comparison (one that matches is no drift).
        ours = before if provider_balance == before else locked.balance
        ProviderAccount.objects.filter(pk=locked.pk).update(
            provider_balance=provider_balance,
            provider_balance_checked_at=now,
            provider_balance_ours=ours,
        )
    drift = Drift(
        account_id=locked.pk,
        account_name=locked.name,
        local_balance=ours,
        provider_balance=provider_balance,
        checked_at=now,
    )
    if drift.ok:
        logger.info("Balance of %s matches the provider (%s).", locked.name, provider_balance)
    else:
        logger.warning(
            "Balance drift on %s: ours %s, provider %s (difference %s). Not corrected "
            "automatically; check the ledger and record an adjustment if needed.",
            locked.name,
            ours,
            provider_balance,
            drift.difference,
        )
    return drift


@dataclass(frozen=True, slots=True)
class LedgerMismatch:
    """An account whose stored credits differ from what its ledger adds up to."""

    account_id: int
    account_name: str
    balance: Decimal
    ledger_balance: Decimal
    reserved: Decimal
    ledger_reserved: Decimal
    last_balance_after: Decimal | None
    last_reserved_after: Decimal | None

    def __str__(self) -> str:
        if self.last_balance_after is None:
            return (
                f"#{self.account_id} {self.account_name}: balance {self.balance}, reserved "
                f"{self.reserved}, but the ledger has no rows for it"
            )
        return (
            f"#{self.account_id} {self.account_name}: balance {self.balance} vs ledger "
            f"{self.ledger_balance} (last row says {self.last_balance_after}); reserved "
            f"{self.reserved} vs ledger {self.ledger_reserved} "
            f"(last row says {self.last_reserved_after})"
        )


def ledger_mismatches() -> list[LedgerMismatch]:
    """Every account whose balance or reserved differs from the sum of its ledger
    rows or from its latest row's ``*_after`` columns (read-only)."""
    money = DecimalField(max_digits=16, decimal_places=2)
    rows = CreditTransaction.objects.filter(account=OuterRef("pk"))
    latest = rows.order_by("-id")
    sums = rows.order_by().values("account")
    accounts = ProviderAccount.objects.annotate(
        ledger_balance=Coalesce(
            Subquery(sums.annotate(s=Sum("amount")).values("s")[:1], output_field=money),
            Value(ZERO),
            output_field=money,
        ),
        ledger_reserved=Coalesce(
            Subquery(sums.annotate(s=Sum("reserved_change")).values("s")[:1], output_field=money),
            Value(ZERO),
            output_field=money,
        ),
        last_balance_after=Subquery(latest.values("balance_after")[:1]),
        last_reserved_after=Subquery(latest.values("reserved_after")[:1]),
    ).order_by("pk")

    def cents(value) -> Decimal | None:
        # SQLite hands sums and subqueries back without the field's scale.
        return None if value is None else Decimal(value).quantize(CENT)

    found = []
    for a in accounts.iterator():
        mismatch = LedgerMismatch(
            account_id=a.pk,
            account_name=a.name,
            balance=cents(a.balance),
            ledger_balance=cents(a.ledger_balance),
            reserved=cents(a.reserved),
            ledger_reserved=cents(a.ledger_reserved),
            last_balance_after=cents(a.last_balance_after),
            last_reserved_after=cents(a.last_reserved_after),
        )
        last = (mismatch.last_balance_after or ZERO, mismatch.last_reserved_after or ZERO)
        mine = (mismatch.balance, mismatch.reserved)
        if mine != (mismatch.ledger_balance, mismatch.ledger_reserved) or mine != last:
            found.append(mismatch)
    return found


def credits_outcome(*, idempotency_key: str) -> CreditTransaction | None:
    """The ledger row a movement with ``idempotency_key`` wrote, if it did:
    what a repeated request (double click, retry) shows as its outcome."""
    return CreditTransaction.objects.filter(idempotency_key=idempotency_key).first()


@dataclass(frozen=True, slots=True)
class ReferenceCredits:
    """What the ledger holds under one reference (e.g. ``campaign:12``), exactly."""

    reserved: Decimal  # still reserved now
    charged: Decimal  # gross, every charge row
    refunded: Decimal  # every refund row
    released: Decimal

    @property
    def net(self) -> Decimal:
        """What the reference really cost: charged minus refunded."""
        return self.charged - self.refunded


def credits_for_reference(*, account_id: int, reference: str) -> ReferenceCredits:
    """Sum the ledger rows of ``account_id`` under ``reference`` by kind
    (every row of a campaign carries ``campaign:<id>``)."""
    kind = CreditTransaction.Kind
    sums = {
        row["kind"]: (row["amount"] or ZERO, row["reserved"] or ZERO)
        for row in CreditTransaction.objects.filter(account_id=account_id, reference=reference)
        .order_by()
        .values("kind")
        .annotate(amount=Sum("amount"), reserved=Sum("reserved_change"))
    }

    def cents(value) -> Decimal:
        return Decimal(value).quantize(CENT)

    return ReferenceCredits(
        reserved=cents(sum((r for _, r in sums.values()), ZERO)),
        charged=cents(-sums.get(kind.CHARGE, (ZERO, ZERO))[0]),
        refunded=cents(sums.get(kind.REFUND, (ZERO, ZERO))[0]),
        released=cents(-sums.get(kind.RELEASE, (ZERO, ZERO))[1]),
    )
