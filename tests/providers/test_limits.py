"""providers.limits: each provider's documented body and sender limits, with
errors that name the limit."""

from __future__ import annotations

import pytest

from providers.limits import check_body, check_sender, limits_for
from providers.sms import measure

CURLY = "\u2019"


@pytest.mark.parametrize(
    ("backend", "ok_length", "limit_text"),
    [
        ("smseveryone", 2000, "SMS Everyone accepts at most 2000 characters"),
        ("thesmsworks", 1280, "The SMS Works accepts at most 1280 characters"),
        ("callr", 3200, "CALLR accepts at most 3200 characters"),
        ("simulator", 2000, "at most 2000 characters"),
    ],
)
def test_character_limits(backend, ok_length, limit_text):
    assert check_body(backend, measure("a" * ok_length)) == []
    errors = check_body(backend, measure("a" * (ok_length + 1)))
    assert len(errors) == 1
    assert limit_text in errors[0]
    assert f"is {ok_length + 1} characters" in errors[0]
    assert "Shorten it by 1 characters" in errors[0]


def test_character_limits_count_code_points_not_units():
    # 2000 emoji are 4000 UTF-16 units, but SMS Everyone counts characters.
    assert check_body("smseveryone", measure("\U0001f600" * 2000)) == []


def test_fullsms_limits_gsm_units_with_extension_characters_counting_two():
    assert check_body("fullsms", measure("a" * 610 + "€")) == []  # 612 units
    errors = check_body("fullsms", measure("a" * 611 + "€"))  # 612 characters, 613 units
    assert errors == [
        "The message needs 613 GSM-7 units (extension characters | ^ € { } [ ] ~ \\ count 2); "
        "FullSMS accepts at most 612 GSM-7 units (4 SMS parts). Shorten it by 1."
    ]


def test_fullsms_limits_ucs2_to_268_and_suggests_dropping_the_ucs2_characters():
    assert check_body("fullsms", measure(CURLY * 268)) == []
    (error,) = check_body("fullsms", measure(CURLY * 269))
    assert "FullSMS accepts at most 268 UCS-2 units (4 SMS parts)" in error
    assert "remove the characters that force UCS-2" in error
    assert "612 GSM-7 characters" in error


def test_transmitsms_limits_612_gsm_units():
    assert check_body("transmitsms", measure("a" * 612)) == []
    (error,) = check_body("transmitsms", measure("a" * 613))
    assert "TransmitSMS accepts at most 612 GSM-7 units" in error


def test_empty_body_is_an_error_everywhere():
    for backend in ("smseveryone", "fullsms", "simulator", "custom"):
        assert check_body(backend, measure("")) == [
            "The message is empty: write a text (or choose a template with one)."
        ]


def test_unknown_backend_gets_generous_defaults():
    assert limits_for("my_own_backend").max_characters == 2000
    assert check_sender("my_own_backend", "") == []


# ------------------------------------------------------------------- sender


@pytest.mark.parametrize("backend", ["smseveryone", "thesmsworks", "fullsms", "transmitsms"])
@pytest.mark.parametrize("sender", ["Acme", "AcmePizza11", "61400190499", "+61400190499"])
def test_valid_senders(backend, sender):
    assert check_sender(backend, sender) == []


def test_alphanumeric_sender_longer_than_11_is_refused_naming_the_limit():
    (error,) = check_sender("smseveryone", "AcmePizzaCo1")
    assert error == (
        "The sender ID 'AcmePizzaCo1' is 12 characters; SMS Everyone accepts up to 11 "
        "characters for an alphanumeric sender. It must also be an origin registered with "
        "SMS Everyone."
    )


def test_numeric_sender_longer_than_15_digits_is_refused():
    (error,) = check_sender("transmitsms", "1234567890123456")
    assert "has 16 digits; TransmitSMS accepts up to 15 digits" in error


def test_the_sms_works_needs_at_least_3_characters():
    (error,) = check_sender("thesmsworks", "AB")
    assert "The SMS Works accepts 3 to 11 characters" in error
    (error,) = check_sender("thesmsworks", "12")
    assert "The SMS Works accepts 3 to 15 digits" in error


def test_the_sms_works_refuses_spaces_callr_accepts_them():
    (error,) = check_sender("thesmsworks", "Acme Pizza")
    assert "contains ' '" in error
    assert "allows only letters A-Z and digits" in error
    assert check_sender("callr", "Acme Pizza") == []
    assert check_sender("callr", "Acme-Co_1") == []


def test_callr_sender_must_contain_a_letter():
    errors = check_sender("callr", "12-34")
    assert errors == [
        "The sender ID '12-34' needs at least one letter (or use a phone number). "
        'Custom sender IDs may need approval by CALLR ("SMS" is always allowed).'
    ]


def test_non_ascii_letters_are_refused():
    (error,) = check_sender("smseveryone", "Café")
    assert "contains 'é'" in error


def test_empty_sender_is_refused_where_the_provider_requires_one():
    for backend, label in (
        ("smseveryone", "SMS Everyone"),
        ("thesmsworks", "The SMS Works"),
        ("fullsms", "FullSMS"),
    ):
        assert check_sender(backend, "") == [
            f"{label} needs a sender ID: set one on the campaign or a default sender on the "
            "provider account."
        ]
    # CALLR picks a shared shortcode, TransmitSMS the shared number pool.
    assert check_sender("callr", "") == []
    assert check_sender("transmitsms", "") == []
    assert check_sender("simulator", "") == []


def test_plus_sign_only_for_numbers():
    (error,) = check_sender("smseveryone", "+Acme")
    assert "starts with + but is not a number" in error
