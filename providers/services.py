"""Every change to a credit balance, each written to the ledger in the same
transaction as the balance change it records.

Contract shared by every ``credits_*`` function:

- keyword-only; returns the :class:`CreditTransaction` it wrote (for a
  transfer, the ``transfer_out`` row of the source);
- raises :class:`CreditError` (a ``ValidationError``) whose message says what
  is wrong with the numbers, and writes nothing;
- ``idempotency_key``: the same key twice applies once and returns the first
  row, also when the two requests race; a key reused for a different movement
  is refused;
- runs inside its own ``transaction.atomic`` (a savepoint when the caller
  already holds a transaction), locks the account rows with
  ``select_for_update`` (in pk order when there are two, so two transfers
  never deadlock) and re-reads them under the lock, so a balance can never
  go below zero or below what is reserved. On SQLite, where row locks do
  not exist, every transaction is ``BEGIN IMMEDIATE`` (settings), which
  serialises writers.

The ``account`` instances you pass are not refreshed: read the returned
row's ``balance_after``/``reserved_after`` or call ``refresh_from_db()``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

import phonenumbers
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import DecimalField, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from providers.backends.base import Capability, ProviderError
from providers.models import CreditTransaction, ProviderAccount

if TYPE_CHECKING:
    from providers.backends.base import SmsBackend

logger = logging.getLogger("providers.credits")

CENT = Decimal("0.01")
#: The largest amount the ledger's DecimalField(14, 2) can hold.
MAX_AMOUNT = Decimal("999999999999.99")
ZERO = Decimal("0.00")

Kind = CreditTransaction.Kind


class CreditError(ValidationError):
    """A credit movement that cannot be applied (message says why and the numbers)."""


# --------------------------------------------------------------------- input


def parse_amount(value, *, signed: bool = False, what: str = "amount") -> Decimal:
    """``value`` as a Decimal with cents, refusing what the ledger cannot hold
    (CreditError saying what is wrong). Forms use it to give the same errors."""
    if isinstance(value, bool):
        value = str(value)  # True is an int; refuse it below instead of reading 1
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise CreditError(
            f"The {what} must be a number like 100 or 12.50 (got {value!r}).", code="amount"
        ) from None
    if not amount.is_finite():
        raise CreditError(f"The {what} must be a finite number (got {value!r}).", code="amount")
    if amount != amount.quantize(CENT):
        raise CreditError(
            f"The {what} can have at most 2 decimal places (got {value}).", code="amount"
        )
    amount = amount.quantize(CENT)
    if amount == 0:
        raise CreditError(f"The {what} must not be zero.", code="amount")
    if amount < 0 and not signed:
        raise CreditError(
            f"The {what} must be more than zero (got {value}); "
            "to take credits away use an adjustment.",
            code="amount",
        )
    if abs(amount) > MAX_AMOUNT:
        raise CreditError(f"The {what} {value} is too large (at most {MAX_AMOUNT}).", code="amount")
    return amount


#: The largest rate ``ProviderAccount.credits_per_segment`` (8, 2) can hold.
MAX_RATE = Decimal("999999.99")
_ALPHA2 = re.compile(r"^[A-Z]{2}$")


def _rate(key, value) -> Decimal:
    """One country's credits per segment (ValueError saying what is wrong)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        value = None
    try:
        rate = Decimal(str(value).strip()) if value is not None else None
    except InvalidOperation:
        rate = None
    if rate is None or not rate.is_finite():
        raise ValueError(
            f"The rate for {key!r} must be a number of credits per segment like 2 or 1.50 "
            f"(got {value!r})."
        )
    if rate <= 0:
        raise ValueError(
            f"The rate for {key!r} must be more than zero (got {value}); remove the country "
            "to charge the account's default credits per segment."
        )
    if rate != rate.quantize(CENT):
        # Message credits and the ledger keep cents: 0.125 x 3 segments has no exact value.
        raise ValueError(f"The rate for {key!r} can have at most 2 decimal places (got {value}).")
    if rate > MAX_RATE:
        raise ValueError(f"The rate for {key!r} {value} is too large (at most {MAX_RATE}).")
    return rate.quantize(CENT)


def parse_country_rates(value) -> dict[str, str]:
    """``ProviderAccount.country_rates`` checked and normalised, e.g.
    ``{"gb": 2, "nz": "1.5"}`` -> ``{"GB": "2.00", "NZ": "1.50"}``.

    Keys are ISO 3166 alpha-2 codes that phonenumbers knows
    (``phonenumbers.SUPPORTED_REGIONS``, the regions the quote resolves a
    number to), in any case and with spaces around them; values are credits
    per segment, more than zero, with at most 2 decimals. Raises
    ``ValidationError`` with one message per bad entry, naming its key.
    """
    if value is None or value == "":
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(
            "Country rates must be a JSON object of country code to credits per segment, "
            'like {"GB": "2", "US": "1.50"}.',
            code="country_rates",
        )
    rates: dict[str, str] = {}
    given: dict[str, object] = {}
    errors: list[str] = []
    for raw_key, raw_value in value.items():
        key = str(raw_key).strip().upper()
        if key == "UK":
            errors.append(
                f'{raw_key!r} is not an ISO 3166 country code: use "GB" for the United Kingdom.'
            )
            continue
        if not _ALPHA2.match(key):
            errors.append(
                f"{raw_key!r} is not a country code: use the two letters of ISO 3166 "
                '(e.g. "GB", "US", "AU").'
            )
            continue
        if key not in phonenumbers.SUPPORTED_REGIONS:
            errors.append(
                f"{raw_key!r} is not a region phonenumbers knows: use an ISO 3166 two-letter "
                'code (e.g. "GB", "US", "AU").'
            )
            continue
        if key in given:
            errors.append(
                f"{given[key]!r} and {raw_key!r} are the same country ({key}): keep one rate."
            )
            continue
        given[key] = raw_key
        try:
            rates[key] = str(_rate(raw_key, raw_value))
        except ValueError as exc:
            errors.append(str(exc))
    if errors:
        raise ValidationError(errors, code="country_rates")
    return rates


def _reference(reference: str) -> str:
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


def _key(idempotency_key: str | None) -> str | None:
    key = (idempotency_key or "").strip() or None
    if key is not None and len(key) > 100:
        raise CreditError(
            f"The idempotency key is {len(key)} characters long; at most 100.",
            code="idempotency_key",
        )
    return key


def _user(user):
    return user if getattr(user, "pk", None) else None


def user_may(user, perm: str) -> bool:
    """Whether ``user`` is active and has ``providers.<perm>`` (superusers have all)."""
    return bool(
        user is not None
        and user.is_active
        and (user.is_superuser or user.has_perm(f"providers.{perm}"))
    )


# --------------------------------------------------------------- idempotency


def _replay(
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


def _once(
    key: str | None,
    replay: Callable[[], CreditTransaction | None],
    apply: Callable[[], CreditTransaction],
    *,
    provider_done: dict | None = None,
) -> CreditTransaction:
    """Run ``apply`` in a savepoint unless ``key`` was used already.

    ``apply`` must call ``replay`` again once it holds the row lock: a second
    request with the same key waits on the lock and then sees the first row.
    The unique index on the key catches what the lock cannot (the same key
    used on two accounts at once) and the loser returns the winner's row, or
    the conflict error. Not after a provider top-up went through, though:
    that one must surface as a failure (see ``_loud_if_provider_applied``).
    """
    if (row := replay()) is not None:
        return row
    try:
        with transaction.atomic():
            return apply()
    except IntegrityError:
        if key is None or provider_done:
            raise
        if (row := replay()) is not None:
            return row
        raise


# ------------------------------------------------------------------- posting


def _lock(account_id: int) -> ProviderAccount:
    return ProviderAccount.objects.select_for_update().get(pk=account_id)


def _write(
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
    again here so no code path can write a negative balance.
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
        created_by=_user(user),
    )
    _low_balance_watch(account, available_before=available_before)
    return row


def _short(account: ProviderAccount, needed: Decimal, purpose: str) -> CreditError:
    return CreditError(
        f"{account.name} has {account.available} credits available "
        f"({account.balance} balance, {account.reserved} reserved), needs {needed} {purpose}.",
        code="insufficient_credit",
    )


# --------------------------------------------------------------- low balance


def low_balance_recipients(account: ProviderAccount) -> list[str]:
    """E-mail addresses warned about ``account``: its owners and its reseller's."""
    from django.contrib.auth import get_user_model

    users = get_user_model().objects.filter(
        Q(provider_accounts=account) | Q(provider_accounts__sub_accounts=account),
        is_active=True,
    )
    return sorted({u.email for u in users if u.email})


def _low_balance_watch(account: ProviderAccount, *, available_before: Decimal) -> None:
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


# ---------------------------------------------------------- provider top-up


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
    backend = _topup_backend(account, backend)
    if backend is None:
        return None
    try:
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


# ------------------------------------------------------------------ services


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
    key = _key(idempotency_key)
    if user is not None and not user_may(user, "add_credits"):
        raise CreditError(
            f"{user} may not add credits; ask a user with the 'add credits' permission.",
            code="forbidden",
        )

    def replay():
        return _replay(
            key, account_id=account.pk, kind=Kind.TOP_UP, amount=amount, reserved_change=ZERO
        )

    def apply(done: dict):
        locked = _lock(account.pk)
        if (row := replay()) is not None:
            return row
        response = _provider_top_up(locked, amount, backend)
        if response is not None:
            done.update(response)
        return _write(
            locked,
            kind=Kind.TOP_UP,
            amount=amount,
            user=user,
            note=note,
            idempotency_key=key,
            provider_response=response,
        )

    return _loud_if_provider_applied(
        lambda done: _once(key, replay, lambda: apply(done), provider_done=done),
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
    key = _key(idempotency_key)
    if (reason := transfer_refusal(user=user, source=source, target=target)) is not None:
        raise CreditError(reason, code="forbidden")

    def replay():
        return _replay(
            key,
            account_id=source.pk,
            kind=Kind.TRANSFER_OUT,
            amount=-amount,
            reserved_change=ZERO,
            counterparty_id=target.pk,
        )

    def apply(done: dict):
        # Always lock the lower pk first: two transfers touching the same
        # pair in opposite orders would otherwise deadlock.
        locked = {pk: _lock(pk) for pk in sorted((source.pk, target.pk))}
        src, dst = locked[source.pk], locked[target.pk]
        if (row := replay()) is not None:
            return row
        if dst.parent_id != src.pk:  # re-parented since the check above
            raise CreditError(f"{dst.name} is no longer a sub-account of {src.name}.")
        if src.available < amount:
            raise _short(src, amount, f"to transfer to {dst.name}")
        response = _provider_top_up(dst, amount, backend)
        if response is not None:
            done.update(response)
        out = _write(
            src,
            kind=Kind.TRANSFER_OUT,
            amount=-amount,
            user=user,
            note=note,
            counterparty=dst,
            idempotency_key=key,
        )
        _write(
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
        lambda done: _once(key, replay, lambda: apply(done), provider_done=done),
        what="transfer",
        account_name=target.name,
        amount=amount,
    )


def _reserved_for(account_id: int, reference: str) -> Decimal:
    """Credits still reserved on the account under ``reference`` (from the ledger)."""
    total = CreditTransaction.objects.filter(account_id=account_id, reference=reference).aggregate(
        total=Sum("reserved_change")
    )["total"]
    return ZERO if total is None else Decimal(total).quantize(CENT)


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
    reference = _reference(reference)
    key = _key(idempotency_key)

    def replay():
        return _replay(
            key, account_id=account.pk, kind=Kind.RESERVE, amount=ZERO, reserved_change=amount
        )

    def apply():
        locked = _lock(account.pk)
        if (row := replay()) is not None:
            return row
        if locked.available < amount:
            raise _short(locked, amount, f"to reserve for {reference}")
        return _write(
            locked,
            kind=Kind.RESERVE,
            reserved_change=amount,
            user=user,
            reference=reference,
            idempotency_key=key,
        )

    return _once(key, replay, apply)


def _out_of_reservation(
    *, account: ProviderAccount, amount, reference: str, idempotency_key, kind: str
) -> CreditTransaction:
    amount = parse_amount(amount)
    reference = _reference(reference)
    key = _key(idempotency_key)
    balance_change = -amount if kind == Kind.CHARGE else ZERO
    verb = "charge" if kind == Kind.CHARGE else "release"

    def replay():
        return _replay(
            key,
            account_id=account.pk,
            kind=kind,
            amount=balance_change,
            reserved_change=-amount,
        )

    def apply():
        locked = _lock(account.pk)
        if (row := replay()) is not None:
            return row
        # Per reference, so a double release of one campaign cannot eat the
        # reservation of another.
        held = _reserved_for(locked.pk, reference)
        if held < amount:
            raise CreditError(
                f"{locked.name} has {held} credits reserved for {reference}, cannot {verb} "
                f"{amount} (reserve more first, or {verb} at most {held}).",
                code="insufficient_reserved",
            )
        return _write(
            locked,
            kind=kind,
            amount=balance_change,
            reserved_change=-amount,
            reference=reference,
            idempotency_key=key,
        )

    return _once(key, replay, apply)


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
    amount = parse_amount(amount)
    reference = _reference(reference)
    key = _key(idempotency_key)

    def replay():
        return _replay(
            key, account_id=account.pk, kind=Kind.REFUND, amount=amount, reserved_change=ZERO
        )

    def apply():
        locked = _lock(account.pk)
        if (row := replay()) is not None:
            return row
        return _write(
            locked, kind=Kind.REFUND, amount=amount, reference=reference, idempotency_key=key
        )

    return _once(key, replay, apply)


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
    reference = _reference(reference)
    key = _key(idempotency_key)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise CreditError(
            f"The count of refunded messages must be a whole number of at least 1 (got {count!r}).",
            code="count",
        )
    text = f"Provider refund of {count} message{'s' if count != 1 else ''}."
    if note.strip():
        text += " " + note.strip()

    def replay():
        return _replay(
            key, account_id=account.pk, kind=Kind.REFUND, amount=amount, reserved_change=ZERO
        )

    def apply():
        locked = _lock(account.pk)
        if (row := replay()) is not None:
            return row
        return _write(
            locked,
            kind=Kind.REFUND,
            amount=amount,
            reference=reference,
            idempotency_key=key,
            note=text,
        )

    return _once(key, replay, apply)


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
    key = _key(idempotency_key)
    if not reason:
        raise CreditError("An adjustment needs a reason (it is kept in the ledger).", code="reason")
    if not user_may(user, "adjust_credits"):
        raise CreditError(
            f"{user} may not adjust credits; ask a user with the 'adjust credits' permission.",
            code="forbidden",
        )

    def replay():
        return _replay(
            key, account_id=account.pk, kind=Kind.ADJUSTMENT, amount=amount, reserved_change=ZERO
        )

    def apply():
        locked = _lock(account.pk)
        if (row := replay()) is not None:
            return row
        if amount < 0 and locked.available < -amount:
            raise _short(locked, -amount, "to remove")
        return _write(
            locked,
            kind=Kind.ADJUSTMENT,
            amount=amount,
            user=user,
            note=reason,
            idempotency_key=key,
        )

    return _once(key, replay, apply)


# --------------------------------------------------------- reconcile, check


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
    and logs a warning on any difference; never changes ``balance`` (a
    difference needs a person: an adjustment with a reason). Raises
    ProviderError when the provider cannot answer.
    """
    backend = backend or account.get_backend()
    provider_balance = Decimal(str(backend.balance())).quantize(CENT)
    now = timezone.now()
    with transaction.atomic():
        # Read ours under the lock so no movement is half-way through.
        locked = _lock(account.pk)
        ProviderAccount.objects.filter(pk=locked.pk).update(
            provider_balance=provider_balance, provider_balance_checked_at=now
        )
    drift = Drift(
        account_id=locked.pk,
        account_name=locked.name,
        local_balance=locked.balance,
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
            locked.balance,
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
