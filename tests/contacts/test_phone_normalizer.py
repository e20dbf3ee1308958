"""PhoneNormalizer (the import's fast path) answers exactly as normalize_phone."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from contacts.phones import PhoneNormalizer, normalize_phone


def _answer(function, value):
    try:
        return function(value)
    except ValidationError as exc:
        return ("error", exc.messages)


SEPARATORS = st.sampled_from(["", " ", "-", ".", "(", ")", "/"])


@st.composite
def typed_numbers(draw):
    """Numbers as people type them: national or international, with separators."""
    prefix = draw(st.sampled_from(["", "0", "+61", "+44", "+1", "+64", "0061", "+", "00", "61"]))
    digits = draw(st.text(alphabet="0123456789", min_size=1, max_size=13))
    cut = draw(st.integers(min_value=0, max_value=len(digits)))
    sep = draw(SEPARATORS)
    return f"{prefix}{digits[:cut]}{sep}{digits[cut:]}"


@settings(max_examples=600, deadline=None)
@given(
    value=typed_numbers(),
    region=st.sampled_from(["AU", "GB", "US", "NZ", "DE", "IT", "AR", "MX", "IN", "BR"]),
)
def test_same_answer_as_normalize_phone(value, region):
    assert _answer(PhoneNormalizer(region), value) == _answer(
        lambda v: normalize_phone(v, region=region), value
    )


def test_a_country_code_never_starts_with_zero():
    # Found by the property test: "+040..." is no number, not Romania (+40).
    value = "+040219000"
    assert _answer(PhoneNormalizer("AU"), value) == _answer(normalize_phone, value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0412 345 678", "+61412345678"),
        ("+61 (0) 412 345 678", "+61412345678"),
        ("(02) 9123-4567", "+61291234567"),
        ("412345678", "+61412345678"),
        ("+1 415 555 2671", "+14155552671"),
    ],
)
def test_common_formats(value, expected):
    assert PhoneNormalizer("AU")(value) == expected
