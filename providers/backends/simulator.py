"""The simulator: a provider that lives inside smsoffice.

No network and no credentials. It accepts sends, assigns ids and later
reports outcomes and a few replies (some of them STOP), so a whole campaign
can run on a fresh machine, and it has every capability so every admin
button can be tried.

Everything is deterministic under a seed: the outcome of a message, its
delivery delay and whether (and what) its recipient replies depend only on
``seed`` and our reference. What changes over time (when a message went out,
the simulated balance, pending replies, opt-outs) is
either encoded in the provider ref or kept in the database
(:mod:`providers.simulator_store`), which the web process and every worker
share, and which never evicts.

Knobs come from the account's credentials JSON (constructor options win), all
optional::

    {"seed": 1, "delivery_delay": 5, "reply_rate": 0.05, "stop_share": 0.2,
     "mix": {"delivered": 0.9, "undelivered": 0.05, "expired": 0.03,
             "rejected": 0.02},
     "latency": 0, "initial_balance": 0,
     "credits_per_segment": 1, "country_rates": {"GB": "2"},
     "fail_numbers": ["+61400000001"], "error_rate": 0, "timeout_rate": 0,
     "unavailable": false, "rate_limited": 0}

- ``mix``: share of final outcomes among delivered, undelivered, expired,
  rejected, failed and unknown (no receipt ever); normalised.
- ``delivery_delay``: seconds from sending to the receipt (each message
  between half and one and a half times this).
- ``fail_numbers``: refused at send time (rejected, permanent).
- ``error_rate``: share of send calls that fail transiently (HTTP 503 alike);
  ``unavailable``: every call fails so; ``timeout_rate``: share of send calls
  that are accepted but answer with a timeout (``maybe_processed``), to
  exercise reconciliation through ``lookup_by_reference``.
- ``rate_limited``: seconds; when set, every call is refused like an HTTP
  429 with that ``Retry-After`` (to see how campaigns wait out a throttle).
- ``latency``: seconds each call takes (at most 10).
- ``allow_unicode``, ``allow_international`` (true) and ``home_country``
  ("AU"): the account settings it reports (the quote refuses what they
  forbid once they are read).
- ``initial_balance`` (old name ``balance``): the simulated provider's
  balance before our first top-up, 0 by default: like a new account at a
  real provider, it holds what we bought through ``top_up`` (which
  ``credits_top_up`` calls), so ``credits_reconcile`` shows no drift.
- ``credits_per_segment`` and ``country_rates`` (ISO 3166 alpha-2 codes):
  the simulated provider's price, charged per segment at send and given
  back for undelivered, expired and rejected messages (``refunds_failed``,
  as the ledger does). Give them the values of the account's fields of the
  same names and the two balances stay equal; the default is 1 credit per
  segment everywhere.

Tests pass ``clock=`` (a function returning epoch seconds) and ``sleep=``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import Any

import phonenumbers

from providers.backends.base import (
    AccountSettings,
    Capability,
    DeliveryStatus,
    ErrorKind,
    InboundSms,
    OutboundSms,
    ProviderError,
    ProviderRef,
    RemoteOptOut,
    SenderOption,
    SendResult,
    SmsBackend,
    StatusUpdate,
    WebhookError,
    accepted_result,
    map_status,
    refused_result,
    to_e164,
    to_msisdn,
)

#: Outcomes a message can end in, in the order the mix is laid out.
OUTCOMES = ("delivered", "undelivered", "expired", "rejected", "failed", "unknown")
DEFAULT_MIX = {
    "delivered": 0.9,
    "undelivered": 0.04,
    "expired": 0.03,
    "rejected": 0.02,
    "failed": 0.01,
}
REPLY_TEXTS = (
    "Thanks!",
    "Yes please",
    "Who is this?",
    "See you then",
    "Can we reschedule?",
    "ok",
)
STATE_TTL = 60 * 60 * 24 * 30  # the simulated provider forgets after 30 days
#: The simulator's own raw status words, mapped like a real provider's.
RAW_STATUS = {
    "QUEUED": DeliveryStatus.QUEUED,
    "SENT": DeliveryStatus.SENT,
    "DELIVERED": DeliveryStatus.DELIVERED,
    "UNDELIVERED": DeliveryStatus.UNDELIVERED,
    "EXPIRED": DeliveryStatus.EXPIRED,
    "REJECTED": DeliveryStatus.REJECTED,
    "FAILED": DeliveryStatus.FAILED,
}
REFUNDED = {DeliveryStatus.UNDELIVERED, DeliveryStatus.EXPIRED, DeliveryStatus.REJECTED}
NOT_DELIVERED = REFUNDED | {DeliveryStatus.FAILED, DeliveryStatus.UNKNOWN}


@dataclass(frozen=True, slots=True)
class SimConfig:
    seed: str
    delivery_delay: float
    mix: tuple[tuple[str, float], ...]  # cumulative upper bounds
    reply_rate: float
    stop_share: float
    latency: float
    balance: Decimal
    credits_per_segment: Decimal
    country_rates: Mapping[str, Decimal]
    fail_numbers: frozenset[str]
    error_rate: float
    timeout_rate: float
    unavailable: bool
    rate_limited: float = 0


def _config_error(message: str) -> ProviderError:
    return ProviderError(
        f"Simulator settings: {message} (set them in the account's credentials JSON).",
        permanent=True,
        kind="validation",
    )


def _number(data: Mapping, key: str, default: float, *, low=0.0, high=math.inf) -> float:
    value = data.get(key, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _config_error(f"{key!r} must be a number, got {value!r}") from None
    if not low <= number <= high:
        raise _config_error(f"{key!r} must be between {low} and {high}, got {value!r}")
    return number


def _credits(value: Any, what: str, *, low: Decimal = Decimal(0)) -> Decimal:
    if isinstance(value, bool):
        value = None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite():
        raise _config_error(f"{what} must be a number, got {value!r}")
    if amount < low:
        raise _config_error(f"{what} must be {low} or more, got {value!r}")
    return amount


def _rate(value: Any, what: str) -> Decimal:
    rate = _credits(value, what)
    if rate <= 0:
        raise _config_error(f"{what} must be more than zero, got {value!r}")
    if rate != rate.quantize(Decimal("0.01")):
        raise _config_error(f"{what} can have at most 2 decimal places, got {value!r}")
    return rate


_REGION = re.compile(r"^[A-Z]{2}$")


def _country_rates(data: Mapping) -> dict[str, Decimal]:
    rates = data.get("country_rates", {}) or {}
    if not isinstance(rates, Mapping):
        raise _config_error(
            "'country_rates' must be an object such as " + '{"GB": 2}' + f", got {rates!r}"
        )
    parsed: dict[str, Decimal] = {}
    for key, value in rates.items():
        region = str(key).strip().upper()
        if not _REGION.match(region):
            raise _config_error(
                f"'country_rates' needs two-letter country codes (ISO 3166), got {key!r}"
            )
        parsed[region] = _rate(value, f"'country_rates' {region}")
    return parsed


def _flag(data: Mapping, key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise _config_error(f"{key!r} must be true or false, got {value!r}")
    return value


def parse_config(data: Mapping[str, Any]) -> SimConfig:
    """Validate the knobs; raises a permanent ProviderError naming the bad one."""
    mix = data.get("mix", DEFAULT_MIX)
    if not isinstance(mix, Mapping) or not mix:
        raise _config_error(f"'mix' must be an object such as {json.dumps(DEFAULT_MIX)}")
    unknown = set(mix) - set(OUTCOMES)
    if unknown:
        raise _config_error(
            f"'mix' has unknown outcome(s) {sorted(unknown)}; use {', '.join(OUTCOMES)}"
        )
    shares = {k: _number(mix, k, 0) for k in OUTCOMES if k in mix}
    total = sum(shares.values())
    if total <= 0:
        raise _config_error("'mix' shares must add up to more than zero")
    cumulative, running = [], 0.0
    for outcome in OUTCOMES:
        if shares.get(outcome):
            running += shares[outcome] / total
            cumulative.append((outcome, running))
    fail_numbers = data.get("fail_numbers", [])
    if not isinstance(fail_numbers, list | tuple):
        raise _config_error(f"'fail_numbers' must be a list of numbers, got {fail_numbers!r}")
    key = "initial_balance" if "initial_balance" in data else "balance"
    balance = _credits(data.get(key, 0), repr(key))
    return SimConfig(
        seed=str(data.get("seed", 0)),
        delivery_delay=_number(data, "delivery_delay", 5),
        mix=tuple(cumulative),
        reply_rate=_number(data, "reply_rate", 0.05, high=1),
        stop_share=_number(data, "stop_share", 0.2, high=1),
        latency=_number(data, "latency", 0, high=10),
        balance=balance,
        credits_per_segment=_rate(data.get("credits_per_segment", 1), "'credits_per_segment'"),
        country_rates=_country_rates(data),
        fail_numbers=frozenset(to_e164(str(n)) for n in fail_numbers),
        error_rate=_number(data, "error_rate", 0, high=1),
        timeout_rate=_number(data, "timeout_rate", 0, high=1),
        unavailable=_flag(data, "unavailable", False),
        rate_limited=_number(data, "rate_limited", 0, high=3600),
    )


def _cents(amount: Decimal) -> int:
    return int((amount * 100).to_integral_value())


def _segments(body: str) -> int:
    try:
        from providers.sms import measure
    except ImportError:  # the measure module is optional for the simulator
        pass
    else:
        return max(1, measure(body).segments)
    if all(ord(c) < 128 for c in body):
        return 1 if len(body) <= 160 else math.ceil(len(body) / 153)
    return 1 if len(body) <= 70 else math.ceil(len(body) / 67)


class SimulatorBackend(SmsBackend):
    """A provider simulated in the database; see the module docstring for knobs."""

    name = "simulator"
    capabilities = frozenset(Capability)  # every one there is
    max_batch = 500
    refunds_failed = True

    def __init__(
        self,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._clock = clock or time.time
        self._sleep = sleep or time.sleep

    def secrets(self) -> list[str]:
        return []  # the knobs are not secret, and masking numbers would hide them

    @cached_property
    def config(self) -> SimConfig:
        return parse_config({**self.credentials, **self.options})

    # ------------------------------------------------------------- helpers
    @property
    def cache(self):
        # The state lives in the database (cache-shaped API): a cache would
        # evict the balance and the references kept for crash reconciliation.
        from providers.simulator_store import SimulatorStore

        return SimulatorStore()

    def _key(self, *parts: Any) -> str:
        return ":".join(["smsoffice:sim", self.account_key or "default", *map(str, parts)])

    def _rand(self, digest: str, salt: str) -> float:
        """A number in [0, 1) fixed by the seed, the message and the purpose."""
        h = hashlib.sha256(f"{self.config.seed}:{salt}:{digest}".encode()).hexdigest()
        return int(h[:13], 16) / 16**13

    @staticmethod
    def _digest(reference: str) -> str:
        return hashlib.sha256(reference.encode()).hexdigest()[:12]

    def _now(self) -> float:
        return float(self._clock())

    def _call(self, operation: str) -> None:
        """The pacer, latency and the outage knobs, applied to every call
        (the simulator makes no HTTP request, so it calls the pacer itself)."""
        if self.pacer is not None:
            self.pacer(operation)
        cfg = self.config
        if cfg.latency:
            self._sleep(cfg.latency)
        if cfg.unavailable:
            raise ProviderError(
                f"simulator: {operation} failed: the simulated provider is unavailable "
                "(knob 'unavailable').",
                code="SIM-503",
                kind="unavailable",
                retry_after=30.0,
                status_code=503,
            )
        if cfg.rate_limited:
            raise ProviderError(
                f"simulator: {operation} refused: rate limited (knob 'rate_limited').",
                code="SIM-429",
                kind="rate_limit",
                retry_after=cfg.rate_limited,
                status_code=429,
            )

    def _next_call_number(self) -> int:
        key = self._key("calls")
        number = int(self.cache.get(key) or 0) + 1
        self.cache.set(key, number, STATE_TTL)
        return number

    # ----------------------------------------------------------- settings
    def account_settings(self) -> AccountSettings:
        """Knobs ``allow_unicode`` and ``allow_international`` (true by
        default) and ``home_country`` (``"AU"`` by default), to try the
        quote's checks."""
        self._call("settings")
        data = {**self.credentials, **self.options}
        home = str(data.get("home_country") or "AU").strip().upper()
        if not _REGION.match(home):
            raise _config_error(f"'home_country' must be a two-letter country code, got {home!r}")
        return AccountSettings(
            allows_unicode=_flag(data, "allow_unicode", True),
            allows_international=_flag(data, "allow_international", True),
            home_country=home,
            time_zone="UTC",
        )

    # ------------------------------------------------------------ balance
    def _balance(self) -> Decimal:
        value = self.cache.get(self._key("balance"))
        return self.config.balance if value is None else Decimal(value)

    def _set_balance(self, value: Decimal) -> None:
        self.cache.set(self._key("balance"), str(value), STATE_TTL)

    def senders(self) -> list[SenderOption]:
        """None listed: the simulator accepts any sender its format rules allow."""
        return []

    def balance(self) -> Decimal:
        self._call("balance")
        return self._balance()

    def top_up(self, credits: Decimal | int) -> Decimal:
        self._call("top-up")
        try:
            amount = Decimal(str(credits))
        except InvalidOperation:
            amount = Decimal(0)
        if amount <= 0:
            raise ProviderError(
                f"simulator: top-up needs an amount above zero, got {credits!r}.",
                permanent=True,
                kind="validation",
            )
        new = self._balance() + amount
        self._set_balance(new)
        return new

    # --------------------------------------------------------------- send
    # The base flow calls these; one simulated call carries any mix of texts.
    def group_key(self, sms: OutboundSms) -> str:
        return ""

    def build_payload(self, batch: list[OutboundSms]) -> list[OutboundSms]:
        return list(batch)

    def parse_results(self, answer: Any, batch: list[OutboundSms]) -> list[SendResult]:
        return list(answer)

    def post(self, payload: Any, batch: list[OutboundSms]) -> list[SendResult]:
        """The simulated provider's send call: accept ``batch`` (refusing
        ``fail_numbers`` and, as an opt-out wash, numbers on the simulated
        opt-out list), charge one credit per segment from the simulated
        balance, and queue the replies some recipients will send. Raises
        like a provider for the outage knobs and for a balance too low for
        the whole call (permanent, kind "credit")."""
        cfg = self.config
        self._call("send")
        call_number = self._next_call_number()
        if cfg.error_rate and self._rand(str(call_number), "error") < cfg.error_rate:
            raise ProviderError(
                "simulator: send failed: simulated server error (knob 'error_rate').",
                code="SIM-503",
                kind="unavailable",
                retry_after=5.0,
                status_code=503,
            )
        now = self._now()
        batch_ref = f"sim-{uuid.uuid4().hex[:10]}"
        optouts = set(self.cache.get(self._key("optouts")) or ())
        results: list[SendResult] = []
        remembered: dict[str, dict] = {}
        replies: list[dict] = []
        cost = Decimal(0)
        # Bodies repeat (one text, or a few names): measured once per call.
        segments_of: dict[str, int] = {}
        may_refuse = bool(cfg.fail_numbers or optouts)
        for sms in payload:
            refusal = self._refusal(sms, optouts) if may_refuse else None
            if refusal is not None:
                results.append(refusal)
                continue
            segments = segments_of.get(sms.body)
            if segments is None:
                segments = segments_of[sms.body] = _segments(sms.body)
            charged = segments * self._rate(sms.to)
            scheduled = sms.send_at is not None and sms.send_at.timestamp() > now
            send_time = sms.send_at.timestamp() if scheduled else now
            digest = self._digest(sms.reference)
            # What was charged travels in the id, so the refund gives back
            # exactly that: "2" (2 segments at 1 credit) or "2x300" (300 cents).
            price = str(segments) if charged == segments else f"{segments}x{_cents(charged)}"
            provider_ref = f"{batch_ref}-{int(send_time * 1000):x}-{price}-{digest}"
            cost += charged
            results.append(
                accepted_result(
                    sms,
                    status=DeliveryStatus.QUEUED if scheduled else DeliveryStatus.SENT,
                    provider_ref=provider_ref,
                    provider_batch_ref=batch_ref,
                    raw_status="QUEUED" if scheduled else "SENT",
                    credits=charged,
                )
            )
            remembered[self._key("ref", sms.reference)] = {
                "provider_ref": provider_ref,
                "to": sms.to,
            }
            if cfg.reply_rate and self._rand(digest, "reply") < cfg.reply_rate:
                replies.append(
                    {
                        "provider_ref": provider_ref,
                        "from": sms.to,
                        "to": sms.sender,
                        "reference": sms.reference,
                    }
                )
        balance = self._balance()
        if cost > balance:
            raise ProviderError(
                f"simulator: send refused: the simulated account has {balance} credits and "
                f"this batch needs {cost}. Top it up (or raise 'initial_balance').",
                code="SIM-CREDIT",
                permanent=True,
                kind="credit",
                status_code=402,
            )
        self._set_balance(balance - cost)
        self.cache.set_many(remembered, STATE_TTL)
        for reply in replies:
            self._queue_reply(reply)
        if cfg.timeout_rate and self._rand(str(call_number), "timeout") < cfg.timeout_rate:
            # Accepted and charged, but the answer is "lost".
            raise ProviderError(
                "simulator: send timed out waiting for the answer (knob 'timeout_rate'); "
                "the provider may have acted on it.",
                kind="timeout",
                maybe_processed=True,
            )
        return results

    def _refusal(self, sms: OutboundSms, optouts: set[str]) -> SendResult | None:
        """Why the simulated provider refuses ``sms``, or None when it accepts it."""
        number = "+" + to_msisdn(sms.to)  # checked by check_message
        if number in self.config.fail_numbers:
            return refused_result(
                sms,
                kind=ErrorKind.VALIDATION,
                code="SIM-REJECTED",
                message=f"{number} is refused by the simulator (knob 'fail_numbers').",
                raw_status="REJECTED",
            )
        if number in optouts:
            return refused_result(
                sms,
                kind=ErrorKind.OPTED_OUT,
                code="SIM-OPTED-OUT",
                message=f"{number} is on the simulated provider's opt-out list.",
                raw_status="REJECTED",
            )
        return None

    # ------------------------------------------------------------ timeline
    @staticmethod
    def _parse_ref(provider_ref: str) -> tuple[str, float, Decimal, str] | None:
        """(batch ref, send time, credits charged, digest) from a provider ref."""
        parts = provider_ref.split("-")
        if len(parts) != 5 or parts[0] != "sim":
            return None
        segments, _, cents = parts[3].partition("x")
        try:
            charged = Decimal(int(cents)) / 100 if cents else Decimal(int(segments))
            return f"sim-{parts[1]}", int(parts[2], 16) / 1000, charged, parts[4]
        except ValueError:
            return None

    def _rate(self, to: str) -> Decimal:
        """Credits per segment to ``to`` (its country's rate, else the default)."""
        cfg = self.config
        if cfg.country_rates:
            try:
                region = phonenumbers.region_code_for_number(phonenumbers.parse(to, None))
            except phonenumbers.NumberParseException:
                region = None
            if region is not None and region in cfg.country_rates:
                return cfg.country_rates[region]
        return cfg.credits_per_segment

    def _timeline(self, send_time: float, digest: str) -> tuple[DeliveryStatus, float]:
        """Status now and when it was reached."""
        now = self._now()
        if now < send_time:
            return DeliveryStatus.QUEUED, min(send_time, now)
        delay = self.config.delivery_delay * (0.5 + self._rand(digest, "delay"))
        if now < send_time + delay:
            return DeliveryStatus.SENT, send_time
        return self._outcome(digest), send_time + delay

    def _outcome(self, digest: str) -> DeliveryStatus:
        draw = self._rand(digest, "outcome")
        for outcome, upper in self.config.mix:
            if draw < upper:
                return DeliveryStatus(outcome)
        return DeliveryStatus(self.config.mix[-1][0])

    # ------------------------------------------------------------ receipts
    def fetch_statuses(self, refs: list[ProviderRef]) -> list[StatusUpdate]:
        """The current status of each ref (queued, sent or its final outcome).
        Refs this simulator did not issue are absent."""
        self._call("status")
        parsed = [(ref, self._parse_ref(ref.provider_ref)) for ref in refs]
        updates = []
        for ref, p in parsed:
            if p is None:
                continue
            _batch_ref, send_time, charged, digest = p
            status, at = self._timeline(send_time, digest)
            refunded = status in REFUNDED
            if refunded:
                self._refund_once(ref.provider_ref, charged)
            failed = status in NOT_DELIVERED - {DeliveryStatus.UNKNOWN}
            updates.append(
                StatusUpdate(
                    status=status,
                    provider_ref=ref.provider_ref,
                    reference=ref.reference,
                    to=ref.to,
                    raw_status="NO_RECEIPT" if status == DeliveryStatus.UNKNOWN else status.upper(),
                    error_code=f"SIM-{status.upper()}" if failed else "",
                    error_message=f"simulated {status}" if failed else "",
                    occurred_at=datetime.fromtimestamp(at, UTC) if math.isfinite(at) else None,
                    refunded=refunded,
                )
            )
        return updates

    def _refund_once(self, provider_ref: str, charged: Decimal) -> None:
        if self.cache.add(self._key("refunded", provider_ref), 1, STATE_TTL):
            self._set_balance(self._balance() + charged)

    def lookup_by_reference(
        self, references: list[str], *, numbers: Mapping[str, str] | None = None
    ) -> list[SendResult]:
        """What the simulator accepted under our ``references`` (crash recovery)."""
        self._call("lookup")
        keys = {self._key("ref", r): r for r in references}
        found = self.cache.get_many(list(keys))
        parsed = {k: self._parse_ref(v["provider_ref"]) for k, v in found.items()}
        results = []
        for key, record in found.items():
            p = parsed[key]
            if p is None:
                continue
            status = self._timeline(p[1], p[3])[0]
            results.append(
                SendResult(
                    reference=keys[key],
                    accepted=True,
                    status=status,
                    provider_ref=record["provider_ref"],
                    provider_batch_ref=p[0],
                    raw_status=status.upper(),
                )
            )
        return results

    # ------------------------------------------------------------- replies
    def _queue_reply(self, reply: dict) -> None:
        # Claim a free slot with add() (atomic in every cache backend), so two
        # workers sending at once never overwrite each other's replies.
        slot = int(self.cache.get(self._key("reply-seq")) or 0) + 1
        while not self.cache.add(self._key("reply", slot), reply, STATE_TTL):
            slot += 1
        self.cache.set(self._key("reply-seq"), slot, STATE_TTL)

    def fetch_replies(self) -> list[InboundSms]:
        """Replies that are due: from recipients whose message was delivered,
        a delivery delay after the receipt. About ``stop_share`` of them say
        STOP. Each is returned once (and has a stable provider ref)."""
        self._call("replies")
        cursor = int(self.cache.get(self._key("reply-cursor")) or 1)
        # Scan a little past the sequence: a racing sender may have claimed a
        # slot beyond it before updating it.
        end = int(self.cache.get(self._key("reply-seq")) or 0) + 50
        keys = {self._key("reply", slot): slot for slot in range(cursor, end + 1)}
        found = self.cache.get_many(list(keys))
        parsed = {k: self._parse_ref(v["provider_ref"]) for k, v in found.items()}
        now = self._now()
        replies, done, pending = [], [], []
        for key, reply in sorted(found.items(), key=lambda kv: keys[kv[0]]):
            p = parsed[key]
            timeline = None if p is None else self._timeline(p[1], p[3])
            if timeline is None or timeline[0] in NOT_DELIVERED:
                done.append(key)  # never delivered: nobody replies
                continue
            due = timeline[1] + self.config.delivery_delay
            if timeline[0] != DeliveryStatus.DELIVERED or due > now:
                pending.append(keys[key])
                continue
            assert p is not None  # a reply without a parsable ref has no timeline
            digest = p[3]
            if self._rand(digest, "stop") < self.config.stop_share:
                text = "STOP"
            else:
                text = REPLY_TEXTS[int(self._rand(digest, "text") * len(REPLY_TEXTS))]
            replies.append(
                InboundSms(
                    from_number=reply["from"],
                    body=text,
                    received_at=datetime.fromtimestamp(due, UTC),
                    provider_ref=f"simr-{digest}",
                    to_number=reply["to"] if str(reply["to"]).lstrip("+").isdigit() else "",
                    in_reply_to_provider_ref=reply["provider_ref"],
                    raw={"simulated": True, "reference": reply["reference"]},
                )
            )
            done.append(key)
        self.cache.delete_many(done)
        seq = int(self.cache.get(self._key("reply-seq")) or 0)
        new_cursor = min(pending) if pending else max(cursor, seq + 1)
        self.cache.set(self._key("reply-cursor"), new_cursor, STATE_TTL)
        return replies

    # ----------------------------------------------------------- webhooks
    def parse_webhook(self, request) -> list[StatusUpdate | InboundSms]:
        """Lets staff play the provider with curl. JSON body: one event or a
        list of them::

            {"type": "status", "provider_ref": "sim-…", "status": "delivered"}
            {"type": "reply", "from": "+61400123456", "body": "STOP", "id": "r1"}

        ``status`` is a word of the status vocabulary (others become
        unknown, raw kept). Raises WebhookError for anything else.
        """
        try:
            data = json.loads(request.body or b"")
        except (ValueError, UnicodeDecodeError):
            raise WebhookError("simulator webhook: the body is not JSON.") from None
        events = data if isinstance(data, list) else [data]
        parsed: list[StatusUpdate | InboundSms] = []
        for event in events:
            if not isinstance(event, Mapping):
                raise WebhookError("simulator webhook: each event must be a JSON object.")
            kind = event.get("type")
            if kind == "status":
                if not event.get("provider_ref") or not event.get("status"):
                    raise WebhookError(
                        "simulator webhook: a status event needs 'provider_ref' and 'status'."
                    )
                parsed.append(
                    StatusUpdate(
                        status=map_status(RAW_STATUS, str(event["status"]).upper()),
                        provider_ref=str(event["provider_ref"]),
                        reference=str(event.get("reference") or ""),
                        raw_status=str(event["status"]),
                    )
                )
            elif kind == "reply":
                number = to_e164(str(event.get("from") or ""))
                if not number[1:].isdigit():
                    raise WebhookError("simulator webhook: a reply needs 'from', a phone number.")
                body = str(event.get("body") or "")
                ref = str(event.get("id") or "") or "simw-" + self._digest(
                    json.dumps(event, sort_keys=True)
                )
                parsed.append(
                    InboundSms(
                        from_number=number,
                        body=body,
                        received_at=datetime.now(UTC),
                        provider_ref=ref,
                        to_number=str(event.get("to") or ""),
                        raw=dict(event),
                    )
                )
            else:
                raise WebhookError(
                    f"simulator webhook: 'type' must be 'status' or 'reply', got {kind!r}."
                )
        return parsed

    # ------------------------------------------------------------ opt-outs
    def _optouts(self) -> dict[str, float]:
        return dict(self.cache.get(self._key("optouts")) or {})

    # Not part of the contract: the simulated provider's own list, filled by
    # staff or tests to see its opt-out wash and the opt-out sync.
    def optouts_add(self, numbers: list[str]) -> None:
        self._call("opt-out")
        optouts = self._optouts()
        for number in numbers:
            optouts.setdefault("+" + to_msisdn(number), self._now())
        self.cache.set(self._key("optouts"), optouts, STATE_TTL)

    def optouts_remove(self, numbers: list[str]) -> None:
        self._call("opt-in")
        optouts = self._optouts()
        for number in numbers:
            optouts.pop("+" + to_msisdn(number), None)
        self.cache.set(self._key("optouts"), optouts, STATE_TTL)

    def optouts_list(self) -> list[RemoteOptOut]:
        self._call("opt-out list")
        return [
            RemoteOptOut(number=n, added_at=datetime.fromtimestamp(at, UTC), reason="Client")
            for n, at in sorted(self._optouts().items())
        ]
