"""Phone-number normalisation: every number we store is E.164 (``+61400123456``)."""

from __future__ import annotations

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError

_REASONS = {
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "the country code is not valid",
    phonenumbers.ValidationResult.TOO_SHORT: "it is too short",
    phonenumbers.ValidationResult.INVALID_LENGTH: "it has the wrong number of digits",
    phonenumbers.ValidationResult.TOO_LONG: "it is too long",
}


def normalize_phone(value: str, *, region: str | None = None) -> str:
    """Return ``value`` as E.164, or raise ``ValidationError`` naming value and reason.

    National formats are read in ``region`` (default ``PHONE_DEFAULT_REGION``):
    ``"0400 123 456"`` in AU becomes ``"+61400123456"``. International input
    (``+44 7700 900123`` or ``0044…``) ignores the region.
    """
    raw = (value or "").strip()
    region = (region or settings.PHONE_DEFAULT_REGION or "").upper() or None
    if not raw:
        raise ValidationError("A phone number is required.", code="required")
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise ValidationError(
            "%(value)r is not a phone number: %(reason)s. "
            "Use international format (+61400123456) or a national number of %(region)s.",
            code="invalid_phone",
            params={
                "value": value,
                "reason": str(exc.args[0] if exc.args else exc).rstrip("."),
                "region": region or "the default region",
            },
        ) from None
    if not phonenumbers.is_valid_number(parsed):
        possible = phonenumbers.is_possible_number_with_reason(parsed)
        reason = _REASONS.get(possible, "no such number exists in its numbering plan")
        raise ValidationError(
            "%(value)r is not a valid phone number: %(reason)s.",
            code="invalid_phone",
            params={"value": value, "reason": reason},
        )
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def try_normalize_phone(value: str, *, region: str | None = None) -> str | None:
    """Like :func:`normalize_phone` but returns ``None`` for an invalid number."""
    try:
        return normalize_phone(value, region=region)
    except ValidationError:
        return None


def phone_region(e164: str) -> str | None:
    """ISO country code (``"AU"``) of an E.164 number, or ``None`` if unknown."""
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(e164, None)) or None
    except phonenumbers.NumberParseException:
        return None
