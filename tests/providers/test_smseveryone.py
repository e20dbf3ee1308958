"""SMS Everyone backend against httpx.MockTransport, with the doc's own JSON
(provider-docs/smseveryone.txt)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import httpx
import pytest
from django.test import RequestFactory

from providers.backends.base import (
    DeliveryStatus,
    OutboundSms,
    ProviderError,
    ProviderRef,
    RemoteOptOut,
    SendOutcome,
    WebhookError,
)
from providers.backends.smseveryone import ERROR_CODES, SmsEveryoneBackend
from tests.providers.contract.fakes import ScriptedApi

# The doc's own example credentials: "jimsbusiness:s56sbdyte83fs", base64 encoded.
CREDENTIALS = {"username": "jimsbusiness", "password": "s56sbdyte83fs"}
AUTH = "Basic amltc2J1c2luZXNzOnM1NnNiZHl0ZTgzZnM="
SYDNEY = ZoneInfo("Australia/Sydney")
BASE = "https://smseveryone.com/api"


class Api(ScriptedApi):
    """The scripted provider; ``calls`` checks the envelope."""

    @property
    def calls(self) -> list[tuple[str, str, dict | None]]:
        """(method, URL, JSON body) of each request, after checking the headers."""
        out = []
        for request in self.requests:
            assert request.headers["Authorization"] == AUTH
            assert request.headers["Content-Type"] == "application/json"
            out.append((request.method, str(request.url), json.loads(request.content)))
        return out


def backend(api: Api, **credentials) -> SmsEveryoneBackend:
    return SmsEveryoneBackend(
        credentials={**CREDENTIALS, **credentials},
        transport=httpx.MockTransport(api),
        account_key="7",
    )


def sms(ref: str, to: str, body: str = "Hello, this is a test", **kw) -> OutboundSms:
    sender = kw.pop("sender", "61400190499")
    return OutboundSms(reference=ref, to=to, body=body, sender=sender, **kw)


# ------------------------------------------------------------------ send


def test_send_to_one_recipient_posts_the_documented_create():
    api = Api({"Code": 0, "CampaignId": 11967222, "Messages": 1, "Segments": 1, "Credits": 1})
    [result] = backend(api).send([sms("m-1", "+61400123456")])
    assert api.calls == [
        (
            "POST",
            f"{BASE}/campaign",
            {
                "Message": "Hello, this is a test",
                "Originator": "61400190499",
                "Reference": "m-1",
                "Destinations": ["61400123456"],
                "Action": "create",
            },
        )
    ]
    assert result.reference == "m-1"
    assert result.accepted
    assert result.status == DeliveryStatus.SENT
    assert result.provider_ref == "11967222-61400123456"
    assert result.provider_batch_ref == "11967222"
    assert result.raw_status == "0"
    assert result.credits == Decimal("1")


def test_send_to_two_recipients_is_one_call_with_both_destinations():
    api = Api({"Code": 0, "CampaignId": 11967222, "Messages": 2, "Segments": 1, "Credits": 2})
    results = backend(api).send([sms("m-1", "+61400123456"), sms("m-2", "+61400123999")])
    [(_, _, body)] = api.calls
    assert body["Destinations"] == ["61400123456", "61400123999"]
    assert body["Reference"] == "m-1"
    assert [(r.reference, r.provider_ref, r.credits) for r in results] == [
        ("m-1", "11967222-61400123456", Decimal("1")),
        ("m-2", "11967222-61400123999", Decimal("1")),
    ]


def test_scheduled_send_gives_time_scheduled_in_the_account_time_zone():
    api = Api({"Code": 0, "CampaignId": 11967222, "Messages": 5, "Segments": 1, "Credits": 5})
    # 03:00 UTC on 30 Aug 2030 is 13:00 in Sydney (AEST, +10).
    when = datetime(2030, 8, 30, 3, 0, tzinfo=UTC)
    numbers = ["61400123456", "61400123999", "61400123888", "61400123777", "61400123666"]
    results = backend(api).send(
        [sms(f"1234567-{i}", "+" + n, send_at=when) for i, n in enumerate(numbers)]
    )
    assert api.calls[0][2] == {
        "Message": "Hello, this is a test",
        "Originator": "61400190499",
        "Reference": "1234567-0",
        "TimeScheduled": "203008301300",
        "Destinations": numbers,
        "Action": "create",
    }
    assert {r.status for r in results} == {DeliveryStatus.QUEUED}


def test_time_zone_comes_from_credentials():
    api = Api({"Code": 0, "CampaignId": 1, "Messages": 1, "Segments": 1, "Credits": 1})
    when = datetime(2030, 8, 30, 3, 0, tzinfo=UTC)
    backend(api, time_zone="UTC").send([sms("m-1", "+61400123456", send_at=when)])
    assert api.calls[0][2]["TimeScheduled"] == "203008300300"


def test_a_schedule_time_already_reached_is_sent_now():
    api = Api({"Code": 0, "CampaignId": 1, "Messages": 1, "Segments": 1, "Credits": 1})
    past = datetime(2020, 8, 30, 13, 0, tzinfo=SYDNEY)
    [result] = backend(api).send([sms("m-1", "+61400123456", send_at=past)])
    assert "TimeScheduled" not in api.calls[0][2]
    assert result.status == DeliveryStatus.SENT


def test_different_bodies_are_separate_campaigns_and_results_keep_input_order():
    api = Api(
        {"Code": 0, "CampaignId": 100, "Messages": 2, "Segments": 1, "Credits": 2},
        {"Code": 0, "CampaignId": 200, "Messages": 1, "Segments": 2, "Credits": 2},
    )
    batch = [
        sms("a", "+61400000001", body="Hi Ann"),
        sms("b", "+61400000002", body="Hi Bob, a longer one"),
        sms("c", "+61400000003", body="Hi Ann"),
    ]
    results = backend(api).send(batch)
    assert [(c[2]["Message"], c[2]["Destinations"], c[2]["Reference"]) for c in api.calls] == [
        ("Hi Ann", ["61400000001", "61400000003"], "a"),
        ("Hi Bob, a longer one", ["61400000002"], "b"),
    ]
    assert [(r.reference, r.provider_ref, r.credits) for r in results] == [
        ("a", "100-61400000001", Decimal("1")),
        ("b", "200-61400000002", Decimal("2")),
        ("c", "100-61400000003", Decimal("1")),
    ]


def test_groups_larger_than_max_batch_are_split():
    api = Api(
        {"Code": 0, "CampaignId": 1, "Messages": 2, "Segments": 1, "Credits": 2},
        {"Code": 0, "CampaignId": 2, "Messages": 1, "Segments": 1, "Credits": 1},
    )
    b = backend(api)
    b.max_batch = 2
    results = b.send([sms(f"m{i}", f"+6140000000{i}") for i in range(3)])
    assert [c[2]["Destinations"] for c in api.calls] == [
        ["61400000000", "61400000001"],
        ["61400000002"],
    ]
    assert [r.provider_batch_ref for r in results] == ["1", "1", "2"]


def test_sender_loses_its_plus_and_an_empty_sender_is_left_out():
    api = Api(
        {"Code": 0, "CampaignId": 1, "Messages": 1, "Segments": 1, "Credits": 1},
        {"Code": 0, "CampaignId": 2, "Messages": 1, "Segments": 1, "Credits": 1},
    )
    b = backend(api)
    b.send([sms("m1", "+61400123456", sender="+61400190499")])
    b.send([sms("m2", "+61400123456", sender="")])
    assert api.calls[0][2]["Originator"] == "61400190499"
    assert "Originator" not in api.calls[1][2]


def test_a_number_that_is_not_e164_is_refused_without_a_call():
    api = Api({"Code": 0, "CampaignId": 1, "Messages": 1, "Segments": 1, "Credits": 1})
    bad, good = backend(api).send([sms("x", "0400 12x"), sms("y", "+61400123456")])
    assert (bad.accepted, bad.status, bad.permanent, bad.error_code) == (
        False,
        DeliveryStatus.REJECTED,
        True,
        "invalid_number",
    )
    assert good.accepted
    assert api.calls[0][2]["Destinations"] == ["61400123456"]


@pytest.mark.parametrize(
    ("doc_answer", "kind"),
    [
        ({"Message": "No valid destination number(s) specified", "Code": -111}, "validation"),
        ({"Message": "Campaign message text not specified", "Code": -117}, "validation"),
        ({"Message": "Insufficient credits available to start campaign", "Code": -202}, "credit"),
    ],
)
@pytest.mark.parametrize("http_status", [200, 400])
def test_documented_send_errors_refuse_or_hold_back_the_messages(doc_answer, kind, http_status):
    api = Api(httpx.Response(http_status, json=doc_answer))
    [result] = backend(api).send([sms("m-1", "+61400123456")])
    # A refused text is the message's fault; no credit is the account's.
    outcome = SendOutcome.NOT_ATTEMPTED if kind == "credit" else SendOutcome.REFUSED_PERMANENT
    assert (result.error_code, result.error_kind, result.outcome) == (
        str(doc_answer["Code"]),
        kind,
        outcome,
    )
    assert ERROR_CODES[doc_answer["Code"]][0] in result.error_message


def test_a_failure_after_an_accepted_group_comes_back_as_results_not_an_exception():
    api = Api(
        {"Code": 0, "CampaignId": 1, "Messages": 1, "Segments": 1, "Credits": 1},
        {"Message": "Insufficient credits available to start campaign", "Code": -202},
    )
    results = backend(api).send(
        [
            sms("a", "+61400000001", body="one"),
            sms("b", "+61400000002", body="two"),
            sms("c", "+61400000003", body="three"),
        ]
    )
    assert len(api.requests) == 2  # "three" is not tried after a credit error
    assert [(r.reference, r.outcome, r.error_kind, r.error_code) for r in results] == [
        ("a", SendOutcome.ACCEPTED, "", ""),
        ("b", SendOutcome.NOT_ATTEMPTED, "credit", "-202"),
        ("c", SendOutcome.NOT_ATTEMPTED, "credit", "-202"),
    ]


def test_a_timeout_after_an_accepted_group_marks_the_outcome_unknown():
    api = Api(
        {"Code": 0, "CampaignId": 1, "Messages": 1, "Segments": 1, "Credits": 1},
        lambda request: (_ for _ in ()).throw(httpx.ReadTimeout("slow", request=request)),
    )
    first, second = backend(api).send(
        [sms("a", "+61400000001", body="one"), sms("b", "+61400000002", body="two")]
    )
    assert first.accepted
    assert (second.accepted, second.outcome_unknown, second.permanent) == (False, True, False)
    assert second.status == DeliveryStatus.UNKNOWN


def test_a_validation_error_in_one_group_does_not_stop_the_others():
    api = Api(
        {"Code": 0, "CampaignId": 1, "Messages": 1, "Segments": 1, "Credits": 1},
        {"Message": "too long", "Code": -116},
        {"Code": 0, "CampaignId": 3, "Messages": 1, "Segments": 1, "Credits": 1},
    )
    results = backend(api).send(
        [sms(r, f"+6140000000{i}", body=r) for i, r in enumerate(["a", "b", "c"])]
    )
    assert [(r.accepted, r.error_code) for r in results] == [
        (True, ""),
        (False, "-116"),
        (True, ""),
    ]


def test_gateway_warning_with_a_campaign_id_counts_as_accepted():
    api = Api(
        {"Code": -500, "CampaignId": 5, "Messages": 1, "Segments": 1, "Credits": 1},
        {"Code": -502, "CampaignId": 6, "Messages": 1, "Segments": 1, "Credits": 1},
    )
    b = backend(api)
    [failover] = b.send([sms("a", "+61400000001")])
    [halted] = b.send([sms("b", "+61400000002")])
    assert (failover.accepted, failover.status, failover.raw_status) == (
        True,
        DeliveryStatus.SENT,
        "-500",
    )
    assert (halted.accepted, halted.status) == (True, DeliveryStatus.QUEUED)


@pytest.mark.parametrize("code", [-503, -504, -505, -506, -108])
def test_gateway_offline_without_a_campaign_is_transient(code):
    api = Api({"Message": "Gateway offline", "Code": code})
    [result] = backend(api).send([sms("a", "+61400000001")])
    assert (result.outcome, result.error_kind, result.error_code) == (
        SendOutcome.REFUSED_TRANSIENT,
        "unavailable",
        str(code),
    )


def test_success_without_a_campaign_id_may_have_been_processed():
    api = Api({"Code": 0})
    [result] = backend(api).send([sms("a", "+61400000001")])
    assert (result.outcome, result.error_kind, result.outcome_unknown) == (
        SendOutcome.UNKNOWN,
        "protocol",
        True,
    )


def test_every_documented_error_code_has_a_clear_classification():
    for code, (text, kind, permanent) in ERROR_CODES.items():
        error = SmsEveryoneBackend(credentials=CREDENTIALS).code_error(code, text, operation="send")
        assert error.code == str(code)
        assert text in error.message
        assert (error.permanent, error.kind) == (permanent, kind)
        assert permanent == (not (code <= -500 or code in (-108, -109)))
    assert ERROR_CODES[-202][1:] == ("credit", True)
    assert ERROR_CODES[-2][1:] == ("auth", True)
    unknown = SmsEveryoneBackend(credentials=CREDENTIALS).code_error(-999, "?", operation="x")
    assert (unknown.permanent, unknown.kind) == (True, "validation")
    assert (
        SmsEveryoneBackend(credentials=CREDENTIALS).code_error(-599, "?", operation="x").permanent
        is False
    )


# ---------------------------------------------------- HTTP classification


@pytest.mark.parametrize(
    ("status", "permanent", "kind"),
    [
        (400, True, "validation"),
        (401, True, "auth"),
        (402, True, "credit"),
        (403, True, "auth"),
        (429, False, "rate_limit"),
        (500, False, "unavailable"),
    ],
)
def test_http_statuses_without_a_code_are_classified(status, permanent, kind):
    api = Api(httpx.Response(status, headers={"Retry-After": "30"}, text=""))
    with pytest.raises(ProviderError) as caught:
        backend(api).balance()
    assert (caught.value.permanent, caught.value.kind) == (permanent, kind)
    if status in (429, 500):
        assert caught.value.retry_after == 30.0


def test_timeouts_are_transient():
    api = Api(lambda request: (_ for _ in ()).throw(httpx.ReadTimeout("x", request=request)))
    with pytest.raises(ProviderError) as caught:
        backend(api).balance()
    assert (caught.value.permanent, caught.value.kind) == (False, "timeout")


def test_missing_credentials_fail_before_any_request():
    api = Api()
    b = SmsEveryoneBackend(credentials={"username": "jim"}, transport=httpx.MockTransport(api))
    with pytest.raises(ProviderError, match="needs 'username' and 'password'") as caught:
        b.balance()
    assert (caught.value.permanent, caught.value.kind) == (True, "auth")
    assert api.requests == []


def test_password_never_reaches_logs_or_errors(caplog):
    api = Api(httpx.Response(401, json={"Message": "bad login s56sbdyte83fs", "Code": -2}))
    with caplog.at_level(logging.DEBUG), pytest.raises(ProviderError) as caught:
        backend(api).balance()
    text = caplog.text + str(caught.value) + repr(backend(api))
    assert "s56sbdyte83fs" not in text
    assert AUTH.split()[1] not in text
    assert caught.value.kind == "auth"


def test_delivery_status_of_one_number_asks_for_that_destination():
    api = Api(
        {
            "CampaignId": 11967215,
            "Count": 1,
            "Destinations": [
                {
                    "Destination": "61400123456",
                    "TimeStamp": "2020-07-28T11:06:02",
                    "Status": {"DeliveryReceiptStatusId": 1, "Code": 0},
                }
            ],
        }
    )
    [update] = backend(api).fetch_statuses(
        [ProviderRef(provider_ref="11967215-61400123456", provider_batch_ref="11967215")]
    )
    assert api.calls == [
        ("POST", f"{BASE}/DRStatus", {"CampaignId": 11967215, "Destination": "61400123456"})
    ]
    assert update.status == DeliveryStatus.DELIVERED
    assert update.provider_ref == "11967215-61400123456"
    assert update.to == "+61400123456"
    assert (update.raw_status, update.error_code) == ("1", "")
    assert update.occurred_at == datetime(2020, 7, 28, 11, 6, 2, tzinfo=SYDNEY)


def test_delivery_status_of_a_campaign_is_one_call_and_maps_failures():
    api = Api(
        {
            "CampaignId": 11967218,
            "Count": 3,
            "Destinations": [
                {
                    "Destination": "61400123456",
                    "TimeStamp": "2020-07-28T11:29:16",
                    "Status": {"DeliveryReceiptStatusId": 2, "Code": 300},
                },
                {
                    "Destination": "61400123457",
                    "TimeStamp": "2020-07-28T11:29:17",
                    "Status": {"DeliveryReceiptStatusId": 9, "Code": 0},
                },
                {
                    "Destination": "61499999999",  # not one of ours: ignored
                    "TimeStamp": "2020-07-28T11:29:18",
                    "Status": {"DeliveryReceiptStatusId": 1, "Code": 0},
                },
            ],
        }
    )
    refs = [
        ProviderRef(provider_ref=f"11967218-{n}", provider_batch_ref="11967218")
        for n in ("61400123456", "61400123457")
    ]
    failed, odd = backend(api).fetch_statuses(refs)
    assert api.calls[0][2] == {"CampaignId": 11967218}
    assert (failed.status, failed.raw_status, failed.error_code, failed.error_message) == (
        DeliveryStatus.UNDELIVERED,
        "2",
        "300",
        "Invalid destination",
    )
    assert (odd.status, odd.raw_status) == (DeliveryStatus.UNKNOWN, "9")


def test_no_receipt_yet_gives_no_update_and_unknown_campaigns_are_skipped():
    api = Api(
        {"CampaignId": 11967210, "Count": 0, "Destinations": []},
        {"Message": "CampaignId not found", "Code": -127},
    )
    refs = [
        ProviderRef(provider_ref="11967210-61400123456", provider_batch_ref="11967210"),
        ProviderRef(provider_ref="5-61400123456", provider_batch_ref="5"),
    ]
    assert backend(api).fetch_statuses(refs) == []
    assert [c[2]["CampaignId"] for c in api.calls] == [11967210, 5]


# --------------------------------------------------------------- replies

DOC_REPLIES = {
    "Count": 2,
    "Messages": [
        {
            "Received": "2020-07-27T10:01:10",
            "Originator": "61400123456",
            "Recipient": "61400190444",
            "MessageText": "Thanks, yes i will be at the appointment",
            "ReferenceId": "4499850",
        },
        {
            "Received": "2020-07-27T11:35:10",
            "Originator": "61400987654",
            "Recipient": "61400190555",
            "MessageText": "Can we reschedule?",
            "ReferenceId": "4499851",
        },
    ],
}


@pytest.mark.django_db
def test_fetch_replies_posts_an_empty_object_and_parses_the_doc_example():
    api = Api(DOC_REPLIES)
    first, second = backend(api).fetch_replies()
    assert api.calls == [("POST", f"{BASE}/replies", {})]
    assert (first.from_number, first.to_number, first.body) == (
        "+61400123456",
        "+61400190444",
        "Thanks, yes i will be at the appointment",
    )
    assert first.received_at == datetime(2020, 7, 27, 10, 1, 10, tzinfo=SYDNEY)
    assert first.provider_ref.startswith("4499850-61400123456-")
    assert second.provider_ref.startswith("4499851-61400987654-")
    assert first.raw == DOC_REPLIES["Messages"][0]


@pytest.mark.django_db
def test_replies_are_polled_at_most_once_a_minute():
    api = Api({"Count": 0, "Messages": []})
    b = backend(api)
    assert b.fetch_replies() == []
    with pytest.raises(ProviderError) as caught:
        b.fetch_replies()
    assert (caught.value.kind, caught.value.permanent) == ("rate_limit", False)
    assert 0 < caught.value.retry_after <= 60
    assert len(api.requests) == 1
    assert SmsEveryoneBackend.min_reply_poll_interval == 60


DOC_WEBHOOK = (
    "/hooks/smseveryone/tok/replies?username=xyz&password=xyz&originator=61402756334"
    "&recipient=61429848254&reference=4255525&message_text=Hello"
)


def test_webhook_reply_is_parsed_from_the_query_string_without_credentials():
    request = RequestFactory().get(DOC_WEBHOOK)
    [reply] = SmsEveryoneBackend(credentials=CREDENTIALS).parse_webhook(request)
    assert (reply.from_number, reply.to_number, reply.body) == (
        "+61402756334",
        "+61429848254",
        "Hello",
    )
    assert reply.provider_ref.startswith("4255525-61402756334-")
    assert reply.raw == {
        "originator": "61402756334",
        "recipient": "61429848254",
        "reference": "4255525",
        "message_text": "Hello",
    }


@pytest.mark.django_db
def test_the_same_reply_by_webhook_and_by_poll_has_the_same_provider_ref():
    api = Api(
        {
            "Count": 1,
            "Messages": [
                {
                    "Received": "2020-07-27T10:01:10",
                    "Originator": "61402756334",
                    "Recipient": "61429848254",
                    "MessageText": "Hello",
                    "ReferenceId": "4255525",
                }
            ],
        }
    )
    [polled] = backend(api).fetch_replies()
    [pushed] = backend(api).parse_webhook(RequestFactory().get(DOC_WEBHOOK))
    assert polled.provider_ref == pushed.provider_ref


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("recipient=61429848254&message_text=Hello", "originator"),
        ("originator=abc&message_text=Hello", "not a number"),
        ("originator=61402756334", "message_text"),
    ],
)
def test_malformed_webhook_raises_a_webhook_error_with_the_reason(query, reason):
    request = RequestFactory().get(f"/hooks/x?{query}")
    with pytest.raises(WebhookError, match=reason):
        SmsEveryoneBackend(credentials=CREDENTIALS).parse_webhook(request)


def test_webhook_answer_is_a_plain_text_zero():
    response = SmsEveryoneBackend(credentials=CREDENTIALS).webhook_response(None)
    assert response.status_code == 200
    assert response.content == b"0"
    assert response["Content-Type"] == "text/plain"


# ------------------------------------------------------- balance, credits


@pytest.mark.parametrize(
    "doc_answer",
    [
        {"UserId": 9999, "AllowUnicode": True, "AllowInternational": False, "Credits": 116},
        {"UserId": 9998, "AllowUnicode": False, "AllowInternational": True, "Credits": 119},
    ],
)
def test_balance_reads_retrieve_user_settings(doc_answer):
    api = Api({**doc_answer, "Code": 0})
    assert backend(api).balance() == Decimal(doc_answer["Credits"])
    assert api.calls == [("POST", f"{BASE}/RetrieveUserSettings", {})]


def test_top_up_posts_credits_add_and_returns_the_new_balance():
    api = Api({"Credits": 8488, "Code": 0})
    assert backend(api).top_up(1000) == Decimal(8488)
    assert api.calls == [("POST", f"{BASE}/credits", {"credits": 1000, "action": "add"})]


@pytest.mark.parametrize(
    ("doc_answer", "kind"),
    [
        ({"Message": "Not allowed to add credits", "Code": -129}, "auth"),
        ({"Message": "Invalid amount of credits to add", "Code": -130}, "validation"),
    ],
)
def test_top_up_errors_are_permanent(doc_answer, kind):
    with pytest.raises(ProviderError) as caught:
        backend(Api(doc_answer)).top_up(1000)
    assert (caught.value.code, caught.value.kind, caught.value.permanent) == (
        str(doc_answer["Code"]),
        kind,
        True,
    )


@pytest.mark.parametrize("amount", [0, -5, Decimal("1.5")])
def test_top_up_refuses_bad_amounts_without_a_call(amount):
    api = Api()
    with pytest.raises(ProviderError, match="whole credits above zero"):
        backend(api).top_up(amount)
    assert api.requests == []


# -------------------------------------------------------- opt-outs, lists


def test_the_optout_list_uses_the_documented_body_and_answer():
    api = Api(
        {
            "Count": 2,
            "OptOut": [
                {
                    "Added": "2018-12-05 18:52:42",
                    "Originator": "61400555555",
                    "MessageText": "",
                    "Reason": "Client",
                },
                {
                    "Added": "2016-12-02 15:11:40",
                    "Originator": "61400999999",
                    "MessageText": "",
                    "Reason": "Client",
                },
            ],
        },
    )
    listed = backend(api).optouts_list()
    assert api.calls == [("POST", f"{BASE}/optouts", {"Action": "list"})]
    assert listed == [
        RemoteOptOut(
            number="+61400555555",
            added_at=datetime(2018, 12, 5, 18, 52, 42, tzinfo=SYDNEY),
            reason="Client",
        ),
        RemoteOptOut(
            number="+61400999999",
            added_at=datetime(2016, 12, 2, 15, 11, 40, tzinfo=SYDNEY),
            reason="Client",
        ),
    ]
