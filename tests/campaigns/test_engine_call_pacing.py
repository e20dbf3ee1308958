"""Every provider call is paced, not every batch: a personalised campaign
(one call per distinct text) never exceeds the account's requests per
second, no call goes out inside a 429's Retry-After window, and what a 429
left untried is queued again without costing an attempt.

The provider is faked at the HTTP level (``httpx.MockTransport``) with the
answers of The SMS Works' docs; time is the engine's fake clock."""

from __future__ import annotations

import itertools
from decimal import Decimal

import httpx
import pytest

from campaigns.engine import campaign_dispatch
from campaigns.models import Campaign, Message
from campaigns.services import campaign_send_now
from providers.backends.base import (
    DeliveryStatus,
    ErrorKind,
    ProviderError,
    SendOutcome,
    SendResult,
    SmsBackend,
)
from tests.campaigns.engine_helpers import (
    assert_books_balance,
    assert_campaign_consistent,
    make_campaign,
    new_phones,
)

pytestmark = pytest.mark.django_db

S = Message.Status
RATE = 5  # requests per second allowed on the account


class SmsWorksFake:
    """The SMS Works' API as its docs answer: a token, then one
    ``/message/send`` per text (``/batch/send`` for a text shared by
    several). ``too_many`` maps a send-call number (1-based) to the
    Retry-After of a 429 answered instead."""

    def __init__(self, clock, *, too_many: dict[int, str] | None = None) -> None:
        self.clock = clock
        self.too_many = too_many or {}
        self.calls: list[tuple[float, str]] = []
        self.sends: list[float] = []
        self.refused_at: list[tuple[float, float]] = []
        self.received: list[str] = []
        self.ids = itertools.count(1)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        now = self.clock.time()
        self.calls.append((now, request.url.path))
        if request.url.path.endswith("/auth/token"):
            return httpx.Response(200, json={"token": "JWT eyJhbGciOiJIUzI1NiJ9.e30.sig"})
        self.sends.append(now)
        retry_after = self.too_many.get(len(self.sends))
        if retry_after is not None:
            self.refused_at.append((now, float(retry_after)))
            return httpx.Response(
                429, json={"message": "Too many requests"}, headers={"Retry-After": retry_after}
            )
        payload = __import__("json").loads(request.content)
        if request.url.path.endswith("/message/send"):
            self.received.append(payload["destination"])
            return httpx.Response(
                201,
                json={"messageid": f"id{next(self.ids)}", "status": "SENT", "creditsUsed": 1},
            )
        self.received.extend(payload["destinations"])
        return httpx.Response(201, json={"batchid": f"b{next(self.ids)}", "status": "SENT"})


@pytest.fixture
def smsworks_account(make_account):
    return make_account(
        backend="thesmsworks",
        balance=Decimal("1000"),
        credentials={"customerid": "cust-1", "key": "key-1", "secret": "s3cret-1"},
        requests_per_second=RATE,
        messages_per_second=0,
    )


def _send_personalised(account, superuser, n: int) -> Campaign:
    # "Hi N0", "Hi N1", ...: every recipient has a text of their own.
    campaign = make_campaign(account=account, phones=new_phones(n, prefix="+447700"))
    campaign_send_now(campaign=campaign, user=superuser)
    return campaign


def _dispatch_until_done(campaign, backend, clock, runs: int = 60) -> None:
    for _ in range(runs):
        run = campaign_dispatch(campaign_id=campaign.pk, backend=backend)
        if run.state == "done":
            return
        clock.advance(1)
        if run.next_at is not None and run.next_at > clock.now():
            clock.set(run.next_at)
    raise AssertionError(f"not done after {runs} runs: {run}")


def _max_calls_in_any_second(times: list[float]) -> int:
    times = sorted(times)
    return max(sum(1 for t in times[i:] if t < start + 1.0 - 1e-9) for i, start in enumerate(times))


def test_a_personalised_campaign_never_exceeds_the_accounts_calls_per_second(
    smsworks_account, superuser, clock, enqueued
):
    provider = SmsWorksFake(clock)
    backend = smsworks_account.get_backend(transport=httpx.MockTransport(provider))
    campaign = _send_personalised(smsworks_account, superuser, 60)

    _dispatch_until_done(campaign, backend, clock)

    assert len(provider.sends) == 60  # one call per distinct text
    assert _max_calls_in_any_second([t for t, _ in provider.calls]) <= RATE
    assert sorted(str(n).lstrip("+") for n in provider.received) == sorted(
        p.lstrip("+")
        for p in Message.objects.filter(campaign=campaign).values_list("phone", flat=True)
    )
    assert set(Message.objects.filter(campaign=campaign).values_list("status", flat=True)) == {
        S.SENT
    }
    assert_campaign_consistent(campaign)
    assert_books_balance(smsworks_account)


def test_no_call_inside_a_retry_after_window(smsworks_account, superuser, clock, enqueued):
    """A 429 blocks the whole account: the next campaign on it (or another
    worker) waits out the Retry-After too."""
    provider = SmsWorksFake(clock, too_many={4: "3", 40: "2"})
    backend = smsworks_account.get_backend(transport=httpx.MockTransport(provider))
    first = _send_personalised(smsworks_account, superuser, 30)
    second = _send_personalised(smsworks_account, superuser, 30)

    campaign_dispatch(campaign_id=first.pk, backend=backend, max_batches=1)  # meets the 429
    assert len(provider.refused_at) == 1
    campaign_dispatch(campaign_id=second.pk, backend=backend, max_batches=1)
    _dispatch_until_done(first, backend, clock)
    _dispatch_until_done(second, backend, clock)

    assert len(provider.refused_at) == 2
    for refused, retry_after in provider.refused_at:
        inside = [t for t, _ in provider.calls if refused < t < refused + retry_after]
        assert inside == [], f"calls {inside} inside the window after the 429 at {refused}"
    # Nothing lost, nothing doubled.
    assert len(provider.received) == 60 and len(set(provider.received)) == 60
    for campaign in (first, second):
        assert_campaign_consistent(campaign)
    assert_books_balance(smsworks_account)


def test_a_batch_refused_with_429_costs_no_attempt(smsworks_account, superuser, clock, enqueued):
    provider = SmsWorksFake(clock, too_many={1: "2"})
    backend = smsworks_account.get_backend(transport=httpx.MockTransport(provider))
    campaign = _send_personalised(smsworks_account, superuser, 20)

    campaign_dispatch(campaign_id=campaign.pk, backend=backend, max_batches=1)

    queued = Message.objects.filter(campaign=campaign, status=S.QUEUED)
    assert queued.count() == 20
    assert {m.attempts for m in queued} == {0}  # never tried by the provider
    assert all(m.status_reason.startswith("Not attempted") for m in queued)
    _dispatch_until_done(campaign, backend, clock)
    assert len(provider.received) == 20
    assert_campaign_consistent(campaign)


class ContractBackend(SmsBackend):
    """A provider module written to the backend contract (one call per
    distinct text, through ``request`` so the pacer is asked first): a
    failed call stops the batch and the calls not made are NOT_ATTEMPTED
    with the error's kind and Retry-After."""

    name = "contract"
    max_batch = 500
    default_base_url = "https://api.example.test"

    def send(self, batch):
        results, stop = [], None
        for sms in batch:
            if stop is not None:
                results.append(self._not_attempted(sms, stop))
                continue
            try:
                answer = self.request(
                    "POST",
                    "/message/send",
                    json_body={"destination": sms.to, "content": sms.body},
                    operation="send",
                )
            except ProviderError as exc:
                stop = exc
                results.append(self._not_attempted(sms, exc))
                continue
            results.append(
                SendResult(
                    reference=sms.reference,
                    accepted=True,
                    status=DeliveryStatus.SENT,
                    provider_ref=answer["messageid"],
                    outcome=SendOutcome.ACCEPTED,
                )
            )
        return results

    @staticmethod
    def _not_attempted(sms, exc):
        return SendResult(
            reference=sms.reference,
            accepted=False,
            status=DeliveryStatus.QUEUED,
            error_message=f"Not sent: {exc}",
            permanent=False,
            outcome=SendOutcome.NOT_ATTEMPTED,
            error_kind=str(exc.kind),
            retry_after=exc.retry_after,
        )


def test_messages_a_429_left_untried_are_queued_again_without_an_attempt(
    make_account, superuser, clock, enqueued
):
    account = make_account(balance=Decimal("1000"), requests_per_second=RATE, messages_per_second=0)
    provider = SmsWorksFake(clock, too_many={3: "2"})
    backend = ContractBackend(transport=httpx.MockTransport(provider))
    campaign = _send_personalised(account, superuser, 20)

    first = campaign_dispatch(campaign_id=campaign.pk, backend=backend, max_batches=1)

    assert first.batches == 1
    queued = Message.objects.filter(campaign=campaign, status=S.QUEUED)
    assert queued.count() == 18  # the 429'd call and the ones never made
    assert {m.attempts for m in queued} == {0}
    assert all(m.status_reason.startswith("Not attempted") for m in queued)
    _dispatch_until_done(campaign, backend, clock)
    refused, retry_after = provider.refused_at[0]
    assert [t for t, _ in provider.calls if refused < t < refused + retry_after] == []
    assert len(provider.received) == 20 and len(set(provider.received)) == 20
    assert set(Message.objects.filter(campaign=campaign).values_list("attempts", flat=True)) == {0}
    assert_campaign_consistent(campaign)
    assert_books_balance(account)


def test_pacer_refuses_calls_while_the_account_is_blocked(make_account, clock):
    from campaigns import pacing
    from campaigns.engine.pacer import CallPacer

    account = make_account(requests_per_second=RATE)
    limits = pacing.limits_for(account, SmsBackend)
    pacer = CallPacer(campaign_id=0, account_id=account.pk, limits=limits, deadline=1e12)
    pacing.pace_block(account_id=account.pk, seconds=3)

    with pytest.raises(ProviderError) as refused:
        pacer("send")

    assert refused.value.kind == ErrorKind.RATE_LIMIT and not refused.value.maybe_processed
    assert 2.9 < refused.value.retry_after <= 3


def test_every_run_ends_inside_its_time_slice_however_many_calls_a_batch_needs(
    smsworks_account, superuser, clock, enqueued
):
    from campaigns.engine.run import CALL_GRACE, TIME_SLICE

    provider = SmsWorksFake(clock)
    backend = smsworks_account.get_backend(transport=httpx.MockTransport(provider))
    campaign = _send_personalised(smsworks_account, superuser, 500)  # 500 calls: 100 s at 5/s

    durations = []
    for _ in range(10):
        started = clock.time()
        run = campaign_dispatch(campaign_id=campaign.pk, backend=backend)
        durations.append(clock.time() - started)
        if run.state == "done":
            break
    assert run.state == "done"
    assert max(durations) <= TIME_SLICE + CALL_GRACE
    assert len(provider.received) == 500 and len(set(provider.received)) == 500
    assert _max_calls_in_any_second([t for t, _ in provider.calls]) <= RATE
    assert set(Message.objects.filter(campaign=campaign).values_list("attempts", flat=True)) == {0}
    assert_campaign_consistent(campaign)
