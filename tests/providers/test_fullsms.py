"""FullSMS against ``httpx.MockTransport`` with the doc's own requests and
answers (provider-docs/fullsms.txt): every operation, every documented error,
and a 3,000-recipient campaign through the engine against a stateful fake."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from providers.backends import backend_class
from providers.backends.base import (
    Capability,
    DeliveryStatus,
    ErrorKind,
    OutboundSms,
    ProviderError,
    SenderOption,
    SendOutcome,
    batch_stop_error,
)
from providers.backends.fullsms import FullSmsBackend
from tests.campaigns.engine_helpers import clock, enqueue_calls, enqueued  # noqa: F401
from tests.providers.contract.fakes import FakeProvider, answer

TOKEN = "20|YLuvWkTILYKhq365kCuXQW1aCqJe71BbKgzqsGlq"
BASE = "https://api.fullsms.com"

# --- the doc's example answers, verbatim -------------------------------------
BALANCE = {"balance": 100}
NUMBERS = {"total_numbers": 1, "numbers": [{"number": "441111111111", "country": "GB"}]}
SENDERIDS = {"total_senderids": 1, "senderids": ["COPERATO"]}
SENT = {
    "status": "approved",
    "campaign_id": "68a6ce95-03b2-11ee-910d-0264ec2cd11b",
    "total_sent": 2,
    "invalid": {"count": 0, "numbers": []},
}
ACCESS_DENIED = {"status_code": 403, "message": "Access Denied"}
UNAUTHENTICATED = {"status_code": 403, "message": "Unauthenticated - Missing/Invalid API key"}
SERVER_ERROR = {"status_code": 500, "message": "Internal Error"}
FROM_INVALID = {"status_code": 403, "message": "Number invalid, inactive or unknown"}
SENDER_NOT_APPROVED = {"status_code": 403, "message": "Sender ID is not approved"}
SHORTLINKS = {
    "status_code": 403,
    "message": "Shortlinks are not allowed in your account. You may use templates without "
    "shortlinks.",
}
TEMPLATE_NOT_FOUND = {
    "status_code": 404,
    "status": "declined",
    "message": "Template not found or not valid",
}
NUMBER_INVALID_422 = {
    "message": "422 Unprocessable Content",
    "errors": {"to_numbers.0": ["Given number is invalid or could not receive messages"]},
    "status_code": 422,
}
MESSAGE_NOT_STRING = {
    "message": "422 Unprocessable Content",
    "errors": {"message": ["The message must be a string."]},
    "status_code": 422,
}
BALANCE_LOW = {
    "status_code": 422,
    "status": "declined",
    "reason": "balance_low",
    "message": "Balance must be over $[current minimum for sending] to create or schedule new "
    "campaigns or messages",
}

ACCOUNT_CALLS = {
    "/account/balance": BALANCE,
    "/account/numbers": NUMBERS,
    "/account/senderids": SENDERIDS,
}


def make_fake(**routes) -> FakeProvider:
    fake = FakeProvider()
    for path, body in {**ACCOUNT_CALLS, **routes}.items():
        fake.route("GET", path, lambda request, fake, body=body: httpx.Response(200, json=body))
    return fake


def backend_on(fake: FakeProvider, **credentials) -> FullSmsBackend:
    return FullSmsBackend(credentials={"api_token": TOKEN, **credentials}, transport=fake.transport)


def sms(n: int, to: str, **kwargs) -> OutboundSms:
    return OutboundSms(reference=f"m{n}", to=to, body=kwargs.pop("body", "Your Message"), **kwargs)


def send_route(body=SENT, status=200):
    def route(request, fake):
        return httpx.Response(status, json=body)

    return route


def assert_doc_headers(request: httpx.Request) -> None:
    # "Authorization: Bearer 20|YLuv...", "Content-Type"/"Accept: application/json".
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/json"


# --- registry and capabilities -----------------------------------------------


def test_fullsms_is_registered_with_honest_capabilities():
    cls = backend_class("fullsms")
    assert cls is FullSmsBackend
    assert cls.capabilities == {Capability.SCHEDULE, Capability.BALANCE, Capability.SENDERS}
    # No report, reply or lookup call in the doc.
    for missing in (
        Capability.DLR_POLL,
        Capability.DLR_WEBHOOK,
        Capability.REPLIES_POLL,
        Capability.REPLIES_WEBHOOK,
        Capability.LOOKUP_BY_REFERENCE,
        Capability.TOPUP,
    ):
        assert not cls.supports(missing)
    assert cls.max_batch == 500
    assert "no delivery reports" in cls.delivery_reports_missing()


# --- account operations --------------------------------------------------------


def test_balance_is_the_docs_example():
    fake = make_fake()
    assert backend_on(fake).balance() == Decimal("100")
    (call,) = fake.calls
    assert (call.method, call.path) == ("GET", "/account/balance")
    assert str(call.request.url) == f"{BASE}/account/balance"
    assert_doc_headers(call.request)


def test_numbers_and_sender_ids_become_sender_options():
    fake = make_fake()
    backend = backend_on(fake)
    assert backend.numbers() == [
        SenderOption(value="+441111111111", label="+441111111111 (number, GB)", kind="number")
    ]
    assert backend.sender_ids() == [
        SenderOption(value="COPERATO", label="COPERATO (approved sender ID)", kind="alpha")
    ]
    assert [o.value for o in backend.senders()] == ["COPERATO", "+441111111111"]
    assert [c.path for c in fake.calls] == [
        "/account/numbers",
        "/account/senderids",
        "/account/senderids",
        "/account/numbers",
    ]
    for call in fake.calls:
        assert_doc_headers(call.request)


@pytest.mark.parametrize("path", sorted(ACCOUNT_CALLS))
@pytest.mark.parametrize(
    ("status", "body", "kind", "permanent"),
    [
        (403, ACCESS_DENIED, ErrorKind.AUTH, True),
        (403, UNAUTHENTICATED, ErrorKind.AUTH, True),
        (500, SERVER_ERROR, ErrorKind.UNAVAILABLE, False),
    ],
)
def test_account_calls_map_the_documented_errors(path, status, body, kind, permanent):
    fake = make_fake()
    fake.fail(path, answer(status, body))
    backend = backend_on(fake)
    operation = {
        "/account/balance": backend.balance,
        "/account/numbers": backend.numbers,
        "/account/senderids": backend.sender_ids,
    }[path]
    with pytest.raises(ProviderError) as caught:
        operation()
    error = caught.value
    assert (error.kind, error.permanent, error.status_code) == (kind, permanent, status)
    assert body["message"] in error.message
    assert TOKEN not in str(error)


def test_a_missing_token_is_refused_before_any_call():
    fake = make_fake()
    with pytest.raises(ProviderError) as caught:
        FullSmsBackend(credentials={}, transport=fake.transport).balance()
    assert caught.value.kind == ErrorKind.AUTH
    assert "API token" in caught.value.message
    assert fake.calls == []


# --- sending -------------------------------------------------------------------------


def test_send_is_the_docs_request_and_reads_the_docs_answer():
    fake = make_fake()
    fake.route("POST", "/messages/send/to_numbers", send_route())
    batch = [
        sms(1, "+972541111111", sender="COPERATO"),
        sms(2, "+972542222222", sender="COPERATO"),
    ]
    results = backend_on(fake).send(batch)
    (call,) = fake.calls
    assert (call.method, str(call.request.url)) == ("POST", f"{BASE}/messages/send/to_numbers")
    assert_doc_headers(call.request)
    assert call.json == {
        "to_numbers": ["972541111111", "972542222222"],
        "message": "Your Message",
        "from": "COPERATO",
    }
    campaign = SENT["campaign_id"]
    assert [(r.outcome, r.status, r.provider_ref, r.provider_batch_ref) for r in results] == [
        (SendOutcome.ACCEPTED, DeliveryStatus.SENT, f"{campaign}-972541111111", campaign),
        (SendOutcome.ACCEPTED, DeliveryStatus.SENT, f"{campaign}-972542222222", campaign),
    ]
    assert results[0].raw_status == "approved"


def test_numeric_sender_travels_as_the_docs_digits():
    fake = make_fake()
    fake.route("POST", "/messages/send/to_numbers", send_route())
    backend_on(fake).send([sms(1, "+972541111111", sender="+441111111111")])
    assert fake.calls[0].json["from"] == "441111111111"


def test_send_at_schedules_in_the_docs_format_and_the_accounts_zone():
    fake = make_fake()
    fake.route("POST", "/messages/send/to_numbers", send_route())
    when = datetime(2099, 1, 1, 6, 51, 7, tzinfo=UTC)
    results = backend_on(fake, time_zone="Asia/Jerusalem").send(
        [sms(1, "+972541111111", sender="COPERATO", send_at=when)]
    )
    assert fake.calls[0].json["send_at"] == "2099-01-01 08:51:07"
    assert results[0].status == DeliveryStatus.QUEUED


def test_a_time_already_reached_is_sent_now():
    fake = make_fake()
    fake.route("POST", "/messages/send/to_numbers", send_route())
    past = datetime(2025, 1, 1, 8, 51, 7, tzinfo=UTC)
    results = backend_on(fake).send([sms(1, "+972541111111", sender="X1", send_at=past)])
    assert "send_at" not in fake.calls[0].json
    assert results[0].status == DeliveryStatus.SENT


def test_invalid_numbers_in_a_200_answer_refuse_only_those_recipients():
    fake = make_fake()
    partial = {
        "status": "approved",
        "campaign_id": "68a6ce95-03b2-11ee-910d-0264ec2cd11b",
        "total_sent": 1,
        "invalid": {"count": 1, "numbers": ["972542222222"]},
    }
    fake.route("POST", "/messages/send/to_numbers", send_route(partial))
    results = backend_on(fake).send(
        [sms(1, "+972541111111", sender="X1"), sms(2, "+972542222222", sender="X1")]
    )
    assert [r.outcome for r in results] == [SendOutcome.ACCEPTED, SendOutcome.REFUSED_PERMANENT]
    assert (results[1].error_kind, results[1].status) == (
        ErrorKind.VALIDATION,
        DeliveryStatus.REJECTED,
    )
    assert batch_stop_error(results) is None


def test_500_recipients_per_call_at_most():
    fake = make_fake()
    fake.route(
        "POST",
        "/messages/send/to_numbers",
        lambda request, fake: httpx.Response(
            200,
            json={
                "status": "approved",
                "campaign_id": fake.next_id("c-"),
                "total_sent": len(json.loads(request.content)["to_numbers"]),
                "invalid": {"count": 0, "numbers": []},
            },
        ),
    )
    batch = [sms(i, f"+97254{i:07d}", sender="X1") for i in range(1, 1202)]
    results = backend_on(fake).send(batch)
    assert [len(c.json["to_numbers"]) for c in fake.calls] == [500, 500, 201]
    assert {r.outcome for r in results} == {SendOutcome.ACCEPTED}


@pytest.mark.parametrize(
    ("body", "code", "outcome", "kind"),
    [
        # Bad token or a sender it will not send from: nothing of the batch
        # is tried, the campaign pauses with the reason (not every recipient
        # rejected one call at a time).
        (ACCESS_DENIED, "access_denied", SendOutcome.NOT_ATTEMPTED, ErrorKind.AUTH),
        (UNAUTHENTICATED, "invalid_api_key", SendOutcome.NOT_ATTEMPTED, ErrorKind.AUTH),
        (FROM_INVALID, "from_number_invalid", SendOutcome.NOT_ATTEMPTED, ErrorKind.AUTH),
        (SENDER_NOT_APPROVED, "sender_not_approved", SendOutcome.NOT_ATTEMPTED, ErrorKind.AUTH),
        # The text itself is refused: that chunk is rejected.
        (SHORTLINKS, "shortlinks_not_allowed", SendOutcome.REFUSED_PERMANENT, ErrorKind.VALIDATION),
    ],
)
def test_send_403s(body, code, outcome, kind):
    fake = make_fake()
    fake.route("POST", "/messages/send/to_numbers", send_route(body, 403))
    results = backend_on(fake).send(
        [sms(1, "+972541111111", sender="X1"), sms(2, "+972542222222", sender="X1")]
    )
    assert {(r.outcome, r.error_kind, r.error_code) for r in results} == {(outcome, kind, code)}
    assert body["message"] in results[0].error_message
    stop = batch_stop_error(results)
    if kind == ErrorKind.AUTH:
        assert (stop.kind, stop.permanent) == (ErrorKind.AUTH, True)
    else:
        assert stop is None


def test_send_404_template_not_found_refuses_the_chunk():
    fake = make_fake()
    fake.route("POST", "/messages/send/to_numbers", send_route(TEMPLATE_NOT_FOUND, 404))
    results = backend_on(fake).send([sms(1, "+972541111111", sender="X1")])
    assert (results[0].outcome, results[0].error_kind) == (
        SendOutcome.REFUSED_PERMANENT,
        ErrorKind.NOT_FOUND,
    )
    assert "Template not found" in results[0].error_message


def test_send_422_naming_a_recipient_refuses_it_and_holds_the_others_back():
    fake = make_fake()
    fake.route("POST", "/messages/send/to_numbers", send_route(NUMBER_INVALID_422, 422))
    batch = [sms(1, "+972541111111", sender="X1"), sms(2, "+972542222222", sender="X1")]
    results = backend_on(fake).send(batch)
    assert [(r.outcome, r.error_kind) for r in results] == [
        (SendOutcome.REFUSED_PERMANENT, ErrorKind.VALIDATION),
        (SendOutcome.NOT_ATTEMPTED, ErrorKind.DEFERRED),
    ]
    assert "Given number is invalid" in results[0].error_message
    assert results[0].error_code == "to_numbers.0"
    assert batch_stop_error(results) is None


def test_send_422_on_the_message_refuses_the_chunk_and_goes_on_with_other_texts():
    fake = make_fake()
    calls = iter([(422, MESSAGE_NOT_STRING), (200, SENT)])

    def route(request, fake):
        status, body = next(calls)
        return httpx.Response(status, json=body)

    fake.route("POST", "/messages/send/to_numbers", route)
    results = backend_on(fake).send(
        [sms(1, "+972541111111", sender="X1"), sms(2, "+972542222222", sender="X1", body="Other")]
    )
    assert [r.outcome for r in results] == [SendOutcome.REFUSED_PERMANENT, SendOutcome.ACCEPTED]
    assert "The message must be a string." in results[0].error_message


def test_send_422_balance_low_is_insufficient_credit():
    fake = make_fake()
    fake.route("POST", "/messages/send/to_numbers", send_route(BALANCE_LOW, 422))
    results = backend_on(fake).send(
        [sms(1, "+972541111111", sender="X1"), sms(2, "+972542222222", sender="X1", body="B")]
    )
    assert {(r.outcome, r.error_kind, r.error_code) for r in results} == {
        (SendOutcome.NOT_ATTEMPTED, ErrorKind.CREDIT, "balance_low")
    }
    assert len(fake.calls) == 1  # the second text was not tried
    stop = batch_stop_error(results)
    assert (stop.kind, stop.permanent) == (ErrorKind.CREDIT, True)


def test_send_500_is_transient():
    fake = make_fake()
    fake.route("POST", "/messages/send/to_numbers", send_route(SERVER_ERROR, 500))
    results = backend_on(fake).send([sms(1, "+972541111111", sender="X1")])
    assert (results[0].outcome, results[0].error_kind) == (
        SendOutcome.REFUSED_TRANSIENT,
        ErrorKind.UNAVAILABLE,
    )


def test_a_declined_200_is_an_error_not_an_acceptance():
    fake = make_fake()
    fake.route("POST", "/messages/send/to_numbers", send_route(BALANCE_LOW, 200))
    results = backend_on(fake).send([sms(1, "+972541111111", sender="X1")])
    assert (results[0].outcome, results[0].error_kind) == (
        SendOutcome.NOT_ATTEMPTED,
        ErrorKind.CREDIT,
    )


def test_an_answer_without_campaign_id_is_unknown_never_resent():
    fake = make_fake()
    fake.route("POST", "/messages/send/to_numbers", send_route({"status": "approved"}))
    results = backend_on(fake).send([sms(1, "+972541111111", sender="X1")])
    assert results[0].outcome == SendOutcome.UNKNOWN


def test_the_token_never_appears_in_an_error():
    fake = make_fake()
    echo = {"status_code": 403, "message": f"Access Denied for {TOKEN}"}
    fake.route("POST", "/messages/send/to_numbers", send_route(echo, 403))
    results = backend_on(fake).send([sms(1, "+972541111111", sender="X1")])
    assert TOKEN not in results[0].error_message
    assert TOKEN not in repr(backend_on(fake))


# --- a 3,000-recipient campaign through the engine ------------------------------


@pytest.mark.django_db
def test_3000_recipient_campaign_sends_everyone_once_in_six_calls_within_the_rate(
    make_account,
    superuser,
    enqueued,  # noqa: F811 - the engine tests' fixtures, imported above
    clock,  # noqa: F811
):
    from campaigns.engine import campaign_dispatch
    from campaigns.models import Campaign, Message
    from campaigns.services import campaign_send_now
    from tests.campaigns.engine_helpers import (
        assert_books_balance,
        assert_campaign_consistent,
        make_campaign,
        new_phones,
    )

    account = make_account(
        backend="fullsms",
        balance=Decimal("5000"),
        requests_per_second=2,
        messages_per_second=0,
        credentials={"api_token": TOKEN},
    )
    phones = new_phones(3000)
    campaign = make_campaign(account=account, phones=phones, body="Sale on now, 20% off")
    campaign_send_now(campaign=campaign, user=superuser)

    times: list[float] = []

    def to_numbers(request, fake):
        times.append(clock.time())
        assert_doc_headers(request)
        numbers = json.loads(request.content)["to_numbers"]
        fake.accepted.extend("+" + n for n in numbers)
        return httpx.Response(
            200,
            json={
                "status": "approved",
                "campaign_id": fake.next_id("68a6ce95-"),
                "total_sent": len(numbers),
                "invalid": {"count": 0, "numbers": []},
            },
        )

    fake = FakeProvider()
    fake.route("POST", "/messages/send/to_numbers", to_numbers)
    # The provider fails once mid-campaign (its documented 500): that batch
    # is tried again later, nobody is sent twice.
    fake.fail("/messages/send/to_numbers", answer(500, SERVER_ERROR), after=2)
    backend = FullSmsBackend(credentials={"api_token": TOKEN}, transport=fake.transport)

    runs = []
    for _ in range(60):
        run = campaign_dispatch(campaign_id=campaign.pk, backend=backend)
        runs.append(run.state)
        if run.state == "done":
            break
        if run.next_at is not None:
            clock.set(max(run.next_at, clock.now()))
    assert runs[-1] == "done", runs

    assert fake.accepted_counts() == Counter(dict.fromkeys(phones, 1))
    assert Counter(Message.objects.filter(campaign=campaign).values_list("status", flat=True)) == {
        "sent": 3000
    }
    # As few calls as FullSMS allows: 3,000 / 500 = 6, plus the one that failed.
    sends = fake.calls_to("/messages/send/to_numbers")
    assert [len(c.json["to_numbers"]) for c in sends if c.json] == [500] * 7
    assert len(sends) == 7
    # Never over the account's 2 calls per second (FullSMS documents no rate).
    assert max(sum(1 for u in times if t <= u < t + 1 - 1e-9) for t in times) <= 2
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert campaign.credits_charged == Decimal("3000.00") and campaign.credits_reserved == 0
    assert_books_balance(account)
    assert_campaign_consistent(campaign)
