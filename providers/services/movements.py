"""Credit movements that stay in our ledger (no provider call): reserve,
charge, release, refund and staff adjustments.

Each service locks its account through ``providers.locking.lock_account``
(``FOR NO KEY UPDATE``), re-reads it, checks, and writes one ledger row; a
lock conflict is retried at this boundary (``retry_on_conflict``) and
otherwise refused with ``CreditError(code="busy")``.
"""

from __future__ import annotations

from providers.locking import lock_account, retry_on_conflict
from providers.models import CreditTransaction, ProviderAccount
from providers.services import ledger
from providers.services.amounts import ZERO, parse_amount
from providers.services.errors import CreditError, busy_error

Kind = CreditTransaction.Kind


@retry_on_conflict(busy_error)
def credits_reserve(
    *,
    account: ProviderAccount,
    amount,
    reference: str,
    user=None,
    idempotency_key: str | None = None,
) -> CreditTransaction:
    """Set ``amount`` aside for ``reference`` (e.g. "campaign:12"): reserved += amount.

    Refused when fewer than ``amount`` credits are available. What is reserved
    under a reference is later charged or released under the same reference.
    """
    amount = parse_amount(amount)
    reference = ledger.clean_reference(reference)
    key = ledger.clean_key(idempotency_key)

    def replayed():
        return ledger.replay(
            key, account_id=account.pk, kind=Kind.RESERVE, amount=ZERO, reserved_change=amount
        )

    def apply():
        locked = lock_account(account.pk)
        if (row := replayed()) is not None:
            return row
        if locked.available < amount:
            raise ledger.shortfall(locked, amount, f"to reserve for {reference}")
        return ledger.write(
            locked,
            kind=Kind.RESERVE,
            reserved_change=amount,
            user=user,
            reference=reference,
            idempotency_key=key,
        )

    return ledger.once(key, replayed, apply)


def _out_of_reservation(
    *, account: ProviderAccount, amount, reference: str, idempotency_key, kind: str
) -> CreditTransaction:
    amount = parse_amount(amount)
    reference = ledger.clean_reference(reference)
    key = ledger.clean_key(idempotency_key)
    balance_change = -amount if kind == Kind.CHARGE else ZERO
    verb = "charge" if kind == Kind.CHARGE else "release"

    def replayed():
        return ledger.replay(
            key,
            account_id=account.pk,
            kind=kind,
            amount=balance_change,
            reserved_change=-amount,
        )

    def apply():
        locked = lock_account(account.pk)
        if (row := replayed()) is not None:
            return row
        # Per reference, so a double release of one campaign cannot eat the
        # reservation of another.
        held = ledger.reserved_for(locked.pk, reference)
        if held < amount:
            raise CreditError(
                f"{locked.name} has {held} credits reserved for {reference}, cannot {verb} "
                f"{amount} (reserve more first, or {verb} at most {held}).",
                code="insufficient_reserved",
            )
        return ledger.write(
            locked,
            kind=kind,
            amount=balance_change,
            reserved_change=-amount,
            reference=reference,
            idempotency_key=key,
        )

    return ledger.once(key, replayed, apply)


@retry_on_conflict(busy_error)
def credits_charge(
    *,
    account: ProviderAccount,
    amount,
    reference: str,
    idempotency_key: str | None = None,
) -> CreditTransaction:
    """Pay for what was really submitted, out of the reservation of ``reference``:
    balance -= amount and reserved -= amount (available does not change).

    Refused when less than ``amount`` is still reserved under ``reference``.
    """
    return _out_of_reservation(
        account=account,
        amount=amount,
        reference=reference,
        idempotency_key=idempotency_key,
        kind=Kind.CHARGE,
    )


@retry_on_conflict(busy_error)
def credits_release(
    *,
    account: ProviderAccount,
    amount,
    reference: str,
    idempotency_key: str | None = None,
) -> CreditTransaction:
    """Give back what ``reference`` reserved and will not use: reserved -= amount.

    Refused when less than ``amount`` is still reserved under ``reference``.
    """
    return _out_of_reservation(
        account=account,
        amount=amount,
        reference=reference,
        idempotency_key=idempotency_key,
        kind=Kind.RELEASE,
    )


def _refund(
    *, account: ProviderAccount, amount, reference: str, key: str | None, note: str = ""
) -> CreditTransaction:
    def replayed():
        return ledger.replay(
            key, account_id=account.pk, kind=Kind.REFUND, amount=amount, reserved_change=ZERO
        )

    def apply():
        locked = lock_account(account.pk)
        if (row := replayed()) is not None:
            return row
        return ledger.write(
            locked,
            kind=Kind.REFUND,
            amount=amount,
            reference=reference,
            idempotency_key=key,
            note=note,
        )

    return ledger.once(key, replayed, apply)


@retry_on_conflict(busy_error)
def credits_refund(
    *,
    account: ProviderAccount,
    amount,
    reference: str,
    idempotency_key: str | None = None,
) -> CreditTransaction:
    """Return credits the provider refunded (undelivered, expired...): balance += amount.

    Pass an idempotency key per refunded message: a report delivered twice
    must not refund twice.
    """
    return _refund(
        account=account,
        amount=parse_amount(amount),
        reference=ledger.clean_reference(reference),
        key=ledger.clean_key(idempotency_key),
    )


@retry_on_conflict(busy_error)
def credits_refund_many(
    *,
    account: ProviderAccount,
    amount,
    reference: str,
    count: int,
    idempotency_key: str | None = None,
    note: str = "",
) -> CreditTransaction:
    """Return in ONE ledger row what the provider refunded for ``count`` messages:
    balance += amount (their credits added up).

    For bulk callers (delivery reports): a row per message would cost a lock,
    a read and two writes each. The row's note starts with the count
    ("Provider refund of 57 messages.") followed by ``note`` (say which
    messages). The caller guarantees each message is refunded once (see
    ``campaigns.reports.statuses_apply``); ``idempotency_key`` protects a
    caller that retries the same group.
    """
    amount = parse_amount(amount)
    reference = ledger.clean_reference(reference)
    key = ledger.clean_key(idempotency_key)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise CreditError(
            f"The count of refunded messages must be a whole number of at least 1 (got {count!r}).",
            code="count",
        )
    text = f"Provider refund of {count} message{'s' if count != 1 else ''}."
    if note.strip():
        text += " " + note.strip()
    return _refund(account=account, amount=amount, reference=reference, key=key, note=text)


@retry_on_conflict(busy_error)
def credits_adjust(
    *,
    account: ProviderAccount,
    amount,
    reason: str,
    user,
    idempotency_key: str | None = None,
) -> CreditTransaction:
    """Staff correction: add (positive) or remove (negative) credits, with a reason.

    ``user`` needs ``providers.adjust_credits``. A removal cannot take more
    than is available (reserved credits belong to running campaigns). The
    provider is not contacted: this corrects our ledger.
    """
    amount = parse_amount(amount, signed=True)
    reason = (reason or "").strip()
    key = ledger.clean_key(idempotency_key)
    if not reason:
        raise CreditError("An adjustment needs a reason (it is kept in the ledger).", code="reason")
    if not ledger.user_may(user, "adjust_credits"):
        raise CreditError(
            f"{user} may not adjust credits; ask a user with the 'adjust credits' permission.",
            code="forbidden",
        )

    def replayed():
        return ledger.replay(
            key, account_id=account.pk, kind=Kind.ADJUSTMENT, amount=amount, reserved_change=ZERO
        )

    def apply():
        locked = lock_account(account.pk)
        if (row := replayed()) is not None:
            return row
        if amount < 0 and locked.available < -amount:
            raise ledger.shortfall(locked, -amount, "to remove")
        return ledger.write(
            locked,
            kind=Kind.ADJUSTMENT,
            amount=amount,
            user=user,
            note=reason,
            idempotency_key=key,
        )

    return ledger.once(key, replayed, apply)
