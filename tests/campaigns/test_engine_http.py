"""429, 5xx and a read timeout mid-campaign against an HTTP provider
(``httpx.MockTransport``): the campaign finishes with nothing lost or
doubled, and the provider never sees more calls per second than allowed."""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal

import httpx
import pytest

from campaigns.engine import campaign_dispatch
from campaigns.models import Campaign, Message
from campaigns.services import campaign_send_now
from providers.backends.base import Capability, DeliveryStatus, SendResult, SmsBackend
from tests.campaigns.engine_helpers import (
    assert_books_balance,
    assert_campaign_consistent,
    make_campaign,
    new_phones,
)

pytestmark = pytest.mark.django_db


class JsonApiBackend(SmsBackend):
    """A small JSON provider: POST /send with up to 20 messages, POST /lookup
    by our references. Two calls per second at most (like TransmitSMS)."""

    name = "jsonapi"
    capabilities = frozenset({Capability.LOOKUP_BY_REFERENCE})
    max_batch = 20
    max_requests_per_second = 2
    default_base_url = "https://api.example.test/v1"

    def send(self, batch):
        answer = self.request(
            "POST",
            "/send",
            json_body={
                "messages": [{"ref": s.reference, "to": s.to, "text": s.body} for s in batch]
            },
        )
        ids = {m["ref"]: m["id"] for m in answer["accepted"]}
        return [
            SendResult(
                reference=s.reference,
                accepted=True,
                status=DeliveryStatus.SENT,
                provider_ref=ids[s.reference],
            )
            for s in batch
        ]

    def lookup_by_reference(self, references, *, numbers=None):
        answer = self.request("POST", "/lookup", json_body={"refs": references})
        return [
            SendResult(
                reference=m["ref"], accepted=True, status=DeliveryStatus.SENT, provider_ref=m["id"]
            )
            for m in answer["found"]
        ]


class Provider:
    """The provider's side: accepts sends, remembers them, and misbehaves
    on the calls named in ``script`` (1-based call numbers)."""

    def __init__(self, clock, script):
        self.clock = clock
        self.script = script
        self.accepted: dict[str, dict] = {}
        self.deliveries: Counter[str] = Counter()
        self.calls: list[tuple[float, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append((self.clock.time(), request.url.path))
        trouble = self.script.get(len(self.calls))
        payload = json.loads(request.content)
        if request.url.path.endswith("/lookup"):
            found = [self.accepted[r] for r in payload["refs"] if r in self.accepted]
            return httpx.Response(200, json={"found": found})
        if trouble == "429":
            return httpx.Response(429, headers={"Retry-After": "3"}, json={"message": "slow down"})
        if trouble == "503":
            return httpx.Response(503, json={"message": "maintenance"})
        accepted = []
        for m in payload["messages"]:
            record = {"ref": m["ref"], "id": f"x{len(self.accepted) + 1}"}
            self.accepted[m["ref"]] = record
            self.deliveries[m["to"]] += 1
            accepted.append(record)
        if trouble == "timeout":
            raise httpx.ReadTimeout("the answer never came", request=request)
        return httpx.Response(200, json={"accepted": accepted})


def test_errors_mid_campaign_lose_nothing_double_nothing_and_keep_the_pace(
    make_account, superuser, enqueued, clock
):
    account = make_account(balance=Decimal("1000"), requests_per_second=5, messages_per_second=0)
    phones = new_phones(300)
    campaign = make_campaign(account=account, phones=phones)
    campaign_send_now(campaign=campaign, user=superuser)
    provider = Provider(clock, script={3: "429", 6: "503", 9: "timeout", 10: "503"})
    backend = JsonApiBackend(transport=httpx.MockTransport(provider))

    runs = []
    for _ in range(40):
        run = campaign_dispatch(campaign_id=campaign.pk, backend=backend)
        runs.append(run.state)
        if run.state == "done":
            break
        if run.next_at is not None:  # what the one-off Schedule would do
            clock.set(max(run.next_at, clock.now()))

    assert runs[-1] == "done", runs
    # Nothing doubled, nothing lost.
    assert provider.deliveries == Counter(dict.fromkeys(phones, 1))
    assert Counter(Message.objects.filter(campaign=campaign).values_list("status", flat=True)) == {
        "sent": 300
    }
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert campaign.credits_charged == Decimal("300.00") and campaign.credits_reserved == 0
    assert_books_balance(account)
    assert_campaign_consistent(campaign)
    # 15 batches of 20 went through; the 429, the two 503s and the timeout
    # cost one call each; the timeout batch was reconciled by one lookup
    # (after the stale delay), never sent again.
    paths = Counter(path for _, path in provider.calls)
    assert paths == {"/v1/send": 15 + 3, "/v1/lookup": 1}
    # The pace: never more than 2 calls in any second (the provider's cap,
    # tighter than the account's 5), and nothing during the 429's Retry-After.
    times = [t for t, _ in provider.calls]
    assert max(Counter(int(t) for t in times).values()) <= 2
    assert max(sum(1 for u in times if t <= u < t + 1 - 1e-9) for t in times) <= 2
    after_429 = times[3]
    assert after_429 - times[2] >= 3
