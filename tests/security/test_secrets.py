"""Secrets at rest and out of logs: credentials encrypted in the database
(with key rotation), the SMS Works runtime token masked and encrypted in the
cache, webhook tokens and credentials removed from every log line, provider
error texts redacted before they are stored."""

from __future__ import annotations

import json
import logging
from io import StringIO

import httpx
import pytest
from cryptography.fernet import Fernet
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.urls import reverse

from providers.backends.base import ProviderError
from providers.backends.thesmsworks import TheSmsWorksBackend
from providers.models import ProviderAccount
from smsoffice.logredact import redact_text

pytestmark = pytest.mark.django_db

SECRET = "hunter2-very-secret"
JWT = "JWT eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


def stored_credentials(account) -> str:
    table = ProviderAccount._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT credentials FROM {table} WHERE id = %s", [account.pk])
        return cursor.fetchone()[0]


def test_credentials_are_encrypted_at_rest(make_account):
    account = make_account(name="Enc", credentials={"username": "acme", "password": SECRET})
    raw = stored_credentials(account)
    assert SECRET not in raw and "acme" not in raw
    assert raw.startswith("gAAAAA")
    account = ProviderAccount.objects.get(pk=account.pk)
    assert account.credentials == {"username": "acme", "password": SECRET}


def test_rotation_re_encrypts_with_the_new_key_and_the_old_key_can_go(settings, make_account):
    old = settings.CREDENTIALS_KEYS[0]
    account = make_account(name="Rot", credentials={"password": SECRET})
    before = stored_credentials(account)
    new = Fernet.generate_key().decode()
    settings.CREDENTIALS_KEYS = [new, old]
    assert ProviderAccount.objects.get(pk=account.pk).credentials == {"password": SECRET}
    out = StringIO()
    call_command("credentials_rotate", stdout=out)
    assert "Re-encrypted the credentials of 1 account(s)" in out.getvalue()
    assert stored_credentials(account) != before
    settings.CREDENTIALS_KEYS = [new]
    assert ProviderAccount.objects.get(pk=account.pk).credentials == {"password": SECRET}
    settings.CREDENTIALS_KEYS = [old]
    with pytest.raises(ImproperlyConfigured, match="cannot be decrypted with CREDENTIALS_KEYS"):
        ProviderAccount.objects.get(pk=account.pk)


def test_plain_credentials_from_before_encryption_are_read_and_then_encrypted(make_account):
    account = make_account(name="Legacy")
    table = ProviderAccount._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET credentials = %s WHERE id = %s",
            [json.dumps({"password": SECRET}), account.pk],
        )
    assert ProviderAccount.objects.get(pk=account.pk).credentials == {"password": SECRET}
    call_command("credentials_rotate", stdout=StringIO())
    assert SECRET not in stored_credentials(account)


# ------------------------------------------------------- SMS Works token
def _echoing_provider(request: httpx.Request) -> httpx.Response:
    if request.url.path.endswith("/auth/token"):
        return httpx.Response(200, json={"token": JWT})
    # A provider that echoes the request headers in its error.
    return httpx.Response(
        400,
        json={
            "message": f"Bad request; Authorization: {request.headers['Authorization']}",
            "errorCode": 4000,
        },
    )


def test_the_runtime_token_is_masked_in_errors_and_logs(caplog):
    caplog.set_level(logging.DEBUG)
    backend = TheSmsWorksBackend(
        credentials={"customerid": "cust-1", "key": "key-1", "secret": "s3cret-1"},
        transport=httpx.MockTransport(_echoing_provider),
        account_key="9",
    )
    with pytest.raises(ProviderError) as caught:
        backend.balance()
    bare = JWT.split(" ", 1)[1]
    text = str(caught.value) + json.dumps(
        caught.value.as_dict() if hasattr(caught.value, "as_dict") else {}
    )
    assert bare not in text
    assert bare not in caplog.text
    # And once known, the token is masked in any later log line of the process.
    logging.getLogger("campaigns.dispatch").warning("provider said: %s", bare)
    assert bare not in caplog.text


def test_the_runtime_token_is_not_kept_in_plain_text_in_the_cache():
    def ok(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/auth/token"):
            return httpx.Response(200, json={"token": JWT})
        return httpx.Response(200, json={"credits": 5})

    creds = {"customerid": "cust-1", "key": "key-1", "secret": "s3cret-1"}
    backend = TheSmsWorksBackend(
        credentials=creds, transport=httpx.MockTransport(ok), account_key="9"
    )
    backend.balance()
    key = backend._token_cache_key(backend._credentials())
    cached = cache.get(key)
    assert cached and JWT not in cached and "eyJ" not in cached
    # A second backend (another worker) reuses it without a new login.
    calls = []

    def count(request):
        calls.append(request.url.path)
        return ok(request)

    again = TheSmsWorksBackend(
        credentials=creds, transport=httpx.MockTransport(count), account_key="9"
    )
    again.balance()
    assert not any(path.endswith("/auth/token") for path in calls)


# ------------------------------------------------------------- logging
def test_webhook_tokens_never_reach_the_request_log(client, make_account, caplog):
    account = make_account(name="Hooked", backend="thesmsworks")
    token = account.webhook_token
    caplog.set_level(logging.INFO)
    address = reverse(
        "hooks:webhook", kwargs={"provider": "thesmsworks", "token": token, "kind": "bogus"}
    )
    assert client.post(address, data="{}", content_type="application/json").status_code == 404
    assert any(r.name == "django.request" for r in caplog.records)
    assert token not in caplog.text
    assert "/hooks/thesmsworks/***/bogus/" in caplog.text


def test_every_logger_is_redacted_django_server_included(make_account):
    account = make_account(name="Srv", backend="thesmsworks", credentials={"secret": SECRET})
    account.get_backend().close()  # registers the account's secrets in this process
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    logger = logging.getLogger("django.server")
    handler = Keep()
    logger.addHandler(handler)
    try:
        logger.info(
            '"%s" %s %s',
            f"POST /hooks/thesmsworks/{account.webhook_token}/status/ HTTP/1.1",
            200,
            1,
        )
        logging.getLogger("django.request").error("failed with %s", SECRET)
        logger.error("boom", exc_info=ValueError(f"password={SECRET}"))
    finally:
        logger.removeHandler(handler)
    text = "\n".join(logging.Formatter().format(r) for r in records)
    assert account.webhook_token not in text
    assert SECRET not in text
    assert "/hooks/thesmsworks/***/status/" in text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Authorization: JWT abc.def.ghijkl", "Authorization: ***"),
        ('{"authorization": "Bearer abcdefgh1234"}', '{"authorization": "***"}'),
        ("token Bearer abcdefgh12345 refused", "token Bearer *** refused"),
        ("GET /hooks/callr/AbCdEf0123456789xyz/status/", "GET /hooks/callr/***/status/"),
        ("nothing secret here", "nothing secret here"),
        ("Basic authentication required", "Basic authentication required"),
    ],
)
def test_redact_text(raw, expected):
    assert redact_text(raw) == expected


def test_stored_error_texts_are_redacted(make_account):
    from datetime import UTC, datetime
    from decimal import Decimal

    from campaigns.counters import counters_recount
    from campaigns.models import Campaign, Message
    from campaigns.reports import statuses_apply
    from providers.backends.base import DeliveryStatus, StatusUpdate

    account = make_account(name="Rep", balance=Decimal(5))
    campaign = Campaign.objects.create(name="C", account=account, body="Hi", status="sending")
    message = Message.objects.create(
        campaign=campaign,
        phone="+61400123456",
        body="Hi",
        status="sent",
        credits=Decimal(1),
        provider_ref="p1",
        sent_at=datetime(2024, 1, 1, tzinfo=UTC),
    )
    counters_recount(campaign_id=campaign.pk)
    statuses_apply(
        account=account,
        updates=[
            StatusUpdate(
                status=DeliveryStatus.UNDELIVERED,
                provider_ref="p1",
                error_message=f"refused; Authorization: {JWT}",
            )
        ],
    )
    message.refresh_from_db()
    assert "eyJ" not in message.raw_error
    assert "Authorization: ***" in message.raw_error


@override_settings(DEBUG=False)
def test_the_test_settings_have_a_real_encryption_key(settings):
    assert settings.CREDENTIALS_KEYS and Fernet(settings.CREDENTIALS_KEYS[0].encode())
