"""Backends know their webhook URLs and pass them per message; a backend can
refuse a webhook call that is not the provider's (issue 9)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from decimal import Decimal

import pytest
from django.test import override_settings
from django.urls import reverse

from campaigns.counters import counters_recount
from campaigns.models import Campaign, Message
from providers.backends import webhook_urls_for
from providers.backends.base import WebhookForbidden, hmac_signature_valid
from providers.backends.simulator import SimulatorBackend
from tests.providers.contract.profile_thesmsworks import CREDENTIALS, TheSmsWorksProfile

pytestmark = pytest.mark.django_db

SITE = "https://sms.example.com"


def smsworks_account(make_account, **fields):
    account = make_account(backend="simulator", **fields)
    account.backend, account.credentials = "thesmsworks", CREDENTIALS
    account.save(update_fields=["backend", "credentials"])
    return account


def sent_payload(account) -> dict:
    profile = TheSmsWorksProfile()
    backend = account.get_backend(transport=profile.fake.transport)
    [result] = backend.send(profile_sms())
    assert result.accepted
    return profile.fake.calls_to("/message/send")[0].json


def profile_sms():
    from providers.backends.base import OutboundSms

    return [OutboundSms(reference="m1", to="+447700900001", body="Hello", sender="Acme")]


@override_settings(PUBLIC_BASE_URL=SITE + "/")
def test_the_sms_works_gets_our_delivery_report_url_and_validity_per_message(make_account):
    account = smsworks_account(make_account, message_validity=120)
    payload = sent_payload(account)
    assert payload["deliveryreporturl"] == (
        f"{SITE}/hooks/thesmsworks/{account.webhook_token}/status/"
    )
    assert payload["validity"] == 120
    assert webhook_urls_for(account).inbound.endswith("/inbound/")


@override_settings(PUBLIC_BASE_URL="")
def test_without_a_public_address_no_callback_url_is_sent(make_account):
    payload = sent_payload(smsworks_account(make_account))
    assert "deliveryreporturl" not in payload
    assert "validity" not in payload


class SigningSimulator(SimulatorBackend):
    """A provider that signs its calls: base64 HMAC-SHA256 of the body."""

    def verify_webhook(self, request) -> None:
        secret = self.credentials.get("webhook_secret", "")
        signature = request.headers.get("X-Signature", "")
        if not hmac_signature_valid(request.body, secret, signature):
            raise WebhookForbidden("the X-Signature header does not sign this body")


def sign(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


@override_settings(
    SMS_BACKENDS={"signing": "tests.providers.test_i9_webhooks.SigningSimulator"},
)
def test_a_call_the_backend_does_not_verify_is_refused_and_nothing_applied(client, make_account):
    account = make_account(backend="signing", credentials={"webhook_secret": "s3cret-hook"})
    campaign = Campaign.objects.create(name="P", account=account, body="Hi", status="sending")
    message = Message.objects.create(
        campaign=campaign,
        phone="+61400000001",
        body="Hi",
        status="sent",
        credits=Decimal("1"),
        provider_ref="sim-1",
    )
    counters_recount(campaign_id=campaign.pk)
    url = reverse(
        "hooks:webhook",
        kwargs={"provider": "signing", "token": account.webhook_token, "kind": "status"},
    )
    body = json.dumps({"type": "status", "provider_ref": "sim-1", "status": "delivered"}).encode()

    forged = client.post(url, body, content_type="application/json", HTTP_X_SIGNATURE="AAAA")
    assert forged.status_code == 403
    message.refresh_from_db()
    assert message.status == "sent"

    signed = client.post(
        url, body, content_type="application/json", HTTP_X_SIGNATURE=sign(body, "s3cret-hook")
    )
    assert signed.status_code == 200
    message.refresh_from_db()
    assert message.status == "delivered"


def test_hmac_signatures_in_base64_or_hex_are_checked_in_constant_time():
    body, secret = b'{"event":"sms.mo"}', "k3y"
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    assert hmac_signature_valid(body, secret, base64.b64encode(digest).decode())
    assert hmac_signature_valid(body, secret, digest.hex())
    assert not hmac_signature_valid(body + b" ", secret, digest.hex())
    assert not hmac_signature_valid(body, "", digest.hex())
    assert not hmac_signature_valid(body, secret, "")


def test_the_sms_works_account_page_says_replies_are_polled_and_the_webhook_is_faster(
    client, superuser, make_account
):
    account = smsworks_account(make_account)
    client.force_login(superuser)
    page = client.get(reverse("admin:providers_provideraccount_change", args=[account.pk]))
    text = page.content.decode()
    assert "Replies (and STOPs) are polled every minute" in text
    assert "Replies are received." in text
    assert f"/hooks/thesmsworks/{account.webhook_token}/inbound/" in text
