"""Phone-number normalisation: every number we store is E.164 (``+61400123456``)."""

from __future__ import annotations

import functools
import re

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


# Separators people put in numbers; removed before the fast path looks.
_SEPARATORS = str.maketrans("", "", " -.()/\u00a0\t")


class PhoneNormalizer:
    """:func:`normalize_phone` for many numbers at once (imports, searches).

    Same answers, same errors: a fast path reads the common shapes
    (``+<country><number>`` and a national number of the region, with any
    separators) without :func:`phonenumbers.parse`, and accepts a number only
    when phonenumbers says it is valid; anything else (letters, extensions,
    ``00`` prefixes, carrier codes, numbers valid only in a neighbour region)
    goes through :func:`normalize_phone`. About 4x faster on clean input.
    """

    def __init__(self, region: str | None = None) -> None:
        self.region = (region or settings.PHONE_DEFAULT_REGION or "").upper() or None
        self._metadata = (
            phonenumbers.PhoneMetadata.metadata_for_region(self.region) if self.region else None
        )
        self._country_code = self._metadata.country_code if self._metadata else None
        md = self._metadata
        self._national = (
            md is not None
            and md.national_prefix_transform_rule is None
            and md.national_prefix_for_parsing is not None
        )
        if self._national:
            self._idd = re.compile(md.international_prefix) if md.international_prefix else None
            self._prefix = re.compile(md.national_prefix_for_parsing)

    def __call__(self, value: str) -> str:
        """E.164 of ``value``, or ``ValidationError`` as :func:`normalize_phone`."""
        fast = self._fast(value)
        return fast if fast is not None else normalize_phone(value, region=self.region)

    def _fast(self, value: str) -> str | None:
        cleaned = (value or "").translate(_SEPARATORS)
        if not cleaned:
            return None
        if cleaned[0] == "+":
            digits = cleaned[1:]
            if not digits.isdigit() or digits[0] == "0":
                return None  # no country code starts with 0
            for size in (1, 2, 3):
                code = int(digits[:size])
                regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code)
                if regions:
                    return self._valid(code, digits[size:], regions)
            return None
        if not (self._national and cleaned.isdigit()):
            return None
        if self._idd is not None and self._idd.match(cleaned):
            return None  # an international call prefix: let parse read it
        match = self._prefix.match(cleaned)
        if match is not None:
            if match.lastindex and any(match.groups()):
                return None  # a carrier selection code
            cleaned = cleaned[match.end() :]
        return self._valid(self._country_code, cleaned, (self.region,))

    @staticmethod
    def _valid(code: int, national: str, regions) -> str | None:
        if not national or national[0] == "0" or len(national) > 17:
            return None
        region = regions[0]
        if region == phonenumbers.UNKNOWN_REGION:
            return None
        check = _region_check(region)
        if check is not None and check(national):
            return f"+{code}{national}"
        return None


class _RegionCheck:
    """``is_valid_number_for_region`` for a national number, precompiled.

    phonenumbers answers "valid" when the number matches the region's
    general description and then any of its number types (it returns the
    first type that matches; any type at all means valid). This checks the
    same descriptions, each with its possible lengths first, mobile and
    fixed line first because most numbers are one of those.
    """

    TYPES = (
        "mobile",
        "fixed_line",
        "premium_rate",
        "toll_free",
        "shared_cost",
        "voip",
        "personal_number",
        "pager",
        "uan",
        "voicemail",
    )

    def __init__(self, metadata) -> None:
        self.general = self._compile(metadata.general_desc)
        self.types = [
            desc for name in self.TYPES if (desc := self._compile(getattr(metadata, name)))
        ]

    @staticmethod
    def _compile(desc):
        if desc is None or not desc.national_number_pattern:
            return None
        lengths = frozenset(desc.possible_length or ())
        return lengths, re.compile(desc.national_number_pattern)

    @staticmethod
    def _matches(desc, national: str) -> bool:
        lengths, pattern = desc
        if lengths and len(national) not in lengths:
            return False
        return pattern.fullmatch(national) is not None

    def __call__(self, national: str) -> bool:
        if self.general is None or not self._matches(self.general, national):
            return False
        return any(self._matches(desc, national) for desc in self.types)


@functools.cache
def _region_check(region: str) -> _RegionCheck | None:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    return _RegionCheck(metadata) if metadata is not None else None
