"""Shared pieces of the campaign engine tests: a virtual clock, a backend
that counts what it is asked to send, and builders for campaigns."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum

from campaigns.counters import COUNTER_FIELDS, counters_recount
from campaigns.models import Campaign, Message
from contacts.models import Contact, ContactList, ListMembership
from providers.backends.base import (
    Capability,
    DeliveryStatus,
    OutboundSms,
    ProviderError,
    SendResult,
    SmsBackend,
)
from providers.models import CreditTransaction, ProviderAccount

_numbers = itertools.count(1)


def new_phones(n: int, *, prefix: str = "+614") -> list[str]:
    """``n`` valid, never reused numbers (Australian mobiles by default)."""
    return [f"{prefix}{next(_numbers) + 10_000_000:08d}" for _ in range(n)]


class FakeClock:
    """Virtual time for dispatch and pacing: sleeping advances it at once.

    Starts a minute ahead of the real clock, so anything the services stamp
    with the real time (``scheduled_at`` of Send now) is already due.
    """

    def __init__(self, at: datetime | None = None) -> None:
        start = at or datetime.now(UTC) + timedelta(minutes=1)
        self.t = start.timestamp()
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.t

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, tz=UTC)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def set(self, at: datetime) -> None:
        self.t = at.timestamp()


@pytest.fixture
def clock(monkeypatch):
    from campaigns import pacing
    from campaigns.engine import clock as engine_clock

    fake = FakeClock()
    monkeypatch.setattr(engine_clock, "now", fake.now)
    monkeypatch.setattr(engine_clock, "monotonic", fake.time)
    monkeypatch.setattr(pacing, "_now", fake.time)
    monkeypatch.setattr(pacing, "_sleep", fake.sleep)
    return fake


class _CommitNow:
    """``django.db.transaction`` whose on_commit runs at once: tests run in a
    transaction that never commits."""

    def __getattr__(self, name):
        from django.db import transaction

        return getattr(transaction, name)

    @staticmethod
    def on_commit(func, using=None, robust=False):
        func()


@pytest.fixture
def enqueue_calls(monkeypatch):
    """Dispatch tasks handed to django-q2: list of (campaign_id, at)."""
    from campaigns.engine import enqueue as engine_enqueue

    calls: list[tuple[int, datetime | None]] = []
    monkeypatch.setattr(engine_enqueue, "_enqueue", lambda cid, at: calls.append((cid, at)))
    return calls


@pytest.fixture
def enqueued(monkeypatch, enqueue_calls):
    """Like ``enqueue_calls``, recorded when enqueued (the commit is assumed)."""
    from campaigns.engine import enqueue as engine_enqueue

    monkeypatch.setattr(engine_enqueue, "transaction", _CommitNow())
    return enqueue_calls


class RecordingBackend(SmsBackend):
    """A provider that accepts everything and remembers it: how many times
    each number was sent to, and every reference it accepted (for lookups).

    ``fail_next`` queues exceptions for the next ``send`` calls; ``crash``
    makes the next send accept the batch and then raise (the answer lost).
    """

    name = "recording"
    capabilities = frozenset({Capability.LOOKUP_BY_REFERENCE})
    max_batch = 50

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.sent: Counter[str] = Counter()
        self.accepted: dict[str, str] = {}
        self.calls: list[list[OutboundSms]] = []
        self.fail_next: list[Exception] = []
        self.lost_answers = 0
        self.refuse: set[str] = set()

    def send(self, batch: list[OutboundSms]) -> list[SendResult]:
        self.calls.append(list(batch))
        if self.fail_next:
            error = self.fail_next.pop(0)
            if getattr(error, "maybe_processed", False):
                self._accept(batch)
            raise error
        return self._accept(batch)

    def _accept(self, batch: list[OutboundSms]) -> list[SendResult]:
        results = []
        for sms in batch:
            if sms.to in self.refuse:
                results.append(
                    SendResult(
                        reference=sms.reference,
                        accepted=False,
                        status=DeliveryStatus.REJECTED,
                        error_code="21",
                        error_message="Number barred",
                        permanent=True,
                    )
                )
                continue
            self.sent[sms.to] += 1
            ref = f"p-{sms.reference}"
            self.accepted[sms.reference] = ref
            results.append(
                SendResult(
                    reference=sms.reference,
                    accepted=True,
                    status=DeliveryStatus.SENT,
                    provider_ref=ref,
                    raw_status="OK",
                )
            )
        return results

    def lookup_by_reference(self, references: list[str], *, numbers=None) -> list[SendResult]:
        return [
            SendResult(
                reference=r,
                accepted=True,
                status=DeliveryStatus.SENT,
                provider_ref=self.accepted[r],
            )
            for r in references
            if r in self.accepted
        ]


class BlindBackend(RecordingBackend):
    """Like RecordingBackend, but the provider cannot be asked by reference."""

    name = "blind"
    capabilities = frozenset()


def timeout_error() -> ProviderError:
    return ProviderError(
        "recording: POST /send timed out waiting for the answer (ReadTimeout).",
        kind="timeout",
        maybe_processed=True,
    )


def make_campaign(
    *,
    account: ProviderAccount,
    phones: list[str],
    body: str = "Hi {{ first_name }}, sale on now",
    user=None,
    **fields,
) -> Campaign:
    """A draft campaign to the contacts ``phones`` (one list)."""
    contact_list = ContactList.objects.create(name=f"List {next(_numbers)}")
    contacts = Contact.objects.bulk_create(
        [Contact(phone=p, first_name=f"N{i}") for i, p in enumerate(phones)]
    )
    if not contacts[0].pk:  # SQLite before 3.35 does not return ids
        contacts = list(Contact.objects.filter(phone__in=phones))
    ListMembership.objects.bulk_create(
        [ListMembership(contact=c, contact_list=contact_list) for c in contacts]
    )
    campaign = Campaign.objects.create(
        name=f"Campaign {next(_numbers)}",
        account=account,
        body=body,
        sender="Shop",
        created_by=user,
        **fields,
    )
    campaign.lists.add(contact_list)
    return campaign


def assert_books_balance(account: ProviderAccount) -> None:
    """The ledger explains the account exactly."""
    account.refresh_from_db()
    sums = CreditTransaction.objects.filter(account=account).aggregate(
        amount=Sum("amount"), reserved=Sum("reserved_change")
    )
    assert account.balance == (sums["amount"] or Decimal("0"))
    assert account.reserved == (sums["reserved"] or Decimal("0"))
    assert 0 <= account.reserved <= account.balance


def assert_campaign_consistent(campaign: Campaign) -> None:
    """Counters match the messages; the reservation matches what is open."""
    campaign.refresh_from_db()
    stored = {f: getattr(campaign, f) for f in COUNTER_FIELDS}
    stored["recipients_total"] = campaign.recipients_total
    assert stored == counters_recount(campaign_id=campaign.pk)
    if campaign.planned:
        open_credits = Message.objects.filter(
            campaign=campaign, status__in=["queued", "submitting"]
        ).aggregate(t=Sum("credits"))["t"] or Decimal("0")
        assert campaign.credits_reserved == open_credits
    ledger = CreditTransaction.objects.filter(
        account_id=campaign.account_id, reference=f"campaign:{campaign.pk}"
    ).aggregate(r=Sum("reserved_change"), a=Sum("amount"))
    assert campaign.credits_reserved == (ledger["r"] or Decimal("0"))
    assert campaign.credits_charged == -(ledger["a"] or Decimal("0"))


@pytest.fixture
def account(make_account):
    """An account with credit and no rate limits (the engine tests' default)."""
    return make_account(balance=Decimal("1000"), requests_per_second=0, messages_per_second=0)


@pytest.fixture
def sending(account, superuser, enqueued, clock):
    """``sending(n, **fields)``: a campaign of ``n`` new recipients (120 by
    default) on ``account``, sent (scheduled now, not planned yet)."""
    from campaigns.services import campaign_send_now

    def make(n: int = 120, **kwargs) -> Campaign:
        campaign = make_campaign(account=account, phones=new_phones(n), **kwargs)
        campaign_send_now(campaign=campaign, user=superuser)
        return campaign

    return make
