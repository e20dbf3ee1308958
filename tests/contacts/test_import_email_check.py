"""The import's e-mail check (a precompiled fast path, then Django's
validator) accepts and refuses exactly what ``validate_email`` does."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from contacts.importing.staging import _PLAIN_EMAIL, is_email


def django_accepts(value: str) -> bool:
    try:
        validate_email(value)
    except ValidationError:
        return False
    return True


TRICKY = [
    "p1@example.com",
    "Ann.Lee@Example.COM",
    "a@b.co",
    "a@b.c",  # a one-letter top-level domain
    "a@b.c0",
    "a@b.xn--p1ai",  # punycode top-level domain
    "a@xn--bcher-kva.ch",
    "a@bücher.ch",
    "a@b.com.",  # a trailing dot
    "a@-b.com",
    "a@b-.com",
    "a@b..com",
    "a@.b.com",
    "a@b.-com",
    "a@b.co-m",
    "a@" + "b" * 63 + ".com",
    "a@" + "b" * 64 + ".com",
    "a@b." + "c" * 63,
    "a@b." + "c" * 64,
    "x" * 310 + "@b.com",
    "x" * 320 + "@b.com",
    ".a@b.com",
    "a.@b.com",
    "a..b@b.com",
    "a b@b.com",
    '"a b"@b.com',
    '"a\\"b"@b.com',
    "a@b@c.com",
    "a@localhost",
    "a@LOCALHOST",
    "a@[127.0.0.1]",
    "a@[::1]",
    "a@[300.0.0.1]",
    "a@127.0.0.1",
    "!#$%&'*+/=?^_`{|}~-@b.com",
    "a@b.com\n",
    "a@b.com ",
    " a@b.com",
    "a@b_c.com",
    "a@b.com\x00",
    "ann@mañana.es",
    "añn@b.com",
    "",
    "@",
    "a@",
    "@b.com",
    "a",
]


@pytest.mark.parametrize("value", TRICKY)
def test_same_answer_as_django_on_tricky_addresses(value):
    assert is_email(value) == django_accepts(value)


def test_the_fast_path_is_taken_for_common_addresses():
    # A test that can fail: if the fast pattern stopped matching the common
    # shape, imports would silently fall back to the slow validator.
    for value in ("p1@example.com", "Ann.Lee+news@mail.example.com.au", "a_b-c@b-c.io"):
        assert _PLAIN_EMAIL.fullmatch(value)


LOCAL = st.text(alphabet="aZ09.-_+!#'\"\\ @(", min_size=0, max_size=12)
DOMAIN = st.text(alphabet="aZ09.-_[]:ü", min_size=0, max_size=20)


@settings(max_examples=2000, deadline=None)
@given(local=LOCAL, domain=DOMAIN)
def test_same_answer_as_django_on_generated_addresses(local, domain):
    value = f"{local}@{domain}"
    assert is_email(value) == django_accepts(value)


@settings(max_examples=500, deadline=None)
@given(value=st.text(max_size=40))
def test_same_answer_as_django_on_any_text(value):
    assert is_email(value) == django_accepts(value)
