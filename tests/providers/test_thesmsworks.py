"""The SMS Works backend against httpx.MockTransport, with the doc's own payloads."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from django.test import RequestFactory

from providers.backends.base import (
    DeliveryStatus,
    InboundSms,
    OutboundSms,
    ProviderError,
    ProviderRef,
    SendOutcome,
    StatusUpdate,
    WebhookError,
)
from providers.backends.thesmsworks import STATUS_MAP, TheSmsWorksBackend

pytestmark = pytest.mark.django_db

BASE = "https://api.thesmsworks.co.uk/v1"
CREDS = {"customerid": "cust-1", "key": "key-1", "secret": "s3cret-1"}
JWT = "JWT eyJhbGciOiJIUzI1NiJ9.e30.sig1"
JWT2 = "JWT eyJhbGciOiJIUzI1NiJ9.e30.sig2"

# The doc's delivery report example ("Delivery Reports").
DOC_DLR = {
    "__v": 0,
    "_id": "5ab817e969722262a9711bb4",
    "content": "Greetings!",
    "created": "2017-03-25T21:43:05.667Z",
    "credits": 1,
    "customerid": "your customer id",
    "destination": 447777777777,
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

# The doc's incoming message example ("Incoming SMS").
DOC_INBOUND = {
    "content": "INCOMING CONTENT",
    "from": "447777777777",
    "messageid": "6170167",
    "messagetype": "incoming",
    "to": "447777777778",
    "parts": 1,
}

# The doc's error table: code, HTTP status, permanent, message.
DOC_ERRORS = [
    ("4001", 400, True, "Message length is 0 characters. Cannot send message."),
    ("4002", 400, True, "Cannot send messages longer than 1280 characters."),
    ("4003", 400, True, "Sender ID length invalid."),
    ("4004", 400, True, "Invalid destination number."),
    ("4005", 400, True, "Tag longer than 280 characters."),
    ("4006", 400, True, "Message contains profanity."),
    ("4007", 400, True, "Message contains blocked terms. Account disabled."),
    ("4008", 400, True, "Invalid message ID."),
    ("4009", 400, True, "Invalid date/time supplied: [date/time]"),
    ("4011", 401, True, "Not authenticated."),
    ("4021", 402, True, "Insufficient credit to send message."),
    ("4031", 403, True, "Not authorised."),
    ("4032", 403, True, "Account not found."),
    ("4033", 403, True, "Account disabled."),
    ("4034", 403, True, "This account is not enabled for international SMS."),
    ("5001", 400, True, "Handset Error: Number does not exist or has not been assigned."),
    ("5002", 400, True, "Service database error."),
    ("5004", 400, True, "Message has been sent to the operator, whereas the request was rejected"),
    ("5006", 400, False, "Handset Error: No response."),
    ("5008", 400, False, "Handset Error: Roaming not allowed."),
    ("5009", 400, True, "Message has been sent to the operator, but has failed to deliver"),
    ("5010", 400, True, "Message has been received and rejected due to DND"),
    ("5011", 400, True, "The subscriber's mobile service has been suspended by the operator."),
    ("5013", 400, False, "Handset Error: Device is set to Do Not Disturb."),
    ("5015", 400, False, "pending until the validity period has expired"),
    ("5020", 400, True, "Message has been rejected due to an anti-flooding mechanism."),
    ("5034", 400, False, "Handset Error: System failure."),
]


class Provider:
    """A scripted provider: answers by (method, path), records every request."""

    def __init__(self):
        self.requests: list[httpx.Request] = []
        self.routes: dict[tuple[str, str], list] = {}
        self.tokens = [JWT, JWT2] + [f"JWT eyJ.more{i}" for i in range(10)]

    def on(self, method: str, path: str, *responses):
        self.routes.setdefault((method, path), []).extend(responses)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/v1")
        if (request.method, path) == ("POST", "/auth/token") and not self.routes.get(
            ("POST", "/auth/token")
        ):
            return httpx.Response(200, json={"token": self.tokens.pop(0)})
        queue = self.routes.get((request.method, path))
        if not queue:
            return httpx.Response(404, json={"message": f"no route {request.method} {path}"})
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        status, body = answer
        return httpx.Response(status, json=body)

    def api_calls(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path != "/v1/auth/token"]

    def auth_calls(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == "/v1/auth/token"]


@pytest.fixture
def provider():
    return Provider()


def make_backend(provider, *, credentials=CREDS, account_key="7"):
    return TheSmsWorksBackend(
        credentials=credentials,
        transport=httpx.MockTransport(provider.handler),
        account_key=account_key,
    )


@pytest.fixture
def backend(provider):
    return make_backend(provider)


def body(request: httpx.Request):
    return json.loads(request.content)


def sms(ref, to="+447700900001", text="Hello", sender="Acme", send_at=None):
    return OutboundSms(reference=ref, to=to, body=text, sender=sender, send_at=send_at)


# ------------------------------------------------------------------ auth
def test_token_is_fetched_with_customerid_key_secret_and_sent_as_is(provider, backend):
    provider.on("GET", "/credits/balance", (200, {"credits": 180}))
    assert backend.balance() == Decimal("180")

    auth, call = provider.requests
    assert (auth.method, str(auth.url)) == ("POST", f"{BASE}/auth/token")
    assert body(auth) == {"customerid": "cust-1", "key": "key-1", "secret": "s3cret-1"}
    assert "authorization" not in auth.headers
    assert (call.method, str(call.url)) == ("GET", f"{BASE}/credits/balance")
    assert call.headers["Authorization"] == JWT


def test_token_is_cached_per_account_across_instances(provider):
    provider.on("GET", "/credits/balance", (200, {"credits": 1}))
    make_backend(provider).balance()
    make_backend(provider).balance()
    assert len(provider.auth_calls()) == 1
    assert [r.headers["Authorization"] for r in provider.api_calls()] == [JWT, JWT]

    make_backend(provider, account_key="8").balance()
    assert len(provider.auth_calls()) == 2


def test_new_credentials_fetch_a_new_token(provider):
    provider.on("GET", "/credits/balance", (200, {"credits": 1}))
    make_backend(provider).balance()
    make_backend(provider, credentials={**CREDS, "secret": "rotated"}).balance()
    assert len(provider.auth_calls()) == 2
    assert body(provider.auth_calls()[1])["secret"] == "rotated"


def test_a_401_refreshes_the_token_once_and_retries(provider, backend):
    provider.on(
        "GET",
        "/credits/balance",
        (401, {"message": "Not authenticated.", "errorCode": 4011}),
        (200, {"credits": 42}),
    )
    assert backend.balance() == Decimal("42")
    assert len(provider.auth_calls()) == 2
    assert [r.headers["Authorization"] for r in provider.api_calls()] == [JWT, JWT2]
    # The fresh token is what the next instance uses.
    provider.on("GET", "/credits/balance", (200, {"credits": 43}))
    make_backend(provider).balance()
    assert len(provider.auth_calls()) == 2
    assert provider.api_calls()[-1].headers["Authorization"] == JWT2


def test_a_second_401_is_a_permanent_auth_error_and_forgets_the_token(provider, backend):
    provider.on("GET", "/credits/balance", (401, {"message": "Not authenticated."}))
    with pytest.raises(ProviderError) as err:
        backend.balance()
    assert (err.value.kind, err.value.permanent, err.value.status_code) == ("auth", True, 401)
    assert len(provider.auth_calls()) == 2
    assert len(provider.api_calls()) == 2

    provider.routes.clear()
    provider.on("GET", "/credits/balance", (200, {"credits": 1}))
    make_backend(provider).balance()
    assert len(provider.auth_calls()) == 3


def test_bad_key_secret_at_auth_token_is_permanent(provider, backend):
    provider.on(
        "POST",
        "/auth/token",
        (401, {"message": "Not authenticated.", "errorCode": 4011, "status": 401}),
    )
    with pytest.raises(ProviderError) as err:
        backend.balance()
    assert (err.value.code, err.value.kind, err.value.permanent) == ("4011", "auth", True)
    assert "Not authenticated." in str(err.value)
    assert (len(provider.auth_calls()), provider.api_calls()) == (1, [])


def test_missing_credentials_are_named(provider):
    backend = make_backend(provider, credentials={"customerid": "c"})
    with pytest.raises(ProviderError) as err:
        backend.balance()
    assert err.value.permanent and err.value.kind == "auth"
    assert "missing: key, secret" in str(err.value)
    assert provider.requests == []


def test_the_token_and_secret_never_reach_the_logs(provider, backend, caplog):
    caplog.set_level(logging.DEBUG)
    provider.on(
        "GET",
        "/credits/balance",
        (401, {"message": "Not authenticated."}),
        (200, {"credits": 5}),
    )
    backend.balance()
    assert "eyJ" not in caplog.text
    assert "s3cret-1" not in caplog.text


# ------------------------------------------------------------------ send
def test_one_recipient_goes_to_message_send(provider, backend):
    provider.on(
        "POST",
        "/message/send",
        (201, {"messageid": "5ab8", "status": "SENT", "credits": 49, "creditsUsed": 2}),
    )
    [result] = backend.send([sms("m1", text="Hi Ann")])

    [call] = provider.api_calls()
    assert (call.method, str(call.url)) == ("POST", f"{BASE}/message/send")
    assert call.headers["Authorization"] == JWT
    assert call.headers["Content-Type"] == "application/json"
    assert body(call) == {
        "sender": "Acme",
        "destination": "447700900001",
        "content": "Hi Ann",
        "tag": "m1",
    }
    assert result.accepted and result.reference == "m1"
    assert (result.provider_ref, result.status, result.raw_status) == (
        "5ab8",
        DeliveryStatus.SENT,
        "SENT",
    )
    assert result.credits == Decimal("2")


def test_one_scheduled_recipient_goes_to_message_schedule(provider, backend):
    provider.on("POST", "/message/schedule", (201, [{"messageid": "77", "status": "SCHEDULED"}]))
    when = datetime(2030, 5, 1, 9, 30, tzinfo=UTC)
    [result] = backend.send([sms("m2", send_at=when)])

    [call] = provider.api_calls()
    assert str(call.url) == f"{BASE}/message/schedule"
    assert body(call) == {
        "sender": "Acme",
        "destination": "447700900001",
        "content": "Hello",
        "schedule": "2030-05-01T09:30:00.000Z",
        "tag": "m2",
    }
    assert (result.accepted, result.provider_ref, result.status) == (
        True,
        "77",
        DeliveryStatus.QUEUED,
    )


def test_recipients_of_the_same_text_go_in_one_batch_tagged_with_the_first_reference(
    provider, backend
):
    provider.on("POST", "/batch/send", (201, {"batchid": "b-9", "status": "ACCEPTED"}))
    batch = [sms("m10", "+447700900010"), sms("m11", "+447700900011"), sms("m12", "+447700900012")]
    results = backend.send(batch)

    [call] = provider.api_calls()
    assert (call.method, str(call.url)) == ("POST", f"{BASE}/batch/send")
    assert body(call) == {
        "sender": "Acme",
        "destinations": ["447700900010", "447700900011", "447700900012"],
        "content": "Hello",
        "tag": "m10",
    }
    assert [r.reference for r in results] == ["m10", "m11", "m12"]
    assert all(r.accepted and r.provider_batch_ref == "b-9" for r in results)
    assert {r.status for r in results} == {DeliveryStatus.SENT}


def test_a_scheduled_batch_goes_to_batch_schedule(provider, backend):
    provider.on("POST", "/batch/schedule", (201, {"batchid": "b-1", "status": "SCHEDULED"}))
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    results = backend.send([sms("m1", "+447700900001", send_at=when), sms("m2", send_at=when)])
    [call] = provider.api_calls()
    assert str(call.url) == f"{BASE}/batch/schedule"
    assert body(call)["schedule"] == "2030-01-02T03:04:05.000Z"
    assert body(call)["destinations"] == ["447700900001", "447700900001"]
    assert [r.status for r in results] == [DeliveryStatus.QUEUED] * 2


def test_personalised_texts_are_grouped_and_results_keep_input_order(provider, backend):
    provider.on("POST", "/batch/send", (201, {"batchid": "b-2", "status": "SENT"}))
    provider.on("POST", "/message/send", (201, {"messageid": "single", "status": "SENT"}))
    batch = [
        sms("m1", "+447700900001", "Same"),
        sms("m2", "+447700900002", "Hi Bob"),
        sms("m3", "+447700900003", "Same"),
    ]
    results = backend.send(batch)
    assert [r.reference for r in results] == ["m1", "m2", "m3"]
    assert [(r.provider_ref, r.provider_batch_ref) for r in results] == [
        ("", "b-2"),
        ("single", ""),
        ("", "b-2"),
    ]
    batch_call, single_call = provider.api_calls()
    assert body(batch_call)["destinations"] == ["447700900001", "447700900003"]
    assert body(single_call)["destination"] == "447700900002"


def test_more_than_500_recipients_are_cut_into_calls_of_at_most_500(provider, backend):
    provider.on("POST", "/batch/send", (201, {"batchid": "b-big", "status": "SENT"}))
    provider.on("POST", "/message/send", (201, {"messageid": "last", "status": "SENT"}))
    batch = [sms(f"m{i}", f"+4477009{i:05d}") for i in range(501)]
    results = backend.send(batch)
    big, last = provider.api_calls()
    assert len(body(big)["destinations"]) == 500
    assert body(last)["destination"] == "447700900500"
    assert all(r.outcome == SendOutcome.ACCEPTED for r in results)
    assert results[-1].provider_ref == "last"


def test_insufficient_credit_is_a_permanent_credit_error(provider, backend):
    provider.on(
        "POST",
        "/message/send",
        (
            402,
            {
                "message": "Insufficient credit to send message.",
                "errorCode": 4021,
                "status": 402,
                "permanent": True,
            },
        ),
    )
    [result] = backend.send([sms("m1")])
    # Not the message's fault: held back, the engine pauses the campaign.
    assert (result.outcome, result.error_kind, result.error_code) == (
        SendOutcome.NOT_ATTEMPTED,
        "credit",
        "4021",
    )


def test_an_invalid_destination_refuses_that_recipient_only(provider, backend):
    provider.on(
        "POST",
        "/message/send",
        (
            400,
            {
                "message": "Invalid destination number.",
                "errorCode": 4004,
                "status": 400,
                "permanent": True,
            },
        ),
    )
    [result] = backend.send([sms("m1")])
    assert not result.accepted
    assert (result.error_code, result.permanent, result.status) == (
        "4004",
        True,
        DeliveryStatus.REJECTED,
    )
    assert "Invalid destination number." in result.error_message


def test_a_transient_handset_error_says_it_may_be_retried(provider, backend):
    provider.on(
        "POST",
        "/message/send",
        (400, {"message": "Handset Error: No response.", "errorCode": 5006, "permanent": False}),
    )
    [result] = backend.send([sms("m1")])
    assert (result.accepted, result.error_code, result.permanent) == (False, "5006", False)


def test_a_failure_after_an_accepted_call_reports_both(provider, backend):
    provider.on("POST", "/batch/send", (201, {"batchid": "b-3", "status": "SENT"}))
    provider.on("POST", "/message/send", (503, {"message": "down"}))
    batch = [sms("m1", "+447700900001"), sms("m2", "+447700900002"), sms("m3", text="Other")]
    results = backend.send(batch)
    assert [(r.reference, r.accepted) for r in results] == [
        ("m1", True),
        ("m2", True),
        ("m3", False),
    ]
    assert results[2].permanent is False


def test_a_failure_of_the_first_call_refuses_its_messages_transiently(provider, backend):
    provider.on("POST", "/batch/send", (500, {"message": "Internal error"}))
    results = backend.send([sms("m1"), sms("m2", "+447700900002")])
    assert {(r.outcome, r.error_kind, r.permanent) for r in results} == {
        (SendOutcome.REFUSED_TRANSIENT, "unavailable", False)
    }


def test_rate_limit_honours_retry_after(provider, backend):
    provider.on(
        "POST",
        "/message/send",
        lambda request: httpx.Response(
            429, json={"message": "Too many requests"}, headers={"Retry-After": "12"}
        ),
    )
    [result] = backend.send([sms("m1")])
    assert (result.outcome, result.error_kind, result.retry_after) == (
        SendOutcome.NOT_ATTEMPTED,
        "rate_limit",
        12,
    )


def test_a_read_timeout_leaves_the_message_unknown_for_reconciliation(provider, backend):
    provider.on("POST", "/message/send", httpx.ReadTimeout("slow"))
    [result] = backend.send([sms("m1")])
    assert (result.outcome, result.error_kind, result.outcome_unknown) == (
        SendOutcome.UNKNOWN,
        "timeout",
        True,
    )


@pytest.mark.parametrize(("code", "status", "permanent", "message"), DOC_ERRORS)
def test_every_documented_error_code_is_classified(
    provider, backend, code, status, permanent, message
):
    error = {"message": message, "errorCode": int(code), "status": status, "permanent": permanent}
    provider.on("GET", "/credits/balance", (status, error))
    with pytest.raises(ProviderError) as err:
        backend.balance()
    assert err.value.code == code
    assert err.value.permanent is permanent
    assert err.value.status_code == status
    assert message in str(err.value)
    expected_kind = {401: "auth", 402: "credit"}.get(status)
    if expected_kind:
        assert err.value.kind == expected_kind
    if code in ("4007", "4031", "4032", "4033"):
        assert err.value.kind == "auth"


def test_an_error_with_only_a_message_uses_the_http_status(provider, backend):
    provider.on("GET", "/credits/balance", (403, {"message": "Not authorised."}))
    with pytest.raises(ProviderError) as err:
        backend.balance()
    assert (err.value.kind, err.value.permanent, err.value.code) == ("auth", True, "403")


# --------------------------------------------------------------- statuses
@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("SENT", DeliveryStatus.SENT),
        ("ACCEPTED", DeliveryStatus.SENT),
        ("DELIVERED", DeliveryStatus.DELIVERED),
        ("EXPIRED", DeliveryStatus.EXPIRED),
        ("UNDELIVERED", DeliveryStatus.UNDELIVERED),
        ("UNDELIVERABLE", DeliveryStatus.UNDELIVERED),
        ("FAILED", DeliveryStatus.FAILED),
        ("REJECTED", DeliveryStatus.REJECTED),
        ("SCHEDULED", DeliveryStatus.QUEUED),
        ("CANCELLED", DeliveryStatus.UNKNOWN),
        ("INCOMING", DeliveryStatus.UNKNOWN),
        ("SOMETHING_NEW", DeliveryStatus.UNKNOWN),
    ],
)
def test_status_mapping_keeps_the_raw_value(backend, raw, status):
    update = backend.report_update({**DOC_DLR, "status": raw})
    assert (update.status, update.raw_status) == (status, raw)
    assert set(STATUS_MAP) <= {
        "SENT",
        "ACCEPTED",
        "DELIVERED",
        "EXPIRED",
        "UNDELIVERED",
        "UNDELIVERABLE",
        "FAILED",
        "REJECTED",
        "SCHEDULED",
    }


def test_fetch_statuses_reads_single_messages_and_batches(provider, backend):
    provider.on("GET", "/messages/128032521395903584", (200, DOC_DLR))
    provider.on(
        "GET",
        "/batch/b-7",
        (
            200,
            [
                {**DOC_DLR, "messageid": "x1", "destination": 447700900001, "status": "DELIVERED"},
                {**DOC_DLR, "messageid": "x2", "destination": 447700900002, "status": "EXPIRED"},
            ],
        ),
    )
    refs = [
        ProviderRef(provider_ref="128032521395903584", reference="m1", to="+447777777777"),
        ProviderRef(provider_ref="", provider_batch_ref="b-7", reference="m2", to="+447700900002"),
        ProviderRef(provider_ref="", provider_batch_ref="b-7", reference="m3", to="+447700900001"),
    ]
    updates = backend.fetch_statuses(refs)
    assert sorted((u.reference, u.provider_ref, u.status) for u in updates) == [
        ("m1", "128032521395903584", DeliveryStatus.DELIVERED),
        ("m2", "x2", DeliveryStatus.EXPIRED),
        ("m3", "x1", DeliveryStatus.DELIVERED),
    ]
    paths = sorted((r.method, r.url.path) for r in provider.api_calls())
    assert paths == [("GET", "/v1/batch/b-7"), ("GET", "/v1/messages/128032521395903584")]
    assert all(r.headers["Authorization"] == JWT for r in provider.api_calls())


def test_fetch_statuses_skips_ids_the_provider_does_not_know(provider, backend):
    provider.on(
        "GET",
        "/messages/nope",
        (400, {"message": "Invalid message ID.", "errorCode": 4008, "permanent": True}),
    )
    assert backend.fetch_statuses([ProviderRef(provider_ref="nope", reference="m1")]) == []


def test_lookup_by_reference_queries_messages_by_tag(provider, backend):
    def answer(request):
        tag = body(request)["tag"]
        if tag == "m1":
            return httpx.Response(200, json=[{**DOC_DLR, "tag": "m1", "status": "SENT"}])
        return httpx.Response(200, json=[])

    provider.on("POST", "/messages", answer)
    results = backend.lookup_by_reference(["m1", "m2"])
    assert [body(r) for r in provider.api_calls()] == [{"tag": "m1"}, {"tag": "m2"}]
    [found] = results
    assert (found.reference, found.accepted, found.provider_ref, found.status) == (
        "m1",
        True,
        "128032521395903584",
        DeliveryStatus.SENT,
    )


def test_lookup_matches_batch_members_by_number(provider, backend):
    batch_items = [
        {**DOC_DLR, "tag": "m1", "messageid": "a", "destination": 447700900001},
        {**DOC_DLR, "tag": "m1", "messageid": "b", "destination": 447700900002},
    ]
    provider.on(
        "POST",
        "/messages",
        lambda r: httpx.Response(200, json=batch_items if body(r)["tag"] == "m1" else []),
    )
    numbers = {"m1": "+447700900001", "m2": "+447700900002", "m3": "+447700900003"}
    results = backend.lookup_by_reference(["m1", "m2", "m3"], numbers=numbers)
    assert sorted((r.reference, r.provider_ref, r.accepted) for r in results) == [
        ("m1", "a", True),
        ("m2", "b", True),
    ]
    # m2 was resolved from m1's batch: not queried again.
    assert [body(r)["tag"] for r in provider.api_calls()] == ["m1", "m3"]


def test_lookup_without_numbers_never_reports_a_batch_member_as_unsent(provider, backend):
    batch_items = [
        {**DOC_DLR, "tag": "m1", "messageid": "a", "destination": 447700900001},
        {**DOC_DLR, "tag": "m1", "messageid": "b", "destination": 447700900002},
    ]
    provider.on(
        "POST",
        "/messages",
        lambda r: httpx.Response(200, json=batch_items if body(r)["tag"] == "m1" else []),
    )
    results = backend.lookup_by_reference(["m1", "m2"])
    assert sorted((r.reference, r.outcome_unknown) for r in results) == [
        ("m1", True),
        ("m2", True),
    ]


# ---------------------------------------------------------- other calls
def test_balance_reads_credits(provider, backend):
    provider.on("GET", "/credits/balance", (200, {"credits": 12.5}))
    assert backend.balance() == Decimal("12.5")


# --------------------------------------------------------------- webhooks
def post(payload, content_type="application/json"):
    data = payload if isinstance(payload, (str, bytes)) else json.dumps(payload)
    return RequestFactory().post("/hooks/x/", data=data, content_type=content_type)


def test_the_documented_delivery_report_parses(backend):
    [update] = backend.parse_webhook(post(DOC_DLR))
    assert isinstance(update, StatusUpdate)
    assert update == StatusUpdate(
        status=DeliveryStatus.DELIVERED,
        provider_ref="128032521395903584",
        reference="",
        to="+447777777777",
        raw_status="DELIVERED",
        occurred_at=datetime(2017, 3, 25, 21, 43, 13, 229000, tzinfo=UTC),
        refunded=False,
    )


def test_an_undelivered_uk_report_keeps_the_reason_and_is_refunded(backend):
    [update] = backend.parse_webhook(post({**DOC_DLR, "status": "UNDELIVERED", "tag": "m5"}))
    assert (update.status, update.reference, update.refunded) == (
        DeliveryStatus.UNDELIVERED,
        "m5",
        True,
    )
    assert update.error_code == "1"
    assert update.error_message.startswith("Handset Error: Number does not exist")


@pytest.mark.parametrize(
    ("status", "international", "refunded"),
    [
        ("UNDELIVERED", True, False),
        ("EXPIRED", False, True),
        ("EXPIRED", True, False),
        ("REJECTED", True, True),
        ("FAILED", False, False),
        ("DELIVERED", False, False),
    ],
)
def test_refunds_follow_the_doc(backend, status, international, refunded):
    [update] = backend.parse_webhook(
        post({**DOC_DLR, "status": status, "international": international})
    )
    assert update.refunded is refunded


def test_the_documented_incoming_message_parses(backend):
    [reply] = backend.parse_webhook(post(DOC_INBOUND))
    assert isinstance(reply, InboundSms)
    assert (reply.from_number, reply.body, reply.provider_ref, reply.to_number) == (
        "+447777777777",
        "INCOMING CONTENT",
        "6170167",
        "+447777777778",
    )
    assert reply.raw == DOC_INBOUND


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "Expected a JSON object"),
        ("[]", "Expected a JSON object"),
        (json.dumps({"status": "DELIVERED"}), "needs messageid"),
        (json.dumps({"messageid": "1"}), "needs status"),
        (json.dumps({"messagetype": "incoming", "content": "hi"}), "needs 'from'"),
    ],
)
def test_malformed_webhooks_say_what_is_wrong(backend, payload, reason):
    with pytest.raises(WebhookError) as err:
        backend.parse_webhook(post(payload))
    assert reason in str(err.value)


@pytest.mark.parametrize(
    ("sender", "sent_as"),
    [("+447400999999", "447400999999"), ("07900123456", "07900123456"), ("Acme", "Acme")],
)
def test_a_numeric_sender_is_sent_without_its_plus(provider, backend, sender, sent_as):
    # With the "+", the provider answers 4003 "Sender ID length invalid" for
    # every message; the project's sender check accepts it and leaves the
    # formatting to the backend.
    provider.on("POST", "/message/send", (201, {"messageid": "1", "status": "SENT"}))
    provider.on("POST", "/batch/send", (201, {"batchid": "b", "status": "SENT"}))
    backend.send([sms("m1", sender=sender)])
    backend.send([sms("m2", sender=sender), sms("m3", "+447700900003", sender=sender)])
    single, batch = provider.api_calls()
    assert body(single)["sender"] == sent_as
    assert body(batch)["sender"] == sent_as
