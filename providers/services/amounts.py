"""Amounts and rates as typed by people and programs: the one parser every
form, API and service uses, with bounds that fit the columns.

Every function here is pure (no database) and raises an error whose message
says what is wrong and what to type instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

import phonenumbers
from django.core.exceptions import ValidationError

from providers.services.errors import CreditError

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
#: The largest amount the ledger's and the account's DecimalField(14, 2) hold.
MAX_AMOUNT = Decimal("999999999999.99")
#: The largest rate ``ProviderAccount.credits_per_segment`` (8, 2) can hold.
MAX_RATE = Decimal("999999.99")
_ALPHA2 = re.compile(r"^[A-Z]{2}$")


def parse_amount(value, *, signed: bool = False, what: str = "amount") -> Decimal:
    """``value`` as a Decimal with cents, refusing what the ledger cannot hold
    (CreditError saying what is wrong). Forms use it to give the same errors.

    The size is checked before any rounding: ``1e30`` is "too large", never a
    ``decimal.InvalidOperation`` from ``quantize``.
    """
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
    if abs(amount) > MAX_AMOUNT:
        raise CreditError(f"The {what} {value} is too large (at most {MAX_AMOUNT}).", code="amount")
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
    return amount


def check_fits(*, name: str, balance: Decimal, amount: Decimal) -> None:
    """Refuse adding ``amount`` to ``balance`` when the result would not fit
    the balance column (checked before any provider is called)."""
    if balance + amount > MAX_AMOUNT:
        raise CreditError(
            f"{name} has {balance} credits; adding {amount} would make "
            f"{balance + amount}, more than an account can hold ({MAX_AMOUNT}). "
            "Enter a smaller amount.",
            code="amount",
        )


def parse_rate(value, *, what: str = "rate") -> Decimal:
    """Credits per segment: more than zero, at most 2 decimals, fits the column
    (ValueError saying what is wrong)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        value_ok = None
    else:
        value_ok = value
    try:
        rate = Decimal(str(value_ok).strip()) if value_ok is not None else None
    except InvalidOperation:
        rate = None
    if rate is None or not rate.is_finite():
        raise ValueError(
            f"The {what} must be a number of credits per segment like 2 or 1.50 (got {value!r})."
        )
    if rate <= 0:
        raise ValueError(f"The {what} must be more than zero (got {value}).")
    if rate > MAX_RATE:
        raise ValueError(f"The {what} {value} is too large (at most {MAX_RATE}).")
    if rate != rate.quantize(CENT):
        # Message credits and the ledger keep cents: 0.125 x 3 segments has no exact value.
        raise ValueError(f"The {what} can have at most 2 decimal places (got {value}).")
    return rate.quantize(CENT)


def _rate(key, value) -> Decimal:
    """One country's credits per segment (ValueError saying what is wrong)."""
    try:
        return parse_rate(value, what=f"rate for {key!r}")
    except ValueError as exc:
        if "more than zero" in str(exc):
            raise ValueError(
                f"{str(exc)[:-1]}; remove the country to charge the account's default "
                "credits per segment."
            ) from None
        raise


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
