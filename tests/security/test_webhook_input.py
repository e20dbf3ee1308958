"""Webhooks never answer 500: bodies the parser cannot take are a 400 with a
reason, NUL characters and lone surrogates never reach the database, and
bodies and fields have length caps."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from campaigns.models import InboundMessage
from campaigns.webhook_input import (
    FIELD_CAPS,
    MAX_BODY_BYTES,
    MAX_JSON_DEPTH,
    clean_text,
    json_depth,
)
from providers.backends.thesmsworks import TheSmsWorksBackend

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    # Like a provider: no CSRF token, and a crash is an answer, not an exception.
    return Client(enforce_csrf_checks=True, raise_request_exception=False)


@pytest.fixture
def works(make_account):
    return make_account(balance=Decimal("5"), backend="thesmsworks", name="Works")


@pytest.fixture
def everyone(make_account):
    return make_account(
        backend="smseveryone",
        name="Everyone",
        credentials={"username": "u", "password": "p"},
    )


def hook(account, kind="inbound"):
    return reverse(
        "hooks:webhook",
        kwargs={"provider": account.backend, "token": account.webhook_token, "kind": kind},
    )


def post_raw(client, address, text: str):
    return client.post(address, data=text.encode("utf-8"), content_type="application/json")


def inbound_json(content_json: str, **extra) -> str:
    """A The SMS Works incoming message (its doc's example) whose ``content``
    is the given JSON string literal, written by hand so escapes survive."""
    fields = {"from": "447911100100", "messageid": "6170167", "messagetype": "incoming"} | extra
    rest = json.dumps(fields)[1:-1]
    return '{"content": ' + content_json + ", " + rest + "}"


def test_deeply_nested_json_is_400_not_a_recursion_crash(client, works):
    depth = 100_000
    response = post_raw(client, hook(works, "status"), "[" * depth + "]" * depth)
    assert response.status_code == 400
    assert f"at most {MAX_JSON_DEPTH}" in response.content.decode()


def test_a_lone_surrogate_is_replaced_and_the_reply_stored(client, works):
    response = post_raw(client, hook(works), inbound_json('"hi \\ud800 there"'))
    assert response.status_code == 200
    stored = InboundMessage.objects.get()
    assert stored.body == "hi \ufffd there"
    assert stored.raw["content"] == "hi \ufffd there"


def test_nul_characters_are_stripped_before_storing(client, works):
    response = post_raw(client, hook(works), inbound_json('"hello\\u0000world"', note="a\u0000b"))
    assert response.status_code == 200
    stored = InboundMessage.objects.get()
    assert stored.body == "helloworld"
    assert "\x00" not in json.dumps(stored.raw, ensure_ascii=False)


def test_nul_in_a_query_string_webhook_is_stripped(client, everyone):
    response = client.get(
        hook(everyone),
        {"originator": "61400123456", "message_text": "hi\x00there", "reference": "r1"},
    )
    assert response.status_code == 200
    assert InboundMessage.objects.get().body == "hithere"


def test_an_oversized_body_is_400_with_the_limit(client, works):
    body = inbound_json(json.dumps("x" * (MAX_BODY_BYTES + 1)))
    response = post_raw(client, hook(works), body)
    assert response.status_code == 400
    assert f"at most {MAX_BODY_BYTES} are accepted" in response.content.decode()
    assert not InboundMessage.objects.exists()


def test_a_field_over_its_cap_is_400_naming_it(client, works):
    body = inbound_json('"hi"', messageid="m" * (FIELD_CAPS["provider_ref"] + 1))
    response = post_raw(client, hook(works), body)
    assert response.status_code == 400
    assert "'provider_ref' is 101 characters long" in response.content.decode()
    assert not InboundMessage.objects.exists()


def test_any_parser_crash_is_a_400(client, works, monkeypatch):
    def broken(self, request):
        raise TypeError("unexpected")

    monkeypatch.setattr(TheSmsWorksBackend, "parse_webhook", broken)
    response = post_raw(client, hook(works, "status"), "{}")
    assert response.status_code == 400
    assert "could not be read" in response.content.decode()


def test_json_depth_ignores_brackets_inside_strings():
    assert json_depth(b'{"a": "[[[[{{{{", "b": [1, {"c": 2}]}') == 3
    assert json_depth(b'{"a": "\\"[[["}') == 1
    assert json_depth(b"originator=1&text=[[[") == 0


def test_clean_text_keeps_valid_pairs_and_text():
    assert clean_text("ok \U0001f600") == "ok \U0001f600"
    assert clean_text("\ud83d\ude00") == "\U0001f600"  # a pair split in two code points
    assert clean_text("a\udc00b\x00") == "a\ufffdb"
