"""The send flow the base class owns: grouping, chunking, partial failure and
one explicit outcome per message, whatever the hooks or the provider do."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from providers.backends.base import (
    ErrorKind,
    OutboundSms,
    ProviderError,
    SendOutcome,
    SendResult,
    SmsBackend,
    accepted_result,
    batch_stop_error,
)


class JsonRpcish(SmsBackend):
    """A small provider: one text to many numbers per call, answers
    ``{"ids": {number: id}}`` or an ``error`` object inside HTTP 200."""

    name = "jsonrpcish"
    default_base_url = "https://api.example.test"
    max_batch = 2
    send_path = "/send"

    def build_payload(self, batch: list[OutboundSms]) -> dict[str, Any]:
        return {"text": batch[0].body, "to": [sms.to for sms in batch]}

    def error_in_answer(self, answer: Any, *, operation: str) -> ProviderError | None:
        error = answer.get("error") if isinstance(answer, Mapping) else None
        if not error:
            return None
        kind = {"AUTH": ErrorKind.AUTH, "TEXT": ErrorKind.VALIDATION}.get(
            error["code"], ErrorKind.UNAVAILABLE
        )
        return ProviderError(error["message"], code=error["code"], kind=kind, permanent=True)

    def parse_results(self, answer: Any, batch: list[OutboundSms]) -> list[SendResult]:
        ids = answer["ids"]
        return [accepted_result(sms, provider_ref=ids[sms.to]) for sms in batch if sms.to in ids]


def sms(ref: str, to: str, body: str = "hi") -> OutboundSms:
    return OutboundSms(reference=ref, to=to, body=body)


class Script:
    def __init__(self, *answers):
        self.answers = list(answers)
        self.bodies: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        if answer == "echo":
            to = self.bodies[-1]["to"]
            return httpx.Response(200, json={"ids": {n: f"id-{n}" for n in to}})
        return httpx.Response(200, json=answer)


def backend(script: Script, **kw) -> JsonRpcish:
    return JsonRpcish(transport=httpx.MockTransport(script), **kw)


def outcomes(results: list[SendResult]) -> list[tuple[str, SendOutcome, str]]:
    return [(r.reference, r.outcome, r.error_kind) for r in results]


def test_groups_by_text_and_cuts_chunks_to_max_batch_keeping_input_order():
    script = Script("echo", "echo", "echo")
    results = backend(script).send(
        [
            sms("a", "+61400000001"),
            sms("b", "+61400000002", body="other"),
            sms("c", "+61400000003"),
            sms("d", "+61400000004"),
        ]
    )
    assert [b["to"] for b in script.bodies] == [
        ["+61400000001", "+61400000003"],
        ["+61400000004"],
        ["+61400000002"],
    ]
    assert [(r.reference, r.provider_ref) for r in results] == [
        ("a", "id-+61400000001"),
        ("b", "id-+61400000002"),
        ("c", "id-+61400000003"),
        ("d", "id-+61400000004"),
    ]
    assert {r.outcome for r in results} == {SendOutcome.ACCEPTED}


def test_an_error_inside_a_200_answer_goes_through_error_in_answer():
    script = Script({"error": {"code": "TEXT", "message": "bad text"}}, "echo")
    results = backend(script).send([sms("a", "+61400000001", "x"), sms("b", "+61400000002")])
    # A refused text does not stop the other group.
    assert outcomes(results) == [
        ("a", SendOutcome.REFUSED_PERMANENT, "validation"),
        ("b", SendOutcome.ACCEPTED, ""),
    ]
    assert results[0].error_code == "TEXT"


def test_an_account_error_stops_the_batch_and_holds_the_rest_back():
    script = Script({"error": {"code": "AUTH", "message": "bad key"}})
    results = backend(script).send([sms("a", "+61400000001", "x"), sms("b", "+61400000002")])
    assert len(script.bodies) == 1
    assert outcomes(results) == [
        ("a", SendOutcome.NOT_ATTEMPTED, "auth"),
        ("b", SendOutcome.NOT_ATTEMPTED, "auth"),
    ]
    stop = batch_stop_error(results)
    assert (stop.kind, stop.permanent) == ("auth", True)


def test_a_message_the_answer_does_not_mention_is_unknown():
    script = Script({"ids": {"+61400000001": "id-1"}})
    results = backend(script).send([sms("a", "+61400000001"), sms("b", "+61400000002")])
    assert outcomes(results) == [
        ("a", SendOutcome.ACCEPTED, ""),
        ("b", SendOutcome.UNKNOWN, ""),
    ]


def test_an_unreadable_answer_leaves_the_chunk_unknown_and_stops():
    script = Script({"unexpected": True}, "echo")
    results = backend(script).send([sms("a", "+61400000001"), sms("b", "+61400000002", "x")])
    assert outcomes(results) == [
        ("a", SendOutcome.UNKNOWN, "protocol"),
        ("b", SendOutcome.NOT_ATTEMPTED, "protocol"),
    ]
    assert len(script.bodies) == 1


def test_an_invalid_number_is_refused_alone_without_a_call():
    script = Script("echo")
    results = backend(script).send([sms("a", "not a number"), sms("b", "+61400000002")])
    assert outcomes(results) == [
        ("a", SendOutcome.REFUSED_PERMANENT, "validation"),
        ("b", SendOutcome.ACCEPTED, ""),
    ]
    assert script.bodies == [{"text": "hi", "to": ["+61400000002"]}]


def test_calls_beyond_max_calls_per_send_are_deferred_not_attempted():
    script = Script("echo", "echo")
    b = backend(script)
    b.max_calls_per_send = 2
    results = b.send([sms(str(i), f"+6140000000{i}", body=str(i)) for i in range(3)])
    assert [r.outcome for r in results] == [
        SendOutcome.ACCEPTED,
        SendOutcome.ACCEPTED,
        SendOutcome.NOT_ATTEMPTED,
    ]
    assert results[2].error_kind == ErrorKind.DEFERRED
    assert results[2].retry_after is None


def test_the_pacer_deferring_a_call_holds_its_messages_back():
    def pacer(operation: str) -> None:
        raise ProviderError("not now", kind=ErrorKind.DEFERRED, retry_after=3)

    script = Script()
    results = backend(script, pacer=pacer).send([sms("a", "+61400000001")])
    assert (results[0].outcome, results[0].retry_after) == (SendOutcome.NOT_ATTEMPTED, 3)
    assert script.bodies == []


class Crashing(JsonRpcish):
    crash_in = "build_payload"

    def build_payload(self, batch):
        if self.crash_in == "build_payload":
            raise KeyError("bug")
        return super().build_payload(batch)

    def parse_results(self, answer, batch):
        raise KeyError("bug")


@pytest.mark.parametrize(
    ("crash_in", "calls", "outcome"),
    [
        ("build_payload", 0, SendOutcome.REFUSED_TRANSIENT),
        ("parse_results", 1, SendOutcome.UNKNOWN),
    ],
)
def test_a_bug_in_a_hook_never_raises_nor_loses_what_the_provider_took(crash_in, calls, outcome):
    script = Script("echo")
    b = Crashing(transport=httpx.MockTransport(script))
    b.crash_in = crash_in
    [result] = b.send([sms("a", "+61400000001")])
    assert result.outcome == outcome
    assert len(script.bodies) == calls


def test_provider_trouble_is_reported_to_the_engine_once():
    script = Script("echo", httpx.Response(503, headers={"Retry-After": "9"}))
    results = backend(script).send([sms("a", "+61400000001"), sms("b", "+61400000002", "x")])
    assert outcomes(results) == [
        ("a", SendOutcome.ACCEPTED, ""),
        ("b", SendOutcome.REFUSED_TRANSIENT, "unavailable"),
    ]
    stop = batch_stop_error(results)
    assert (stop.kind, stop.permanent, stop.retry_after) == ("unavailable", False, 9)
