"""TransmitSMS backend against httpx.MockTransport, with the doc's calls,
fields and error table (provider-docs/transmitsms.txt and its README notes)."""

from __future__ import annotations

import base64
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

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
    WebhookUrls,
    batch_stop_error,
)
from providers.backends.transmitsms import ERROR_CODES, TransmitSmsBackend
from tests.campaigns.engine_helpers import clock, enqueue_calls, enqueued  # noqa: F401
from tests.providers.contract.fakes import ScriptedApi

CREDENTIALS = {"api_key": "3cbb4a6bd8d4d9cd2d5a5a2b4f0e7f41", "secret": "transmit-secret"}
AUTH = "Basic " + base64.b64encode(b"3cbb4a6bd8d4d9cd2d5a5a2b4f0e7f41:transmit-secret").decode()
SUCCESS = {"code": "SUCCESS", "description": "OK"}
HOOKS = WebhookUrls(
    status="https://sms.example.com/hooks/transmitsms/tok/status/",
    inbound="https://sms.example.com/hooks/transmitsms/tok/inbound/",
)
#: The doc's send-sms answer: ``{message_id, send_at, recipients, cost, sms}``.
SENT = {
    "message_id": 3400958,
    "send_at": "2014-01-10 04:08:10",
    "recipients": 2,
    "cost": 0.14,
    "sms": 1,
    "error": SUCCESS,
}


class Api(ScriptedApi):
    """The scripted provider; ``calls`` checks the envelope."""

    @property
    def calls(self) -> list[tuple[str, dict[str, str]]]:
        """(path, form) of each request, after checking method, auth and encoding."""
        out = []
        for request in self.requests:
            assert request.method == "POST"
            assert request.headers["Authorization"] == AUTH
            if request.content:
                assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
            out.append((request.url.path, dict(httpx.QueryParams(request.content.decode()))))
        return out


@pytest.fixture(autouse=True)
def no_real_sleep(monkeypatch):
    """The per-instance spacing (2 calls/s) on a fake clock."""
    from providers.backends import transmitsms

    now = [1000.0]
    slept: list[float] = []
    monkeypatch.setattr(transmitsms, "_monotonic", lambda: now[0])

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(transmitsms, "_sleep", sleep)
    return slept


def backend(api: Api, **options) -> TransmitSmsBackend:
    return TransmitSmsBackend(
        credentials=dict(CREDENTIALS),
        transport=httpx.MockTransport(api),
        account_key="7",
        **options,
    )


def sms(ref: str, to: str, body: str = "Hello from Acme", **kw) -> OutboundSms:
    return OutboundSms(reference=ref, to=to, body=body, sender=kw.pop("sender", "Acme"), **kw)


def error(code: str, description: str = "") -> dict:
    return {"error": {"code": code, "description": description or code}}


# ------------------------------------------------------------------ send


def test_send_posts_one_form_encoded_send_sms_with_callbacks_and_validity():
    api = Api(SENT)
    when = datetime(2030, 1, 10, 15, 8, 10, tzinfo=UTC)
    results = backend(api, webhook_urls=HOOKS, validity=60).send(
        [sms("m1", "+61400000001", send_at=when), sms("m2", "+61400000002", send_at=when)]
    )
    assert api.calls == [
        (
            "/send-sms.json",
            {
                "message": "Hello from Acme",
                "to": "61400000001,61400000002",
                "from": "Acme",
                "send_at": "2030-01-10 15:08:10",
                "validity": "60",
                "dlr_callback": HOOKS.status + "?ref=m1",
                "reply_callback": HOOKS.inbound,
            },
        )
    ]
    assert [(r.outcome, r.provider_ref, r.provider_batch_ref, r.status) for r in results] == [
        (SendOutcome.ACCEPTED, "3400958-61400000001", "3400958", DeliveryStatus.QUEUED),
        (SendOutcome.ACCEPTED, "3400958-61400000002", "3400958", DeliveryStatus.QUEUED),
    ]
    assert results[0].credits == Decimal("0.07")


def test_send_at_is_written_in_utc():
    api = Api(SENT)
    when = datetime(2030, 1, 11, 2, 8, 10, tzinfo=ZoneInfo("Australia/Sydney"))  # UTC+11
    backend(api).send([sms("m1", "+61400000001", send_at=when)])
    assert api.calls[0][1]["send_at"] == "2030-01-10 15:08:10"


def test_numeric_sender_travels_as_digits_and_no_callbacks_without_urls():
    api = Api({**SENT, "recipients": 1})
    results = backend(api).send([sms("m1", "+61400000001", sender="+61 400 999 000")])
    form = api.calls[0][1]
    assert form["from"] == "61400999000"
    assert "dlr_callback" not in form and "reply_callback" not in form
    assert results[0].status == DeliveryStatus.SENT


def test_at_most_500_numbers_per_send_sms_call():
    numbers = [f"+6140{i:07d}" for i in range(1200)]
    api = Api(*[{**SENT, "message_id": 10 + i} for i in range(3)])
    results = backend(api).send([sms(f"m{i}", n) for i, n in enumerate(numbers)])
    sizes = [len(form["to"].split(",")) for _, form in api.calls]
    assert sizes == [500, 500, 200]
    assert Counter(r.outcome for r in results) == {SendOutcome.ACCEPTED: 1200}
    assert {r.provider_batch_ref for r in results} == {"10", "11", "12"}


def test_without_a_pacer_calls_of_one_instance_are_half_a_second_apart(no_real_sleep):
    api = Api(*[{**SENT, "message_id": i} for i in range(3)])
    batch = [sms("a", "+61400000001", body="one"), sms("b", "+61400000002", body="two")]
    batch.append(sms("c", "+61400000003", body="three"))
    backend(api).send(batch)
    assert len(api.requests) == 3
    assert no_real_sleep == [0.5, 0.5]


def test_with_a_pacer_every_call_asks_it_and_no_local_spacing(no_real_sleep):
    asked = []
    api = Api({**SENT, "recipients": 1}, {**SENT, "recipients": 1})
    be = backend(api, pacer=asked.append)
    be.send([sms("a", "+61400000001", body="one"), sms("b", "+61400000002", body="two")])
    assert asked == ["send", "send"] and no_real_sleep == []


def test_a_send_answer_without_message_id_is_unknown_never_resent():
    api = Api({"error": SUCCESS})
    results = backend(api).send([sms("m1", "+61400000001")])
    assert results[0].outcome == SendOutcome.UNKNOWN


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("code", sorted(ERROR_CODES))
def test_every_documented_error_code_is_classified(code):
    status, kind, permanent = ERROR_CODES[code]
    api = Api(httpx.Response(status, json=error(code, "from the doc's table")))
    with pytest.raises(ProviderError) as raised:
        backend(api).balance()
    assert (raised.value.code, raised.value.kind, raised.value.permanent) == (
        code,
        kind,
        permanent,
    )
    assert raised.value.status_code == status


@pytest.mark.parametrize("code", sorted(ERROR_CODES))
def test_an_error_code_inside_http_200_is_an_error_too(code):
    _status, kind, permanent = ERROR_CODES[code]
    api = Api(error(code))
    with pytest.raises(ProviderError) as raised:
        backend(api).balance()
    assert (raised.value.kind, raised.value.permanent) == (kind, permanent)


def test_over_limit_drops_the_request_so_messages_are_not_attempted():
    api = Api(
        httpx.Response(
            429, json=error("OVER_LIMIT", "You have exceeded the request limit."), headers={}
        )
    )
    results = backend(api).send([sms("m1", "+61400000001"), sms("m2", "+61400000002")])
    assert {(r.outcome, r.error_kind) for r in results} == {
        (SendOutcome.NOT_ATTEMPTED, ErrorKind.RATE_LIMIT)
    }
    assert results[0].retry_after == 1.0  # the limit is per second
    stop = batch_stop_error(results)
    assert (stop.kind, stop.permanent, stop.maybe_processed) == ("rate_limit", False, False)


def test_over_limit_honours_retry_after():
    api = Api(httpx.Response(429, json=error("OVER_LIMIT"), headers={"Retry-After": "4"}))
    results = backend(api).send([sms("m1", "+61400000001")])
    assert results[0].retry_after == 4


@pytest.mark.parametrize("code", ["AUTH_FAILED", "AUTH_FAILED_NO_DATA"])
def test_auth_failures_hold_the_batch_back_permanently(code):
    api = Api(httpx.Response(401, json=error(code)))
    results = backend(api).send([sms("m1", "+61400000001"), sms("m2", "+61400000002", "x")])
    assert {(r.outcome, r.error_kind) for r in results} == {
        (SendOutcome.NOT_ATTEMPTED, ErrorKind.AUTH)
    }
    assert len(api.requests) == 1  # the second call was never made
    assert batch_stop_error(results).permanent


def test_field_invalid_refuses_its_chunk_and_the_other_chunks_go_on():
    api = Api(httpx.Response(400, json=error("FIELD_INVALID", "to")), {**SENT, "recipients": 1})
    results = backend(api).send([sms("m1", "+61400000001", "a"), sms("m2", "+61400000002", "b")])
    assert [r.outcome for r in results] == [SendOutcome.REFUSED_PERMANENT, SendOutcome.ACCEPTED]
    assert results[0].error_code == "FIELD_INVALID" and results[0].status == "rejected"


def test_missing_credentials_say_what_to_fill_in():
    be = TransmitSmsBackend(credentials={}, transport=httpx.MockTransport(Api()))
    results = be.send([sms("m1", "+61400000001")])
    assert results[0].error_kind == ErrorKind.AUTH
    assert "api_key" in results[0].error_message


def test_errors_never_show_the_secret():
    api = Api(httpx.Response(400, json=error("FIELD_INVALID", "bad secret transmit-secret")))
    with pytest.raises(ProviderError) as raised:
        backend(api).balance()
    assert "transmit-secret" not in str(raised.value)


# -------------------------------------------------------------- statuses


def recipients_page(numbers, status, *, page=1, count=1):
    return {
        "message": {"id": 3400958},
        "recipients": [
            {"mobile": int(n), "delivery_status": status, "delivery_at": "2014-01-10 04:09:00"}
            for n in numbers
        ],
        "page": {"count": count, "number": page},
        "total": len(numbers) * count,
        "error": SUCCESS,
    }


def test_fetch_statuses_pages_get_sms_sent_until_every_number_is_seen():
    api = Api(
        recipients_page(["61400000009", "61400000001"], "delivered", page=1, count=3),
        recipients_page(["61400000002"], "hard-bounce", page=2, count=3),
    )
    refs = [
        ProviderRef("3400958-61400000001", "3400958", "m1", "+61400000001"),
        ProviderRef("3400958-61400000002", "3400958", "m2", "+61400000002"),
    ]
    updates = backend(api).fetch_statuses(refs)
    assert api.calls == [
        ("/get-sms-sent.json", {"message_id": "3400958", "page": "1", "max": "100"}),
        ("/get-sms-sent.json", {"message_id": "3400958", "page": "2", "max": "100"}),
    ]
    assert [(u.provider_ref, u.reference, u.status, u.raw_status) for u in updates] == [
        ("3400958-61400000001", "m1", DeliveryStatus.DELIVERED, "delivered"),
        ("3400958-61400000002", "m2", DeliveryStatus.UNDELIVERED, "hard-bounce"),
    ]
    assert updates[0].occurred_at == datetime(2014, 1, 10, 4, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    "raw, status",
    [
        ("delivered", DeliveryStatus.DELIVERED),
        ("pending", DeliveryStatus.SENT),
        ("soft-bounce", DeliveryStatus.UNDELIVERED),
        ("hard-bounce", DeliveryStatus.UNDELIVERED),
        ("something-new", DeliveryStatus.UNKNOWN),
    ],
)
def test_delivery_statuses_map_and_keep_the_raw_value(raw, status):
    api = Api(recipients_page(["61400000001"], raw))
    [update] = backend(api).fetch_statuses([ProviderRef("3400958-61400000001", "3400958")])
    assert (update.status, update.raw_status) == (status, raw)


def test_a_send_the_provider_does_not_know_is_skipped():
    api = Api(httpx.Response(400, json=error("NOT_FOUND", "message_id")), recipients_page([], ""))
    refs = [ProviderRef("1-61400000001", "1"), ProviderRef("2-61400000002", "2")]
    assert backend(api).fetch_statuses(refs) == []
    assert len(api.requests) == 2


def test_get_balance():
    api = Api({"balance": 1234.56, "currency": "AUD", "error": SUCCESS})
    assert backend(api).balance() == Decimal("1234.56")
    assert api.calls == [("/get-balance.json", {})]


# --------------------------------------------------------------- replies

RESPONSES = {
    "page": {"count": 1, "number": 1},
    "total": 2,
    "responses": [
        {
            "id": 5820,
            "message_id": 3400958,
            "received_at": "2014-01-10 05:01:12",
            "msisdn": 61400000001,
            "response": "Yes please",
            "longcode": 61411222333,
        },
        {
            "id": 5821,
            "message_id": 3400958,
            "received_at": "2014-01-10 05:02:12",
            "msisdn": 61400000002,
            "response": "no more",
            "longcode": 61411222333,
            "is_optout": "yes",
        },
    ],
    "error": SUCCESS,
}


@pytest.mark.django_db
def test_fetch_replies_reads_get_user_sms_responses_since_the_last_poll():
    api = Api(RESPONSES, {**RESPONSES, "responses": []})
    be = backend(api)
    replies = be.fetch_replies()
    assert [(r.from_number, r.body, r.provider_ref, r.opt_out) for r in replies] == [
        ("+61400000001", "Yes please", "5820", False),
        ("+61400000002", "no more", "5821", True),
    ]
    assert replies[0].to_number == "+61411222333"
    assert replies[0].in_reply_to_provider_ref == "3400958-61400000001"
    assert replies[0].received_at == datetime(2014, 1, 10, 5, 1, 12, tzinfo=UTC)
    be.fetch_replies()
    first, second = (form for _, form in api.calls)
    assert first["page"] == "1" and first["max"] == "100"
    # The second poll starts where the first ended, less the overlap.
    start = datetime.fromisoformat(second["start"] + "+00:00")
    end_first = datetime.fromisoformat(first["end"] + "+00:00")
    assert end_first - timedelta(minutes=11) < start <= end_first


# -------------------------------------------------------------- webhooks

factory = RequestFactory()


def test_dlr_callback_is_a_get_with_the_documented_parameters():
    request = factory.get(
        "/hooks/x/",
        {
            "message_id": "3400958",
            "mobile": "61400000001",
            "datetime": "2014-01-10 04:09:00",
            "status": "delivered",
            "user_id": "1234",
        },
    )
    [update] = backend(Api()).parse_webhook(request)
    assert (update.provider_ref, update.status, update.to) == (
        "3400958-61400000001",
        DeliveryStatus.DELIVERED,
        "+61400000001",
    )


def test_reply_callback_with_is_optout_yes_is_an_opt_out():
    request = factory.get(
        "/hooks/x/",
        {
            "message_id": "3400958",
            "mobile": "61400000001",
            "longcode": "61411222333",
            "datetime_entry": "2014-01-10 05:01:12",
            "response": "please remove me",
            "response_id": "5822",
            "is_optout": "yes",
        },
    )
    [reply] = backend(Api()).parse_webhook(request)
    assert (reply.from_number, reply.body, reply.provider_ref, reply.opt_out) == (
        "+61400000001",
        "please remove me",
        "5822",
        True,
    )


@pytest.mark.parametrize(
    "params",
    [{}, {"mobile": "abc", "status": "delivered"}, {"mobile": "61400000001", "status": "x"}],
)
def test_a_callback_missing_what_it_needs_is_refused_with_the_reason(params):
    with pytest.raises(WebhookError):
        backend(Api()).parse_webhook(factory.get("/hooks/x/", params))


@pytest.mark.django_db
def test_webhooks_end_to_end_report_reply_and_optout_idempotent(make_account):
    from campaigns.counters import counters_recount
    from campaigns.models import Campaign, InboundMessage, Message
    from contacts.models import OptOut

    account = make_account(balance=Decimal("10"), backend="transmitsms", credentials=CREDENTIALS)
    campaign = Campaign.objects.create(name="P", account=account, body="Hi", status="sending")
    message = Message.objects.create(
        campaign=campaign,
        phone="+61400000001",
        body="Hi",
        status=Message.Status.SENT,
        credits=Decimal("1"),
        provider_ref="3400958-61400000001",
        provider_batch_ref="3400958",
        sent_at=datetime(2024, 1, 1, tzinfo=UTC),
    )
    counters_recount(campaign_id=campaign.pk)
    client = Client(enforce_csrf_checks=True)
    base = f"/hooks/transmitsms/{account.webhook_token}"
    dlr = {"message_id": "3400958", "mobile": "61400000001", "status": "delivered"}
    for _ in range(2):  # the provider retries callbacks
        assert client.get(f"{base}/status/", dlr).status_code == 200
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED
    reply = {
        "message_id": "3400958",
        "mobile": "61400000001",
        "response": "no thanks",
        "response_id": "77",
        "is_optout": "yes",
    }
    for _ in range(2):
        assert client.get(f"{base}/inbound/", reply).status_code == 200
    assert InboundMessage.objects.filter(account=account).count() == 1
    inbound = InboundMessage.objects.get(account=account)
    assert inbound.action == "opt_out" and inbound.in_reply_to_id == message.pk
    assert OptOut.objects.filter(phone="+61400000001").exists()


@pytest.mark.django_db
def test_get_backend_passes_our_webhook_urls(make_account, settings):
    settings.PUBLIC_BASE_URL = "https://sms.example.com/"
    account = make_account(backend="transmitsms", credentials=CREDENTIALS)
    be = account.get_backend()
    assert be._callbacks() == {
        "dlr_callback": f"https://sms.example.com/hooks/transmitsms/{account.webhook_token}/status/",
        "reply_callback": (
            f"https://sms.example.com/hooks/transmitsms/{account.webhook_token}/inbound/"
        ),
    }


# ------------------------------------------------- a 3,000-recipient campaign


@pytest.mark.django_db
def test_a_3000_recipient_campaign_sends_each_once_in_6_calls_never_over_2_per_second(
    make_account, superuser, monkeypatch, request
):
    request.getfixturevalue("enqueued")  # dispatch tasks recorded, not run
    virtual = request.getfixturevalue("clock")
    from campaigns.engine import campaign_dispatch
    from campaigns.models import Campaign, Message
    from campaigns.services import campaign_send_now
    from providers.backends import transmitsms
    from tests.campaigns.engine_helpers import (
        assert_books_balance,
        assert_campaign_consistent,
        make_campaign,
        new_phones,
    )
    from tests.providers.contract.fakes import FakeProvider
    from tests.providers.contract.profile_transmitsms import send_sms

    # Every clock on virtual time: the engine's pacer and the backend's spacing.
    monkeypatch.setattr(transmitsms, "_monotonic", virtual.time)
    monkeypatch.setattr(transmitsms, "_sleep", virtual.sleep)
    fake = FakeProvider()
    at: list[float] = []

    def route(request, fake):
        # The provider's own limit: a third call within one second is dropped.
        now = virtual.time()
        if sum(1 for t in at if now - t < 1) >= 2:
            fake.state["over_limit"] = fake.state.get("over_limit", 0) + 1
            return httpx.Response(429, json=error("OVER_LIMIT"))
        at.append(now)
        return send_sms(request, fake)

    fake.route("POST", "/send-sms.json", route)
    # No limits of ours: only the provider's 2 calls/s and 500 numbers per call.
    account = make_account(
        balance=Decimal("3000"),
        backend="transmitsms",
        credentials=CREDENTIALS,
        requests_per_second=0,
        messages_per_second=0,
    )
    phones = new_phones(3000)
    campaign = make_campaign(account=account, phones=phones, body="Sale on now at Acme")
    campaign_send_now(campaign=campaign, user=superuser)
    be = TransmitSmsBackend(credentials=CREDENTIALS, transport=fake.transport, account_key="x")
    for _ in range(20):
        run = campaign_dispatch(campaign_id=campaign.pk, backend=be)
        if run.state == "done":
            break
        if run.next_at is not None:
            virtual.set(max(run.next_at, virtual.now()))
    assert run.state == "done"
    assert fake.accepted_counts() == Counter(dict.fromkeys(phones, 1))
    assert len(fake.calls) == 6  # 3,000 / 500, none dropped
    assert "over_limit" not in fake.state
    assert max(sum(1 for u in at if t <= u < t + 1 - 1e-9) for t in at) <= 2
    assert Counter(Message.objects.filter(campaign=campaign).values_list("status", flat=True)) == {
        "sent": 3000
    }
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert_books_balance(account)
    assert_campaign_consistent(campaign)


# ------------------------------------------------------ reseller clients

RESELLER = {**CREDENTIALS, "reseller": True}


class ResellerApi:
    """The reseller calls, stateful: clients with balances."""

    def __init__(self, *, credit_works: bool = True, existing: dict | None = None):
        self.clients: dict[str, dict] = dict(existing or {})
        self.credit_works = credit_works
        self.calls: list[tuple[str, dict]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == AUTH
        method = request.url.path.strip("/").removesuffix(".json")
        form = dict(httpx.QueryParams(request.content.decode()))
        self.calls.append((method, form))
        if method == "add-client":
            if any(c["email"] == form["email"] for c in self.clients.values()):
                return httpx.Response(400, json=error("KEY_EXISTS", "email"))
            client_id = str(1000 + len(self.clients))
            self.clients[client_id] = {"id": int(client_id), **form, "balance": 0}
            return httpx.Response(
                200,
                json={
                    "id": int(client_id),
                    "name": form["name"],
                    "apikey": "k" * 32,
                    "secret": "client-secret",
                    "error": SUCCESS,
                },
            )
        if method == "get-clients":
            clients = list(self.clients.values())
            return httpx.Response(
                200, json={"clients": clients, "page": {"count": 1, "number": 1}, "error": SUCCESS}
            )
        client = self.clients.get(form.get("client_id", ""))
        if client is None:
            return httpx.Response(400, json=error("NOT_FOUND", "client_id"))
        if method == "edit-client" and self.credit_works:
            client["balance"] = float(Decimal(str(client["balance"])) + Decimal(form["credit"]))
        return httpx.Response(200, json={**client, "error": SUCCESS})


@pytest.fixture
def reseller_accounts(make_account):
    parent = make_account(balance=Decimal("100"), backend="transmitsms", credentials=RESELLER)
    child = make_account(
        backend="transmitsms",
        parent=parent,
        credentials={"client_email": "shop@example.com", "client_name": "Shop"},
    )
    return parent, child


@pytest.mark.django_db
def test_a_transfer_to_a_sub_account_creates_and_tops_up_its_reseller_client(
    reseller_accounts, superuser
):
    from providers.services import credits_transfer

    parent, child = reseller_accounts
    api = ResellerApi()
    be = TransmitSmsBackend(credentials=RESELLER, transport=httpx.MockTransport(api))
    row = credits_transfer(
        source=parent,
        target=child,
        amount="25",
        user=superuser,
        idempotency_key="t-1",
        backend=be,
    )
    assert [m for m, _ in api.calls] == ["add-client", "get-client", "edit-client", "get-client"]
    assert api.calls[0][1] == {"name": "Shop", "email": "shop@example.com"}
    assert api.calls[2][1] == {"client_id": "1000", "credit": "25.00"}
    assert api.clients["1000"]["balance"] == 25
    child.refresh_from_db()
    parent.refresh_from_db()
    assert (parent.balance, child.balance) == (Decimal("75"), Decimal("25"))
    assert child.credentials["client_id"] == "1000"
    assert child.credentials["api_key"] == "k" * 32
    incoming = child.ledger.get()
    assert incoming.provider_response["reseller_client"] == "1000"
    assert Decimal(incoming.provider_response["provider_balance"]) == 25
    # The same transfer again (same key): answered from the ledger, not the provider.
    again = credits_transfer(
        source=parent,
        target=child,
        amount="25",
        user=superuser,
        idempotency_key="t-1",
        backend=be,
    )
    assert again.pk == row.pk and len(api.calls) == 4
    assert api.clients["1000"]["balance"] == 25


@pytest.mark.django_db
def test_a_client_that_exists_already_is_linked_not_created_twice(reseller_accounts, superuser):
    from providers.services import credits_transfer

    parent, child = reseller_accounts
    api = ResellerApi(existing={"77": {"id": 77, "email": "shop@example.com", "balance": 5}})
    be = TransmitSmsBackend(credentials=RESELLER, transport=httpx.MockTransport(api))
    credits_transfer(source=parent, target=child, amount="10", user=superuser, backend=be)
    assert [m for m, _ in api.calls][:2] == ["add-client", "get-clients"]
    assert list(api.clients) == ["77"] and api.clients["77"]["balance"] == 15
    child.refresh_from_db()
    assert child.credentials["client_id"] == "77"


@pytest.mark.django_db
def test_a_top_up_the_provider_did_not_apply_records_nothing(reseller_accounts, superuser):
    from providers.services import credits_transfer
    from providers.services.errors import CreditError

    parent, child = reseller_accounts
    api = ResellerApi(credit_works=False)
    be = TransmitSmsBackend(credentials=RESELLER, transport=httpx.MockTransport(api))
    with pytest.raises(CreditError, match="Nothing was added there"):
        credits_transfer(source=parent, target=child, amount="10", user=superuser, backend=be)
    parent.refresh_from_db()
    child.refresh_from_db()
    assert (parent.balance, child.balance) == (Decimal("100"), Decimal("0"))
    assert not child.ledger.exists()


@pytest.mark.django_db
def test_sub_accounts_of_a_non_reseller_account_make_no_reseller_call(make_account, superuser):
    from providers.services import credits_transfer

    parent = make_account(balance=Decimal("100"), backend="transmitsms", credentials=CREDENTIALS)
    child = make_account(backend="transmitsms", parent=parent, credentials=CREDENTIALS)
    api = ResellerApi()
    be = TransmitSmsBackend(credentials=CREDENTIALS, transport=httpx.MockTransport(api))
    credits_transfer(source=parent, target=child, amount="10", user=superuser, backend=be)
    assert api.calls == []
    child.refresh_from_db()
    assert child.balance == Decimal("10")


@pytest.mark.django_db
def test_a_client_balance_that_moved_by_another_amount_is_drift_to_check(
    reseller_accounts, superuser
):
    from providers.services import credits_transfer
    from providers.services.errors import CreditError

    parent, child = reseller_accounts
    api = ResellerApi()
    original = api.__call__

    def doubled(request):  # the provider adds the credit twice
        response = original(request)
        if api.calls[-1][0] == "edit-client":
            api.clients["1000"]["balance"] += 10
        return response

    be = TransmitSmsBackend(credentials=RESELLER, transport=httpx.MockTransport(doubled))
    with pytest.raises(CreditError, match="may have been added"):
        credits_transfer(source=parent, target=child, amount="10", user=superuser, backend=be)
    child.refresh_from_db()
    assert child.balance == 0 and not child.ledger.exists()


@pytest.mark.django_db
def test_a_report_before_the_send_is_recorded_is_asked_to_retry(make_account):
    """The reference on the callback URL finds the message still submitting."""
    from campaigns.models import Campaign, Message

    account = make_account(backend="transmitsms", credentials=CREDENTIALS)
    campaign = Campaign.objects.create(name="P", account=account, body="Hi", status="sending")
    first = Message.objects.create(
        campaign=campaign, phone="+61400000001", body="Hi", status=Message.Status.SUBMITTING
    )
    Message.objects.create(
        campaign=campaign, phone="+61400000002", body="Hi", status=Message.Status.SUBMITTING
    )
    # Our ?ref= and the provider's parameters, as the callback arrives.
    dlr = {"ref": f"m{first.pk}", "message_id": "3400958", "mobile": "61400000002"}
    url = f"/hooks/transmitsms/{account.webhook_token}/status/"
    response = Client().get(url, {**dlr, "status": "delivered"})
    assert response.status_code == 503 and response["Retry-After"]
