"""CALLR backend against httpx.MockTransport: JSON-RPC 2.0 envelopes with the
doc's methods and parameters (provider-docs/callr.txt and its README notes)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from django.test import Client, RequestFactory

from providers.backends.base import (
    DeliveryStatus,
    ErrorKind,
    OutboundSms,
    ProviderError,
    ProviderRef,
    SendOutcome,
    WebhookError,
    WebhookForbidden,
    WebhookUrls,
    batch_stop_error,
)
from providers.backends.callr import JSONRPC_ERRORS, STATUS_MAP, CallrBackend
from tests.campaigns.engine_helpers import clock, enqueue_calls, enqueued  # noqa: F401
from tests.providers.contract.fakes import ScriptedApi

CREDENTIALS = {"login": "acme_login", "password": "callr-pass-1"}
AUTH = "Basic " + base64.b64encode(b"acme_login:callr-pass-1").decode()
ENDPOINT = "https://api.callr.com/json-rpc/v1.1/"
HOOKS = WebhookUrls(status="https://sms.example.com/hooks/callr/tok/status/")
SMS_HASH = "SMSHASH01"


def result(value, request_id=1) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "result": value}


def rpc_error(code, message) -> dict:
    return {"jsonrpc": "2.0", "id": 1, "error": {"code": code, "message": message}}


class Api(ScriptedApi):
    """The scripted provider; ``calls`` checks the envelope."""

    @property
    def calls(self) -> list[tuple[str, list]]:
        """(method, params) of each JSON-RPC call, after checking the envelope."""
        out = []
        for request in self.requests:
            assert (request.method, str(request.url)) == ("POST", ENDPOINT)
            assert request.headers["Authorization"] == AUTH
            envelope = json.loads(request.content)
            assert envelope["jsonrpc"] == "2.0" and isinstance(envelope["id"], int)
            out.append((envelope["method"], envelope["params"]))
        return out


def backend(api: Api, credentials=None, **options) -> CallrBackend:
    return CallrBackend(
        credentials=credentials or dict(CREDENTIALS),
        transport=httpx.MockTransport(api),
        account_key="9",
        **options,
    )


def sms(ref: str, to: str, body: str = "Hello from Acme", **kw) -> OutboundSms:
    return OutboundSms(reference=ref, to=to, body=body, sender=kw.pop("sender", "Acme"), **kw)


# ------------------------------------------------------------------ send


def test_sms_send_one_recipient_per_call_with_our_reference_webhook_and_marketing():
    api = Api(result(SMS_HASH), result("SMSHASH02"))
    results = backend(api, webhook_urls=HOOKS).send(
        [sms("m1", "+33678912345"), sms("m2", "+447890123456")]
    )
    options = {"nature": "MARKETING", "user_data": "m1", "webhook": {"endpoint": HOOKS.status}}
    assert api.calls == [
        ("sms.send", ["Acme", "+33678912345", "Hello from Acme", options]),
        (
            "sms.send",
            ["Acme", "+447890123456", "Hello from Acme", {**options, "user_data": "m2"}],
        ),
    ]
    assert [(r.outcome, r.provider_ref) for r in results] == [
        (SendOutcome.ACCEPTED, SMS_HASH),
        (SendOutcome.ACCEPTED, "SMSHASH02"),
    ]


def test_nature_can_be_alerting_and_no_webhook_without_url():
    api = Api(result(SMS_HASH))
    backend(api, nature="alerting").send([sms("m1", "+33678912345", sender="")])
    assert api.calls[0][1] == [
        "",
        "+33678912345",
        "Hello from Acme",
        {
            "nature": "ALERTING",
            "user_data": "m1",
        },
    ]


def test_stopnum_is_allowed_with_a_custom_sender():
    api = Api(result(SMS_HASH))
    [res] = backend(api).send([sms("m1", "+33678912345", "Sale! STOP au %STOPNUM%")])
    assert res.outcome == SendOutcome.ACCEPTED
    assert api.calls[0][1][2] == "Sale! STOP au %STOPNUM%"


@pytest.mark.parametrize("sender", ["", "SMS"])
def test_stopnum_without_a_custom_sender_is_refused_before_any_call(sender):
    api = Api()
    [res] = backend(api).send([sms("m1", "+33678912345", "STOP au %STOPNUM%", sender=sender)])
    assert res.outcome == SendOutcome.REFUSED_PERMANENT and "%STOPNUM%" in res.error_message
    assert api.requests == []


@pytest.mark.parametrize(
    "kw", [{"body": "x" * 3201}, {"sender": "TwelveLetter"}, {"sender": "Acme!"}]
)
def test_bodies_and_senders_outside_the_docs_limits_are_refused(kw):
    api = Api()
    [res] = backend(api).send([sms("m1", "+33678912345", **kw)])
    assert res.outcome == SendOutcome.REFUSED_PERMANENT and api.requests == []


def test_a_result_that_is_not_a_hash_is_unknown_never_resent():
    api = Api(result({"what": "?"}))
    [res] = backend(api).send([sms("m1", "+33678912345")])
    assert res.outcome == SendOutcome.UNKNOWN


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("code", sorted(JSONRPC_ERRORS))
def test_jsonrpc_errors_inside_http_200_are_mapped(code):
    kind, permanent = JSONRPC_ERRORS[code]
    api = Api(rpc_error(code, "as the JSON-RPC 2.0 spec names it"))
    with pytest.raises(ProviderError) as raised:
        backend(api).rpc("sms.get", [SMS_HASH], operation="status")
    assert (raised.value.code, raised.value.kind, raised.value.permanent) == (
        str(code),
        kind,
        permanent,
    )


@pytest.mark.parametrize(
    "code, message, kind, permanent",
    [
        (-32000, "Server error", ErrorKind.UNAVAILABLE, False),
        (22, "AUTHENTICATION_FAILED", ErrorKind.AUTH, True),
        (33, "INSUFFICIENT_BALANCE", ErrorKind.CREDIT, True),
        (44, "INVALID_SENDER", ErrorKind.VALIDATION, True),
    ],
)
def test_callr_own_error_codes_are_classified(code, message, kind, permanent):
    api = Api(rpc_error(code, message))
    [res] = backend(api).send([sms("m1", "+33678912345")])
    assert (res.error_kind, res.error_code) == (kind, str(code))
    if kind in (ErrorKind.AUTH, ErrorKind.CREDIT):
        assert res.outcome == SendOutcome.NOT_ATTEMPTED
        assert batch_stop_error([res]).kind == kind
    elif permanent:
        assert res.outcome == SendOutcome.REFUSED_PERMANENT
    else:
        assert res.outcome == SendOutcome.REFUSED_TRANSIENT


def test_a_refused_recipient_does_not_stop_the_others():
    api = Api(rpc_error(-32602, "Invalid params: to"), result("SMSHASH02"))
    results = backend(api).send([sms("m1", "+33678912345"), sms("m2", "+33678912346")])
    assert [r.outcome for r in results] == [SendOutcome.REFUSED_PERMANENT, SendOutcome.ACCEPTED]


def test_http_401_holds_the_batch_back_and_makes_one_call():
    api = Api(httpx.Response(401, json={"message": "Authentication failed"}))
    results = backend(api).send([sms("m1", "+33678912345"), sms("m2", "+33678912346")])
    assert {(r.outcome, r.error_kind) for r in results} == {
        (SendOutcome.NOT_ATTEMPTED, ErrorKind.AUTH)
    }
    assert len(api.requests) == 1


def test_429_after_an_accepted_call_keeps_what_was_accepted():
    api = Api(result(SMS_HASH), httpx.Response(429, headers={"Retry-After": "7"}))
    results = backend(api).send(
        [sms("m1", "+33678912345"), sms("m2", "+33678912346"), sms("m3", "+33678912347")]
    )
    assert [r.outcome for r in results] == [
        SendOutcome.ACCEPTED,
        SendOutcome.NOT_ATTEMPTED,
        SendOutcome.NOT_ATTEMPTED,
    ]
    assert results[1].retry_after == 7 and len(api.requests) == 2


def test_missing_credentials_say_what_to_fill_in():
    [res] = backend(Api(), credentials={"login": "x"}).send([sms("m1", "+33678912345")])
    assert res.error_kind == ErrorKind.AUTH and "password" in res.error_message


# -------------------------------------------------------------- statuses

SMS_OBJECT = {
    "hash": SMS_HASH,
    "direction": "OUT",
    "from": "Acme",
    "to": "+33678912345",
    "body": "Hello from Acme",
    "status": "RECEIVED",
    "user_data": "m1",
    "date_creation": "2024-01-10 04:08:10",
    "date_sent": "2024-01-10 04:08:11",
    "parts": 1,
}


def test_sms_get_polls_each_status():
    api = Api(result(SMS_OBJECT), result({**SMS_OBJECT, "hash": "H2", "status": "EXPIRED"}))
    updates = backend(api).fetch_statuses(
        [ProviderRef(SMS_HASH, reference="m1"), ProviderRef("H2", reference="m2")]
    )
    assert api.calls == [("sms.get", [SMS_HASH]), ("sms.get", ["H2"])]
    assert [(u.provider_ref, u.reference, u.status, u.raw_status) for u in updates] == [
        (SMS_HASH, "m1", DeliveryStatus.DELIVERED, "RECEIVED"),
        ("H2", "m2", DeliveryStatus.EXPIRED, "EXPIRED"),
    ]
    assert updates[0].occurred_at == datetime(2024, 1, 10, 4, 8, 11, tzinfo=UTC)


@pytest.mark.parametrize("raw", [*sorted(STATUS_MAP), "SOMETHING_NEW"])
def test_statuses_map_and_keep_the_raw_value(raw):
    api = Api(result({**SMS_OBJECT, "status": raw}))
    [update] = backend(api).fetch_statuses([ProviderRef(SMS_HASH)])
    assert update.status == STATUS_MAP.get(raw, DeliveryStatus.UNKNOWN)
    assert update.raw_status == raw


def test_an_sms_callr_does_not_know_is_skipped():
    api = Api(rpc_error(404, "SMS not found"), result(SMS_OBJECT))
    updates = backend(api).fetch_statuses([ProviderRef("nope"), ProviderRef(SMS_HASH)])
    assert [u.provider_ref for u in updates] == [SMS_HASH]


# --------------------------------------------- search: replies and recovery


@pytest.mark.django_db
def test_replies_come_from_sms_search_in_direction_in():
    mo = {
        "hash": "MOHASH1",
        "direction": "IN",
        "from": "+33678912345",
        "to": "+33612345678",
        "body": "STOP",
        "date_creation": "2024-01-10 05:00:00",
    }
    api = Api(result({"data": [mo], "count": 1}))
    [reply] = backend(api).fetch_replies()
    [(method, [filters, options])] = api.calls
    assert method == "sms.search" and filters["direction"] == "IN"
    assert options == {"limit": 100, "offset": 0}
    assert (reply.from_number, reply.body, reply.provider_ref, reply.to_number) == (
        "+33678912345",
        "STOP",
        "MOHASH1",
        "+33612345678",
    )


def test_lookup_by_reference_finds_what_was_sent_and_what_was_not():
    api = Api(result({"data": [SMS_OBJECT]}), result({"data": []}))
    found = backend(api).lookup_by_reference(["m1", "m2"])
    assert api.calls == [
        ("sms.search", [{"direction": "OUT", "user_data": "m1"}, {"limit": 100, "offset": 0}]),
        ("sms.search", [{"direction": "OUT", "user_data": "m2"}, {"limit": 100, "offset": 0}]),
    ]
    assert [(r.reference, r.accepted, r.provider_ref) for r in found] == [("m1", True, SMS_HASH)]


def test_lookup_never_says_not_sent_when_the_search_was_not_filtered():
    other = {**SMS_OBJECT, "user_data": "m77"}
    api = Api(result({"data": [other]}))
    [found] = backend(api).lookup_by_reference(["m1"])
    assert found.outcome == SendOutcome.UNKNOWN and not found.accepted


# -------------------------------------------------------------- webhooks

factory = RequestFactory()
STATUS_EVENT = {
    "type": "sms.mt.status_update",
    "event_id": "evt-1",
    "event_at": "2024-01-10 04:08:20",
    "hook_hash": "HOOK1",
    "data": {**SMS_OBJECT},
}
MO_EVENT = {
    "type": "sms.mo",
    "event_id": "evt-2",
    "event_at": "2024-01-10 05:00:00",
    "hook_hash": "HOOK1",
    "data": {"hash": "MOHASH1", "from": "+33678912345", "to": "+33612345678", "body": "Yes"},
}


def post(payload, secret: str | None = None, signature: str | None = None):
    body = json.dumps(payload).encode()
    headers = {}
    if secret is not None:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
        headers["HTTP_X_CALLR_HMACSIGNATURE"] = base64.b64encode(digest).decode()
    if signature is not None:
        headers["HTTP_X_CALLR_HMACSIGNATURE"] = signature
    return factory.post("/hooks/x/", body, content_type="application/json", **headers)


def test_status_update_webhook():
    [update] = backend(Api()).parse_webhook(post(STATUS_EVENT))
    assert (update.provider_ref, update.reference, update.status) == (
        SMS_HASH,
        "m1",
        DeliveryStatus.DELIVERED,
    )


def test_mo_webhook():
    [reply] = backend(Api()).parse_webhook(post(MO_EVENT))
    assert (reply.from_number, reply.body, reply.provider_ref) == ("+33678912345", "Yes", "MOHASH1")


def test_signed_webhook_is_read_when_the_signature_matches():
    creds = {**CREDENTIALS, "webhook_secret": "hook-secret"}
    request = post(STATUS_EVENT, "hook-secret")
    be = backend(Api(), credentials=creds)
    be.verify_webhook(request)
    [update] = be.parse_webhook(request)
    assert update.provider_ref == SMS_HASH


@pytest.mark.parametrize("signature", [None, "", "AAAA", "forged"])
def test_a_forged_or_unsigned_webhook_is_refused_when_a_secret_is_set(signature):
    creds = {**CREDENTIALS, "webhook_secret": "hook-secret"}
    request = post(STATUS_EVENT, signature=signature)
    with pytest.raises(WebhookForbidden, match="HmacSignature"):
        backend(Api(), credentials=creds).verify_webhook(request)


def test_a_signature_made_with_another_secret_is_refused():
    creds = {**CREDENTIALS, "webhook_secret": "hook-secret"}
    with pytest.raises(WebhookForbidden):
        backend(Api(), credentials=creds).verify_webhook(post(STATUS_EVENT, "other-secret"))


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1]",
        json.dumps({"data": {}}).encode(),
        json.dumps({"type": "sms.mo", "data": {}}).encode(),
    ],
)
def test_garbage_webhooks_are_refused_with_a_reason(body):
    request = factory.post("/hooks/x/", body, content_type="application/json")
    with pytest.raises(WebhookError):
        backend(Api()).parse_webhook(request)


def test_other_events_are_acknowledged_and_ignored():
    assert backend(Api()).parse_webhook(post({"type": "call.hangup", "data": {}})) == []


@pytest.mark.django_db
def test_webhooks_end_to_end_signed_status_and_mo(make_account):
    from campaigns.counters import counters_recount
    from campaigns.models import Campaign, InboundMessage, Message

    creds = {**CREDENTIALS, "webhook_secret": "hook-secret"}
    account = make_account(balance=Decimal("10"), backend="callr", credentials=creds)
    campaign = Campaign.objects.create(name="P", account=account, body="Hi", status="sending")
    message = Message.objects.create(
        campaign=campaign,
        phone="+33678912345",
        body="Hi",
        status=Message.Status.SENT,
        credits=Decimal("1"),
        provider_ref=SMS_HASH,
        sent_at=datetime(2024, 1, 1, tzinfo=UTC),
    )
    counters_recount(campaign_id=campaign.pk)
    client = Client(enforce_csrf_checks=True)
    base = f"/hooks/callr/{account.webhook_token}"

    def send(kind, payload, secret="hook-secret"):
        body = json.dumps(payload).encode()
        digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
        return client.post(
            f"{base}/{kind}/",
            body,
            content_type="application/json",
            HTTP_X_CALLR_HMACSIGNATURE=base64.b64encode(digest).decode(),
        )

    assert send("status", STATUS_EVENT, secret="wrong").status_code == 403
    message.refresh_from_db()
    assert message.status == Message.Status.SENT  # nothing read from a forged call
    assert send("status", STATUS_EVENT).status_code == 200
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED
    for _ in range(2):
        assert send("inbound", MO_EVENT).status_code == 200
    assert InboundMessage.objects.filter(account=account).count() == 1


@pytest.mark.django_db
def test_get_backend_passes_our_status_webhook_as_endpoint(make_account, settings):
    settings.PUBLIC_BASE_URL = "https://sms.example.com"
    account = make_account(backend="callr", credentials=CREDENTIALS)
    payload = account.get_backend().build_payload([sms("m1", "+33678912345")])
    assert payload[3]["webhook"] == {
        "endpoint": f"https://sms.example.com/hooks/callr/{account.webhook_token}/status/"
    }


# ------------------------------------------------- a 3,000-recipient campaign


@pytest.mark.django_db
def test_a_3000_recipient_campaign_sends_each_once_one_call_each(make_account, superuser, request):
    from campaigns.engine import campaign_dispatch
    from campaigns.models import Campaign, Message
    from campaigns.services import campaign_send_now
    from tests.campaigns.engine_helpers import (
        assert_books_balance,
        assert_campaign_consistent,
        make_campaign,
        new_phones,
    )
    from tests.providers.contract.fakes import FakeProvider
    from tests.providers.contract.profile_callr import endpoint

    request.getfixturevalue("enqueued")
    virtual = request.getfixturevalue("clock")
    fake = FakeProvider(base_path="/json-rpc/v1.1")
    fake.route("POST", "/", endpoint)
    account = make_account(
        balance=Decimal("3000"),
        backend="callr",
        credentials=CREDENTIALS,
        requests_per_second=0,
        messages_per_second=0,
    )
    phones = new_phones(3000, prefix="+336")
    campaign = make_campaign(account=account, phones=phones)  # personalised: "Hi N1, ..."
    campaign_send_now(campaign=campaign, user=superuser)
    be = CallrBackend(credentials=CREDENTIALS, transport=fake.transport, account_key="x")
    for _ in range(20):
        run = campaign_dispatch(campaign_id=campaign.pk, backend=be, time_budget=10_000)
        if run.state == "done":
            break
        if run.next_at is not None:
            virtual.set(max(run.next_at, virtual.now()))
    assert run.state == "done"
    assert fake.accepted_counts() == Counter(dict.fromkeys(phones, 1))
    assert len(fake.calls) == 3000  # one recipient per sms.send: the fewest CALLR allows
    stored = {m["user_data"]: m["body"] for m in fake.state["sms"].values()}
    bodies = dict(Message.objects.filter(campaign=campaign).values_list("pk", "body"))
    assert stored == {f"m{pk}": body for pk, body in bodies.items()}
    assert Counter(Message.objects.filter(campaign=campaign).values_list("status", flat=True)) == {
        "sent": 3000
    }
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert_books_balance(account)
    assert_campaign_consistent(campaign)
