"""The backend contract, the same for every registered backend.

Each backend of ``settings.SMS_BACKENDS`` is driven through its profile
(``profile_<key>.py``) against a fake provider that follows the doc. What
is checked is what the engine relies on: exactly one result per message, in
input order, with an explicit outcome; accepted messages never reported
otherwise; account and provider trouble reported so the engine can react
once (:func:`batch_stop_error`); ``send()`` never raises.
"""

from __future__ import annotations

import pytest
from django.conf import settings

from providers.backends import backend_class
from providers.backends.base import (
    WEBHOOK_KINDS,
    ErrorKind,
    OutboundSms,
    SendOutcome,
    SendResult,
    WebhookError,
    batch_stop_error,
)
from tests.providers.contract import fakes
from tests.providers.contract.profiles import ContractProfile, load_profiles

pytestmark = pytest.mark.django_db  # token and simulator state live in the cache

PROFILES = load_profiles()


@pytest.fixture(params=sorted(settings.SMS_BACKENDS))
def profile(request) -> ContractProfile:
    key = request.param
    if key not in PROFILES:
        pytest.fail(
            f"Backend {key!r} has no contract profile: add "
            f"tests/providers/contract/profile_{key}.py (see profiles.py)."
        )
    instance = PROFILES[key]()
    assert backend_class(key) is type(instance.backend()), "the profile builds another backend"
    return instance


def three(profile: ContractProfile) -> list[OutboundSms]:
    """Two recipients of one text (one call where the provider groups), then
    a third with its own text (another call wherever texts are grouped)."""
    n1, n2, n3 = profile.numbers[:3]
    return [
        OutboundSms(reference="m1", to=n1, body="Hello from the contract", sender="Acme"),
        OutboundSms(reference="m2", to=n2, body="Hello from the contract", sender="Acme"),
        OutboundSms(reference="m3", to=n3, body="Another text", sender="Acme"),
    ]


def check_shape(batch: list[OutboundSms], results: list[SendResult]) -> None:
    """One result per message, same order, each with an explicit outcome."""
    assert [r.reference for r in results] == [sms.reference for sms in batch]
    for result in results:
        assert isinstance(result.outcome, SendOutcome)
        assert result.accepted == (result.outcome == SendOutcome.ACCEPTED)
        if result.outcome != SendOutcome.ACCEPTED:
            assert result.error_kind in set(ErrorKind), result
            assert result.error_message


def test_send_accepts_every_message_once_with_the_providers_id(profile):
    batch = three(profile)
    results = profile.backend().send(batch)
    check_shape(batch, results)
    assert {r.outcome for r in results} == {SendOutcome.ACCEPTED}
    assert all(r.provider_ref or r.provider_batch_ref for r in results)
    assert profile.accepted(batch) == {sms.to: 1 for sms in batch}
    assert batch_stop_error(results) is None


def test_a_number_that_cannot_be_sent_is_refused_alone_without_raising(profile):
    batch = [*three(profile)[:2], OutboundSms(reference="bad", to="0400 12x", body="Hi")]
    results = profile.backend().send(batch)
    check_shape(batch, results)
    assert [r.outcome for r in results] == [
        SendOutcome.ACCEPTED,
        SendOutcome.ACCEPTED,
        SendOutcome.REFUSED_PERMANENT,
    ]


def test_partial_failure_refuses_one_recipient_and_keeps_the_others(profile):
    batch = three(profile)
    profile.refuse(batch[2].to)
    results = profile.backend().send(batch)
    check_shape(batch, results)
    assert [r.outcome for r in results] == [
        SendOutcome.ACCEPTED,
        SendOutcome.ACCEPTED,
        SendOutcome.REFUSED_PERMANENT,
    ]
    assert profile.accepted(batch) == {batch[0].to: 1, batch[1].to: 1}
    assert batch_stop_error(results) is None


def test_429_holds_the_batch_back_with_retry_after(profile):
    batch = three(profile)
    profile.fail_send("rate_limit", retry_after=7)
    results = profile.backend().send(batch)
    check_shape(batch, results)
    assert {(r.outcome, r.error_kind, r.retry_after) for r in results} == {
        (SendOutcome.NOT_ATTEMPTED, ErrorKind.RATE_LIMIT, 7)
    }
    assert not profile.accepted(batch)
    stop = batch_stop_error(results)
    assert (stop.kind, stop.retry_after, stop.permanent) == (ErrorKind.RATE_LIMIT, 7, False)


def test_429_after_an_accepted_call_keeps_what_was_accepted(profile):
    profile.skip_unless("after_accepted")
    batch = three(profile)
    profile.fail_send("rate_limit", after=1, retry_after=7)
    results = profile.backend().send(batch)
    check_shape(batch, results)
    assert [r.outcome for r in results] == [
        SendOutcome.ACCEPTED,
        SendOutcome.ACCEPTED,
        SendOutcome.NOT_ATTEMPTED,
    ]
    assert results[2].retry_after == 7
    assert profile.accepted(batch) == {batch[0].to: 1, batch[1].to: 1}


def test_5xx_refuses_its_call_transiently_and_stops_the_batch(profile):
    batch = three(profile)
    profile.fail_send("unavailable")
    results = profile.backend().send(batch)
    check_shape(batch, results)
    # The first message is in the failed call; any later call was not made.
    assert results[0].outcome == SendOutcome.REFUSED_TRANSIENT
    assert {r.outcome for r in results} <= {
        SendOutcome.REFUSED_TRANSIENT,
        SendOutcome.NOT_ATTEMPTED,
    }
    assert {r.error_kind for r in results} == {ErrorKind.UNAVAILABLE}
    assert not profile.accepted(batch)
    stop = batch_stop_error(results)
    assert (stop.kind, stop.permanent) == (ErrorKind.UNAVAILABLE, False)


def test_a_read_timeout_leaves_its_call_unknown_never_raises(profile):
    batch = three(profile)
    profile.fail_send("timeout")
    results = profile.backend().send(batch)
    check_shape(batch, results)
    assert results[0].outcome == SendOutcome.UNKNOWN
    assert {r.outcome for r in results} <= {SendOutcome.UNKNOWN, SendOutcome.NOT_ATTEMPTED}
    stop = batch_stop_error(results)
    assert (stop.kind, stop.maybe_processed) == (ErrorKind.TIMEOUT, True)


def test_a_connection_failure_is_transient_not_unknown(profile):
    profile.skip_unless("connect")
    batch = three(profile)
    profile.fail_send("connect")
    results = profile.backend().send(batch)
    check_shape(batch, results)
    assert results[0].outcome == SendOutcome.REFUSED_TRANSIENT
    assert SendOutcome.UNKNOWN not in {r.outcome for r in results}


def test_bad_credentials_hold_every_message_back_and_say_auth(profile):
    profile.skip_unless("credentials")
    batch = three(profile)
    profile.break_credentials()
    results = profile.backend().send(batch)
    check_shape(batch, results)
    assert {(r.outcome, r.error_kind) for r in results} == {
        (SendOutcome.NOT_ATTEMPTED, ErrorKind.AUTH)
    }
    assert not profile.accepted(batch)
    stop = batch_stop_error(results)
    assert (stop.kind, stop.permanent) == (ErrorKind.AUTH, True)


def test_credentials_the_provider_echoes_never_reach_a_result_or_a_log(profile, caplog):
    profile.skip_unless("echo")
    secrets = [v for v in profile.credentials.values() if len(v) >= 4]
    said = "Refused for " + " / ".join(secrets)
    profile.fake.fail(
        profile.send_paths, fakes.answer(400, {"message": said, "Message": said, "Code": -122})
    )
    batch = three(profile)
    results = profile.backend().send(batch)
    check_shape(batch, results)
    assert results[0].outcome == SendOutcome.REFUSED_PERMANENT
    shown = " ".join(r.error_message for r in results) + caplog.text
    assert "Refused for" in shown
    for secret in secrets:
        assert secret not in shown


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_garbage_webhook_is_a_webhook_error_never_a_crash(profile, rf, method):
    backend = profile.backend()
    if not any(capability in backend.capabilities for capability in WEBHOOK_KINDS.values()):
        pytest.skip(f"{profile.key} offers no webhook")
    if method == "GET":
        request = rf.get("/hooks/x/", {"nothing": "useful"})
    else:
        request = rf.post("/hooks/x/", b"\x00{not json", content_type="application/json")
    backend.verify_webhook(request)  # the URL token is all the default asks
    with pytest.raises(WebhookError):
        backend.parse_webhook(request)
