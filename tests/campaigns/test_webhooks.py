"""Webhook views: /hooks/<provider>/<account token>/<kind>/."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from campaigns.counters import counters_recount
from campaigns.models import Campaign, InboundMessage, Message
from campaigns.webhooks import account_for_token
from contacts.models import OptOut
from providers.models import CreditTransaction

pytestmark = pytest.mark.django_db

MS = Message.Status

# The SMS Works doc's examples ("Delivery Reports", "Incoming SMS").
DLR = {
    "__v": 0,
    "_id": "5ab817e969722262a9711bb4",
    "content": "Greetings!",
    "created": "2017-03-25T21:43:05.667Z",
    "credits": 1,
    "customerid": "your customer id",
    "destination": 447911100100,
    "failurereason": {
        "code": 1,
        "details": "Handset Error: Number does not exist or has not been assigned to a user.",
        "permanent": False,
    },
    "international": False,
    "keyword": "",
    "messageid": "128032521395903584",
    "modified": "2017-03-25T21:43:13.229Z",
    "schedule": "2017-03-25T21:43:05.665Z",
    "sender": "TheSMSWorks",
    "status": "DELIVERED",
    "tag": "",
}
INBOUND = {
    "content": "INCOMING CONTENT",
    "from": "447911100100",
    "messageid": "6170167",
    "messagetype": "incoming",
    "to": "447777777778",
    "parts": 1,
}


@pytest.fixture
def client():
    # CSRF enforced as in production: the views must be exempt.
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def account(make_account):
    return make_account(balance=Decimal("50"), backend="thesmsworks", name="Works")


@pytest.fixture
def message(account):
    campaign = Campaign.objects.create(name="Promo", account=account, body="Hi", status="sending")
    message = Message.objects.create(
        campaign=campaign,
        phone="+447911100100",
        body="Hi",
        status=MS.SENT,
        credits=Decimal("1"),
        provider_ref="128032521395903584",
        sent_at=datetime(2024, 1, 1, tzinfo=UTC),
    )
    counters_recount(campaign_id=campaign.pk)
    return message


def url(account, kind="status", provider=None, token=None):
    return reverse(
        "hooks:webhook",
        kwargs={
            "provider": provider or account.backend,
            "token": token or account.webhook_token,
            "kind": kind,
        },
    )


def post(client, address, payload):
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return client.post(address, data=data, content_type="application/json")


def status_of(message) -> str:
    message.refresh_from_db()
    return message.status


def test_a_delivery_report_is_applied(client, account, message):
    response = post(client, url(account), DLR)
    assert response.status_code == 200
    assert status_of(message) == MS.DELIVERED
    message.campaign.refresh_from_db()
    assert (message.campaign.sent_count, message.campaign.delivered_count) == (0, 1)


def test_a_bad_token_is_403_and_stores_nothing(client, account, message):
    token = account.webhook_token
    bad = token[:-1] + ("A" if token[-1] != "A" else "B")
    for address in (
        url(account, token=bad),
        url(account, token="short"),
        url(account, token="x" * 40),
        url(account, provider="smseveryone"),
    ):
        assert post(client, address, DLR).status_code == 403
        assert post(client, address.replace("/status/", "/inbound/"), INBOUND).status_code == 403
    assert status_of(message) == MS.SENT
    assert not InboundMessage.objects.exists()


def test_tokens_are_compared_whole(account):
    token = account.webhook_token
    assert account_for_token(provider="thesmsworks", token=token) == account
    assert account_for_token(provider="thesmsworks", token=token[:-1]) is None
    assert account_for_token(provider="thesmsworks", token=token + "x") is None
    assert account_for_token(provider="simulator", token=token) is None


def test_malformed_json_is_400_with_a_reason_and_stores_nothing(client, account, message):
    response = post(client, url(account), '{"messageid": "128032521395903584", "status": ')
    assert response.status_code == 400
    assert "not JSON" in response.content.decode()
    response = post(client, url(account), {"status": "DELIVERED"})
    assert response.status_code == 400
    assert "messageid" in response.content.decode()
    # A list whose second item is bad: the first is not applied either.
    response = post(client, url(account), [DLR, {"status": "DELIVERED"}])
    assert response.status_code == 400
    assert status_of(message) == MS.SENT


def test_the_same_report_twice_changes_nothing_more(client, account, message):
    undelivered = {**DLR, "status": "UNDELIVERED"}
    assert post(client, url(account), undelivered).status_code == 200
    assert post(client, url(account), undelivered).status_code == 200
    assert status_of(message) == MS.UNDELIVERED
    refunds = CreditTransaction.objects.filter(account=account, kind="refund")
    assert list(refunds.values_list("amount", flat=True)) == [Decimal("1")]
    message.campaign.refresh_from_db()
    assert (message.campaign.sent_count, message.campaign.failed_count) == (0, 1)


def test_out_of_order_reports_never_go_backwards(client, account, message):
    assert post(client, url(account), DLR).status_code == 200
    assert post(client, url(account), {**DLR, "status": "ACCEPTED"}).status_code == 200
    assert post(client, url(account), {**DLR, "status": "UNDELIVERED"}).status_code == 200
    assert status_of(message) == MS.DELIVERED
    assert message.raw_status == "DELIVERED"
    assert not CreditTransaction.objects.filter(account=account, kind="refund").exists()


def test_unknown_message_ids_answer_200_so_the_provider_stops(client, account, message):
    response = post(client, url(account), {**DLR, "messageid": "someone-else"})
    assert response.status_code == 200
    assert status_of(message) == MS.SENT


def test_a_report_before_the_send_is_recorded_asks_to_retry(client, account, message):
    Message.objects.filter(pk=message.pk).update(status=MS.SUBMITTING, provider_ref="")
    response = post(client, url(account), {**DLR, "messageid": "new", "tag": f"m{message.pk}"})
    assert response.status_code == 503
    assert response["Retry-After"] == "60"
    assert status_of(message) == MS.SUBMITTING


def test_an_incoming_stop_opts_out_at_once(client, account, message):
    response = post(client, url(account, "inbound"), {**INBOUND, "content": "Stop."})
    assert response.status_code == 200
    reply = InboundMessage.objects.get()
    assert (reply.phone, reply.provider_ref, reply.action, reply.in_reply_to) == (
        "+447911100100",
        "6170167",
        "opt_out",
        message,
    )
    assert OptOut.objects.get().source_reference == f"inbound:{reply.pk}"
    # Delivered again by the provider: still one reply, one opt-out.
    assert post(client, url(account, "inbound"), {**INBOUND, "content": "Stop."}).status_code == 200
    assert (InboundMessage.objects.count(), OptOut.objects.count()) == (1, 1)


def test_an_unknown_kind_is_404(client, account):
    assert post(client, url(account, "bounces"), DLR).status_code == 404


def test_other_methods_are_refused(client, account):
    assert client.put(url(account), data="{}").status_code == 405


def test_sms_everyone_replies_are_a_get_answered_with_plain_zero(client, make_account):
    account = make_account(
        backend="smseveryone", credentials={"username": "u", "password": "p"}, name="Everyone"
    )
    response = client.get(
        url(account, "inbound"),
        {
            "originator": "61412345678",
            "recipient": "61400000000",
            "reference": "r-1",
            "message_text": "STOP",
        },
    )
    assert response.status_code == 200
    assert response.content == b"0"
    assert response["Content-Type"].startswith("text/plain")
    reply = InboundMessage.objects.get()
    assert (reply.account, reply.phone, reply.body, reply.action) == (
        account,
        "+61412345678",
        "STOP",
        "opt_out",
    )
    assert OptOut.objects.filter(phone="+61412345678").exists()


def test_sms_everyone_reply_without_a_sender_is_400(client, make_account):
    account = make_account(backend="smseveryone", name="Everyone")
    response = client.get(url(account, "inbound"), {"message_text": "hi"})
    assert response.status_code == 400
    assert "originator" in response.content.decode()
    assert not InboundMessage.objects.exists()


def test_the_account_page_shows_its_webhook_urls(client, superuser, account):
    client.force_login(superuser)
    page = client.get(reverse("admin:providers_provideraccount_change", args=[account.pk]))
    assert page.status_code == 200
    assert url(account, "status") in page.content.decode()
    assert url(account, "inbound") in page.content.decode()
