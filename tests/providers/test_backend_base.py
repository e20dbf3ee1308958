"""The backend contract: HTTP plumbing, error classification, scrubbing, registry."""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from providers.backends import backend_capabilities, backend_class, get_backend
from providers.backends.base import (
    Capability,
    DeliveryStatus,
    OutboundSms,
    ProviderError,
    ProviderRef,
    SendOutcome,
    SmsBackend,
    UnsupportedOperation,
    map_status,
    parse_retry_after,
    to_e164,
    to_msisdn,
)

API_KEY = "sk_live_9f8e7d6c5b4a"
PASSWORD = "s56sbdyte83fs"


class DemoBackend(SmsBackend):
    name = "demo"
    default_base_url = "https://api.example.test/v1"

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credentials['api_key']}"}


def demo(handler, **credentials) -> DemoBackend:
    return DemoBackend(
        credentials={"api_key": API_KEY, "username": "jim", "password": PASSWORD, **credentials},
        transport=httpx.MockTransport(handler),
        account_key="42",
    )


def answer(status: int, **kwargs):
    return lambda request: httpx.Response(status, **kwargs)


def raising(exc_class):
    def handler(request):
        raise exc_class("boom", request=request)

    return handler


# ------------------------------------------------------------------ HTTP


def test_one_client_is_reused_for_every_call_of_an_instance():
    seen = []

    def handler(request):
        seen.append((request.method, str(request.url), request.headers["Authorization"]))
        return httpx.Response(200, json={"ok": True})

    backend = demo(handler)
    client = backend.client
    assert backend.request("GET", "/ping") == {"ok": True}
    assert backend.request("POST", "/send", json_body={"a": 1}) == {"ok": True}
    assert backend.client is client
    assert seen == [
        ("GET", "https://api.example.test/v1/ping", f"Bearer {API_KEY}"),
        ("POST", "https://api.example.test/v1/send", f"Bearer {API_KEY}"),
    ]
    backend.close()
    assert backend._client is None


def test_timeouts_connect_5s_read_10_to_20s_and_below_the_task_timeout():
    timeout = SmsBackend.timeout
    assert timeout.connect == 5.0
    assert 10.0 <= timeout.read <= 20.0
    assert timeout.connect + timeout.write + timeout.read < settings.Q_CLUSTER["timeout"]


def test_json_body_is_sent_as_json():
    bodies = []

    def handler(request):
        bodies.append((request.headers["Content-Type"], request.content))
        return httpx.Response(200, json={})

    demo(handler).request("POST", "/x", json_body={"Message": "hé"})
    assert bodies == [("application/json", '{"Message":"hé"}'.encode())]


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, "validation"), (401, "auth"), (402, "credit"), (403, "auth"), (404, "not_found")],
)
def test_4xx_answers_are_permanent_errors(status, kind):
    backend = demo(answer(status, json={"code": "E1", "message": "nope"}))
    with pytest.raises(ProviderError) as caught:
        backend.request("POST", "/send")
    error = caught.value
    assert (error.permanent, error.kind, error.status_code, error.code) == (
        True,
        kind,
        status,
        "E1",
    )
    assert "nope" in error.message
    assert error.maybe_processed is False


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_answers_are_transient(status):
    backend = demo(answer(status, text="upstream down"))
    with pytest.raises(ProviderError) as caught:
        backend.request("GET", "/x")
    error = caught.value
    assert (error.permanent, error.kind, error.code) == (False, "unavailable", str(status))
    assert "upstream down" in error.message
    assert error.retryable


def test_429_is_transient_and_exposes_retry_after_seconds():
    backend = demo(answer(429, headers={"Retry-After": "7"}, json={"message": "slow down"}))
    with pytest.raises(ProviderError) as caught:
        backend.request("GET", "/x")
    error = caught.value
    assert (error.permanent, error.kind, error.retry_after, error.code) == (
        False,
        "rate_limit",
        7.0,
        "429",
    )


def test_retry_after_as_http_date_and_on_503():
    later = datetime.now(UTC) + timedelta(hours=1)
    backend = demo(answer(503, headers={"Retry-After": format_datetime(later, usegmt=True)}))
    with pytest.raises(ProviderError) as caught:
        backend.request("GET", "/x")
    assert 3500 < caught.value.retry_after <= 3600


def test_parse_retry_after_ignores_garbage_and_never_goes_negative():
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_read_timeout_is_transient_and_may_have_been_processed():
    with pytest.raises(ProviderError) as caught:
        demo(raising(httpx.ReadTimeout)).request("POST", "/send")
    error = caught.value
    assert (error.permanent, error.kind, error.maybe_processed) == (False, "timeout", True)
    assert "demo: POST /send" in error.message


@pytest.mark.parametrize("exc_class", [httpx.ConnectTimeout, httpx.ConnectError])
def test_connection_failures_are_transient_and_were_not_sent(exc_class):
    with pytest.raises(ProviderError) as caught:
        demo(raising(exc_class)).request("POST", "/send")
    error = caught.value
    assert (error.permanent, error.kind, error.maybe_processed) == (False, "unavailable", False)


def test_connection_dropped_mid_answer_may_have_been_processed():
    with pytest.raises(ProviderError) as caught:
        demo(raising(httpx.RemoteProtocolError)).request("POST", "/send")
    assert (caught.value.permanent, caught.value.maybe_processed) == (False, True)


def test_success_with_a_body_that_is_not_json_says_where_and_what():
    backend = demo(answer(200, text="<html>maintenance</html>"))
    with pytest.raises(ProviderError) as caught:
        backend.request("POST", "/send")
    error = caught.value
    assert error.kind == "protocol"
    assert error.maybe_processed is True
    assert "POST /v1/send answered HTTP 200 with a body that is not JSON" in error.message
    assert "<html>maintenance</html>" in error.message


def test_empty_success_body_is_none_and_text_mode_returns_text():
    assert demo(answer(204)).request("DELETE", "/x") is None
    assert demo(answer(200, text="0")).request("GET", "/x", expect_json=False) == "0"


def test_redirects_are_not_followed():
    backend = demo(answer(302, headers={"Location": "https://elsewhere.test/"}))
    with pytest.raises(ProviderError) as caught:
        backend.request("GET", "/x")
    assert (caught.value.permanent, caught.value.kind) == (True, "protocol")
    assert "elsewhere.test" in caught.value.message


# ------------------------------------------------------------- secrets


def test_logs_errors_and_repr_never_contain_credentials(caplog):
    basic = base64.b64encode(f"jim:{PASSWORD}".encode()).decode()
    responses = iter(
        [
            httpx.Response(200, json={"ok": True}),
            httpx.Response(401, json={"message": f"bad key {API_KEY} for jim:{PASSWORD}"}),
            httpx.Response(500, text=f"trace: Authorization: Basic {basic}"),
            httpx.Response(302, headers={"Location": f"https://x.test/?key={API_KEY}"}),
        ]
    )

    def handler(request):
        return next(responses)

    backend = demo(handler)
    messages = []
    with caplog.at_level(logging.DEBUG):
        backend.request("GET", "/ok")
        for _ in range(3):
            with pytest.raises(ProviderError) as caught:
                backend.request("GET", "/fail")
            messages.append(str(caught.value))
        with pytest.raises(ProviderError) as caught:
            demo(raising(httpx.ReadTimeout)).request("POST", "/send")
        messages.append(str(caught.value))
    everything = caplog.text + "\n".join(messages) + repr(backend)
    assert caplog.records, "errors are logged"
    for secret in (API_KEY, PASSWORD, basic):
        assert secret not in everything
    assert "***" in messages[0]


def test_map_status_is_case_insensitive_and_unmapped_is_unknown():
    table = {"DELIVERED": DeliveryStatus.DELIVERED, "1": DeliveryStatus.DELIVERED}
    assert map_status(table, "delivered") == DeliveryStatus.DELIVERED
    assert map_status(table, 1) == DeliveryStatus.DELIVERED
    assert map_status(table, "bounced") == DeliveryStatus.UNKNOWN
    assert map_status(table, None) == DeliveryStatus.UNKNOWN


def test_numbers_convert_between_e164_and_msisdn():
    assert to_msisdn("+61400123456") == "61400123456"
    assert to_msisdn("0061400123456") == "61400123456"
    assert to_e164("61400123456") == "+61400123456"
    assert to_e164("+61400123456") == "+61400123456"
    assert to_e164("Acme") == "Acme"
    with pytest.raises(ProviderError) as caught:
        to_msisdn("0400 abc")
    assert (caught.value.permanent, caught.value.kind) == (True, "validation")
    assert "E.164" in caught.value.message


def test_operations_a_backend_lacks_raise_unsupported_permanently():
    backend = DemoBackend(credentials={"api_key": "k"})
    ref = ProviderRef(provider_ref="1")
    calls = [
        lambda: backend.fetch_statuses([ref]),
        lambda: backend.fetch_replies(),
        lambda: backend.lookup_by_reference(["m1"]),
        lambda: backend.balance(),
        lambda: backend.top_up(5),
        lambda: backend.optouts_list(),
        lambda: backend.parse_webhook(None),
    ]
    for call in calls:
        with pytest.raises(UnsupportedOperation) as caught:
            call()
        assert (caught.value.permanent, caught.value.kind) == (True, "unsupported")
    # send() never raises: a backend without send hooks refuses each message.
    [result] = backend.send([OutboundSms(reference="m1", to="+61400123456", body="x")])
    assert (result.outcome, result.error_kind) == (SendOutcome.REFUSED_PERMANENT, "unsupported")
    assert not backend.supports(Capability.OPTOUTS)
    with pytest.raises(UnsupportedOperation, match="demo does not support opt-out list"):
        backend.require(Capability.OPTOUTS, "opt-out list")


def test_provider_error_as_dict_is_json_safe():
    error = ProviderError("x", code=-202, permanent=True, kind="credit", status_code=200)
    assert error.as_dict() == {
        "message": "x",
        "code": "-202",
        "kind": "credit",
        "permanent": True,
        "retry_after": None,
        "status_code": 200,
        "maybe_processed": False,
    }
    assert str(error) == "x (code -202)"


# ------------------------------------------------------------- registry


def test_unknown_backend_key_names_the_known_ones():
    with pytest.raises(ImproperlyConfigured, match=r"No SMS backend 'nope'; known: .*simulator"):
        backend_class("nope")
    assert backend_capabilities("nope") == frozenset()


def test_backend_capabilities_without_an_instance():
    assert backend_capabilities("simulator") == frozenset(Capability)
    assert Capability.LOOKUP_BY_REFERENCE not in backend_capabilities("smseveryone")


def test_get_backend_passes_credentials_account_key_and_transport(make_account):
    account = make_account(
        backend="smseveryone", credentials={"username": "jim", "password": PASSWORD}
    )
    seen = []

    def handler(request):
        seen.append(str(request.url))
        return httpx.Response(200, json={"UserId": 1, "Credits": 116, "Code": 0})

    backend = account.get_backend(transport=httpx.MockTransport(handler))
    assert type(backend).__name__ == "SmsEveryoneBackend"
    assert backend.account_key == str(account.pk)
    assert backend.credentials == {"username": "jim", "password": PASSWORD}
    assert str(backend.balance()) == "116"
    assert seen == ["https://smseveryone.com/api/RetrieveUserSettings"]
    simulator = get_backend(make_account(credentials={"seed": 3}))
    assert simulator.name == "simulator"
    assert simulator.config.seed == "3"


@pytest.mark.parametrize("key", sorted(settings.SMS_BACKENDS))
def test_body_limits_live_in_providers_limits_not_on_backends(key):
    # One source of truth: a second table on the backends drifted from the
    # providers' documented limits (612/268 for everyone).
    cls = backend_class(key)
    assert not any("max_length" in vars(klass) for klass in cls.__mro__)
