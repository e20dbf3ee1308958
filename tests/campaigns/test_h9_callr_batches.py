"""CALLR takes one recipient per ``sms.send``: a batch still carries many
messages, one paced call each, in one engine step (brief h9, item 5)."""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal

import httpx
import pytest

from campaigns import pacing
from campaigns.engine import campaign_dispatch
from campaigns.models import Message
from campaigns.services import campaign_send_now
from providers.backends.base import SmsBackend
from providers.backends.callr import CallrBackend
from tests.campaigns.engine_helpers import (
    assert_books_balance,
    assert_campaign_consistent,
    make_campaign,
    new_phones,
)
from tests.providers.contract.fakes import FakeProvider
from tests.providers.contract.profile_callr import CREDENTIALS, endpoint

pytestmark = pytest.mark.django_db

S = Message.Status
RATE = 5


def callr(clock) -> FakeProvider:
    fake = FakeProvider(base_path="/json-rpc/v1.1")
    fake.route("POST", "/", endpoint)
    fake.times = []  # virtual time of each call

    def timed(request, fake):
        fake.times.append(clock.time())
        return endpoint(request, fake)

    fake.route("POST", "/", timed)
    return fake


@pytest.fixture
def account(make_account):
    return make_account(
        balance=Decimal("1000"),
        backend="callr",
        credentials=CREDENTIALS,
        requests_per_second=RATE,
        messages_per_second=0,
    )


def sends(fake: FakeProvider) -> list:
    return [c for c in fake.calls if json.loads(c.request.content)["method"] == "sms.send"]


def test_a_one_recipient_backend_carries_a_batch_of_several_calls():
    limits = pacing.limits_for(
        type("A", (), {"requests_per_second": 0, "messages_per_second": 0})(), CallrBackend
    )
    assert limits.batch_size == CallrBackend.max_calls_per_send * CallrBackend.max_batch
    # Backends whose one call carries hundreds keep their batch.
    assert limits_of(500).batch_size == pacing.MAX_BATCH


def limits_of(max_batch: int) -> pacing.Limits:
    cls = type("B", (SmsBackend,), {"max_batch": max_batch})
    return pacing.limits_for(
        type("A", (), {"requests_per_second": 0, "messages_per_second": 0})(), cls
    )


def test_one_step_sends_several_messages_one_paced_call_each(account, superuser, clock, enqueued):
    fake = callr(clock)
    campaign = make_campaign(account=account, phones=new_phones(60, prefix="+336"))
    campaign_send_now(campaign=campaign, user=superuser)
    backend = CallrBackend(credentials=CREDENTIALS, transport=fake.transport, account_key="x")

    run = campaign_dispatch(campaign_id=campaign.pk, backend=backend, max_batches=1)

    assert run.batches == 1
    assert run.sent == CallrBackend.max_calls_per_send  # 25 messages in one step
    assert len(sends(fake)) == run.sent  # one call each
    times = sorted(fake.times)
    # Every call asked the pacer: never more than RATE in any second.
    assert max(sum(1 for t in times[i:] if t < s + 1 - 1e-9) for i, s in enumerate(times)) <= RATE


def test_a_429_in_a_batch_blocks_the_account_and_leaves_the_rest_unattempted(
    account, superuser, clock, enqueued
):
    fake = callr(clock)
    fake.fail(
        "/",
        lambda request: httpx.Response(
            429, json={"message": "Too many requests"}, headers={"Retry-After": "30"}
        ),
        after=3,
    )
    campaign = make_campaign(account=account, phones=new_phones(10, prefix="+336"))
    campaign_send_now(campaign=campaign, user=superuser)
    backend = CallrBackend(credentials=CREDENTIALS, transport=fake.transport, account_key="x")

    run = campaign_dispatch(campaign_id=campaign.pk, backend=backend, max_batches=1)

    assert run.sent == 3
    assert len(fake.calls) == 4  # no call after the 429
    assert pacing.blocked_for(account.pk) > 20
    rows = Message.objects.filter(campaign=campaign)
    assert Counter(rows.values_list("status", flat=True)) == {S.SENT: 3, S.QUEUED: 7}
    # The one refused by the 429 and the six never tried cost no attempt.
    assert set(rows.filter(status=S.QUEUED).values_list("attempts", flat=True)) == {0}

    clock.advance(31)
    for _ in range(10):
        run = campaign_dispatch(campaign_id=campaign.pk, backend=backend)
        if run.state == "done":
            break
        if run.next_at is not None and run.next_at > clock.now():
            clock.set(run.next_at)
    assert run.state == "done"
    assert fake.accepted_counts() == Counter(rows.values_list("phone", flat=True))
    assert set(fake.accepted_counts().values()) == {1}
    assert_campaign_consistent(campaign)
    assert_books_balance(account)
