"""The backend contract every provider fits, and the HTTP plumbing they share.

Modelled on ``django.core.mail`` backends and django-anymail: this module owns
the HTTP client, timeouts, JSON decoding, error classification and
redaction; a provider module only builds payloads and parses answers.
Backends take and return the plain value objects below and never touch a
model.

Retries are not done here. A backend makes each call once and raises
:class:`ProviderError` when it fails; the error says whether the call may be
retried (``permanent``), when (``retry_after``) and whether the provider may
have acted on it anyway (``maybe_processed``). The campaign engine owns
retries, backoff and the retry cap, because only it knows which messages a
call carried and can reschedule them without sending anyone twice.

Nothing logged or raised here contains credentials: requests are logged as
method, path and status only, and any credential value a provider echoes in
an error text is masked (:meth:`SmsBackend.scrub`).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import httpx

logger = logging.getLogger("providers.backends")


class DeliveryStatus(enum.StrEnum):
    """The closed status vocabulary every provider status maps onto."""

    QUEUED = "queued"  # accepted, not yet handed to the network (or scheduled)
    SENT = "sent"  # handed to the carrier, no receipt yet
    DELIVERED = "delivered"  # handset receipt
    UNDELIVERED = "undelivered"  # carrier could not deliver
    EXPIRED = "expired"  # validity ran out before delivery
    REJECTED = "rejected"  # refused by provider/carrier (bad number, content, ...)
    FAILED = "failed"  # failed for another reason
    UNKNOWN = "unknown"  # anything we cannot map; the raw value is kept


#: Final states: a report never moves a message out of one of these.
FINAL_STATUSES = frozenset(
    {
        DeliveryStatus.DELIVERED,
        DeliveryStatus.UNDELIVERED,
        DeliveryStatus.EXPIRED,
        DeliveryStatus.REJECTED,
        DeliveryStatus.FAILED,
    }
)

#: Order used to refuse going backwards (a late "sent" after "delivered").
STATUS_RANK = {
    DeliveryStatus.UNKNOWN: 0,
    DeliveryStatus.QUEUED: 1,
    DeliveryStatus.SENT: 2,
    DeliveryStatus.DELIVERED: 3,
    DeliveryStatus.UNDELIVERED: 3,
    DeliveryStatus.EXPIRED: 3,
    DeliveryStatus.REJECTED: 3,
    DeliveryStatus.FAILED: 3,
}


def map_status(table: Mapping[str, DeliveryStatus], raw: Any) -> DeliveryStatus:
    """Look ``raw`` up in a provider's table (case-insensitive for strings);
    anything unmapped is ``UNKNOWN`` (the caller keeps the raw value)."""
    if raw is None:
        return DeliveryStatus.UNKNOWN
    key = str(raw).strip()
    return table.get(key, table.get(key.upper(), DeliveryStatus.UNKNOWN))


class Capability(enum.StrEnum):
    SCHEDULE = "schedule"
    DLR_POLL = "dlr_poll"
    DLR_WEBHOOK = "dlr_webhook"
    REPLIES_POLL = "replies_poll"
    REPLIES_WEBHOOK = "replies_webhook"
    BALANCE = "balance"
    TOPUP = "topup"
    OPTOUTS = "optouts"
    LOOKUP_BY_REFERENCE = "lookup_by_reference"
    #: The provider lists the senders it accepts for the account
    #: (:meth:`SmsBackend.senders`): they feed the sender choices.
    SENDERS = "senders"
    ACCOUNT_SETTINGS = "account_settings"


#: Each webhook kind (``/hooks/<backend>/<token>/<kind>/``) and the
#: capability that makes a backend offer it: declared once, read by the
#: webhook view, the account page and :func:`providers.backends.webhook_urls_for`.
WEBHOOK_KINDS: dict[str, Capability] = {
    "status": Capability.DLR_WEBHOOK,
    "inbound": Capability.REPLIES_WEBHOOK,
}


@dataclass(frozen=True, slots=True)
class WebhookUrls:
    """Our absolute webhook addresses for one account ("" when unknown, i.e.
    ``PUBLIC_BASE_URL`` is not set). A backend passes them to providers that
    take a callback URL per message (The SMS Works ``deliveryreporturl``,
    TransmitSMS ``dlr_callback``/``reply_callback``, CALLR
    ``webhook.endpoint``)."""

    status: str = ""
    inbound: str = ""


def basic_auth_token(user: str, password: str) -> str:
    """The base64 ``user:password`` of an HTTP Basic ``Authorization`` header
    (also masked in logs, see :meth:`SmsBackend.secrets`)."""
    return base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def hmac_signature_valid(
    body: bytes, secret: str, signature: str, *, algorithm: str = "sha256"
) -> bool:
    """Whether ``signature`` (base64 or hex) is the HMAC of ``body`` with
    ``secret``; compared in constant time. For :meth:`SmsBackend.verify_webhook`
    of providers that sign their calls (CALLR: ``X-CALLR-HmacSignature``,
    base64 HMAC-SHA256 of the body)."""
    if not secret or not signature:
        return False
    digest = hmac.new(secret.encode(), body, getattr(hashlib, algorithm)).digest()
    given = signature.strip()
    candidates = (base64.b64encode(digest).decode("ascii"), digest.hex())
    return any(hmac.compare_digest(given, expected) for expected in candidates)


class SendOutcome(enum.StrEnum):
    """What happened to one message in one ``send()``: exactly one per message.

    - ``ACCEPTED``: the provider took it (``provider_ref`` set when it gives one).
    - ``REFUSED_PERMANENT``: refused; sending it again would fail the same way.
    - ``REFUSED_TRANSIENT``: refused for now (provider busy, 5xx); may be tried
      again later, and counts as an attempt.
    - ``NOT_ATTEMPTED``: never reached the provider (an earlier call of the
      batch failed, the pacer deferred the call, a 429 stopped the batch).
      Re-queue it; it costs no attempt.
    - ``UNKNOWN``: the call may have reached the provider (read timeout, an
      unreadable answer): reconcile by our reference, never re-send blindly.
    """

    ACCEPTED = "accepted"
    REFUSED_PERMANENT = "refused_permanent"
    REFUSED_TRANSIENT = "refused_transient"
    NOT_ATTEMPTED = "not_attempted"
    UNKNOWN = "unknown"


class ErrorKind(enum.StrEnum):
    """Why a provider call or a message failed, without parsing text."""

    AUTH = "auth"
    CREDIT = "credit"
    VALIDATION = "validation"
    RATE_LIMIT = "rate_limit"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    PROTOCOL = "protocol"
    NOT_FOUND = "not_found"
    UNSUPPORTED = "unsupported"
    OPTED_OUT = "opted_out"  # the provider dropped the destination for an opt-out
    DEFERRED = "deferred"  # our own pacer said "not now"; nothing was sent


#: A pacer is called by :meth:`SmsBackend.request` immediately before every
#: HTTP call, with the call's operation (``"send"``, ``"status"``,
#: ``"replies"``, ``"balance"``, ...). It returns once the call may be made
#: (it may sleep to honour the account's rate, shared across workers), or
#: raises :class:`ProviderError` with ``kind=ErrorKind.DEFERRED`` (or
#: ``RATE_LIMIT`` while a provider's Retry-After is running) and
#: ``retry_after`` to say "do not make this call now"; nothing was sent, so
#: ``maybe_processed`` is false and the messages of that call are
#: ``NOT_ATTEMPTED``. The campaign engine supplies it; ``None`` = unpaced.
Pacer = Callable[[str], None]


#: Error kinds that stop a whole batch (and, for auth/credit, pause the
#: campaign): the account cannot send right now, whatever the message.
BATCH_STOPPING_KINDS = frozenset({ErrorKind.AUTH, ErrorKind.CREDIT, ErrorKind.RATE_LIMIT})

#: Error kinds that say the provider is in trouble (5xx, connection failure,
#: no answer in time): the batch stops too, and the engine holds the account
#: off for a moment instead of hammering it.
PROVIDER_TROUBLE_KINDS = frozenset({ErrorKind.UNAVAILABLE, ErrorKind.TIMEOUT})

#: Kinds of a refusal that concern the chunk of a call (its text, its
#: numbers), not the account: the send flow goes on with the other groups.
CHUNK_ERROR_KINDS = frozenset({ErrorKind.VALIDATION, ErrorKind.NOT_FOUND, ErrorKind.OPTED_OUT})


def batch_stop_error(results: Sequence[SendResult]) -> ProviderError | None:
    """The account-wide error hidden in ``results``, if any.

    A backend's ``send()`` reports per message; when one message is refused or
    not attempted for a reason that concerns the whole account (bad
    credentials, no credit at the provider, a 429 with Retry-After) or the
    provider (unavailable, timed out), the engine must react once for the
    batch: pause the campaign (auth, credit) or hold the account off for
    ``retry_after`` (rate limit, provider trouble). Returns that error (auth
    before credit before rate limit before unavailable before timeout, the
    longest Retry-After of its kind), or ``None``. Only auth and credit
    errors are ``permanent``; a timeout's error is ``maybe_processed`` when
    one of its messages ended ``UNKNOWN``. The engine and the backend
    contract share this one reading.

    Contract for backends: a message held back because of such an error is
    reported ``NOT_ATTEMPTED`` with that ``error_kind`` (and ``retry_after``
    for a 429), never ``REFUSED_PERMANENT``: it was not the message's fault,
    and it is sent once the account is fixed or the wait is over.
    """
    found: dict[str, SendResult] = {}
    unknown: set[str] = set()
    watched = BATCH_STOPPING_KINDS | PROVIDER_TROUBLE_KINDS
    for result in results:
        if result.outcome == SendOutcome.ACCEPTED or result.error_kind not in watched:
            continue
        if result.outcome == SendOutcome.UNKNOWN:
            unknown.add(result.error_kind)
        kept = found.get(result.error_kind)
        if kept is None or (result.retry_after or 0) > (kept.retry_after or 0):
            found[result.error_kind] = result
    order = (
        ErrorKind.AUTH,
        ErrorKind.CREDIT,
        ErrorKind.RATE_LIMIT,
        ErrorKind.UNAVAILABLE,
        ErrorKind.TIMEOUT,
    )
    for kind in order:
        stopping = found.get(kind)
        if stopping is not None:
            return ProviderError(
                stopping.error_message or stopping.raw_status or f"{kind} error from the provider",
                code=stopping.error_code,
                permanent=kind in (ErrorKind.AUTH, ErrorKind.CREDIT),
                retry_after=stopping.retry_after,
                kind=str(kind),
                maybe_processed=kind in unknown,
            )
    return None


def error_stops_batch(error: ProviderError) -> bool:
    """Whether a call failing with ``error`` ends the send flow's batch:
    anything but a permanent refusal of the call's own content
    (:data:`CHUNK_ERROR_KINDS`)."""
    return error.maybe_processed or not error.permanent or error.kind not in CHUNK_ERROR_KINDS


@dataclass(frozen=True, slots=True)
class OutboundSms:
    """One message to send. ``reference`` is ours (unique per message) and is
    passed to the provider wherever it accepts one, so a crash between
    "provider accepted" and "recorded" can be reconciled."""

    reference: str
    to: str  # E.164 with "+"
    body: str
    sender: str = ""
    send_at: datetime | None = None  # provider-side schedule (aware datetime)


@dataclass(frozen=True, slots=True)
class SendResult:
    """The provider's answer for one OutboundSms (same ``reference``)."""

    reference: str
    accepted: bool
    status: DeliveryStatus
    provider_ref: str = ""  # the provider's id for this message
    provider_batch_ref: str = ""  # campaign/batch id when the provider groups sends
    raw_status: str = ""
    error_code: str = ""
    error_message: str = ""
    permanent: bool = True  # for a refused message: may it be retried?
    credits: Decimal | None = None  # what the provider says it charged
    #: Not accepted as far as we know, but the call may have reached the
    #: provider (e.g. a read timeout): reconcile, never blindly re-send.
    outcome_unknown: bool = False
    #: The explicit outcome (see :class:`SendOutcome`). Backends written on
    #: the base send flow always set it; when left ``None`` it is derived from
    #: the fields above (transitional, for backends not yet moved).
    outcome: SendOutcome | None = None
    error_kind: str = ""  # an ErrorKind value for a refused / not attempted message
    retry_after: float | None = None  # seconds, when the provider said when to retry

    def __post_init__(self) -> None:
        if self.outcome is None:
            if self.accepted:
                derived = SendOutcome.ACCEPTED
            elif self.outcome_unknown:
                derived = SendOutcome.UNKNOWN
            elif self.error_code == SendOutcome.NOT_ATTEMPTED:
                derived = SendOutcome.NOT_ATTEMPTED
            elif self.permanent:
                derived = SendOutcome.REFUSED_PERMANENT
            else:
                derived = SendOutcome.REFUSED_TRANSIENT
            object.__setattr__(self, "outcome", derived)


#: Kinds of :meth:`SmsBackend.send` errors that hold messages back without
#: any fault of theirs: the messages are ``NOT_ATTEMPTED``, costing no attempt.
NOT_ATTEMPTED_KINDS = frozenset(
    {ErrorKind.AUTH, ErrorKind.CREDIT, ErrorKind.RATE_LIMIT, ErrorKind.DEFERRED}
)


def accepted_result(
    sms: OutboundSms,
    *,
    provider_ref: str = "",
    provider_batch_ref: str = "",
    status: DeliveryStatus = DeliveryStatus.SENT,
    raw_status: str = "",
    credits: Decimal | None = None,
) -> SendResult:
    """``sms`` was taken by the provider (``status`` is ``queued`` for a
    provider-side schedule, else usually ``sent``)."""
    return SendResult(
        reference=sms.reference,
        accepted=True,
        status=status,
        provider_ref=provider_ref,
        provider_batch_ref=provider_batch_ref,
        raw_status=raw_status,
        credits=credits,
        outcome=SendOutcome.ACCEPTED,
    )


def refused_result(
    sms: OutboundSms,
    *,
    kind: str,
    message: str,
    code: str = "",
    permanent: bool = True,
    raw_status: str = "",
    retry_after: float | None = None,
) -> SendResult:
    """The provider refused ``sms`` (inside an answer that accepted others, or
    by an error of its call). ``permanent``: sending it again would fail the
    same way (``rejected`` for a content/number/opt-out refusal, else
    ``failed``); otherwise it may be tried again later and counts as an
    attempt. Opt-out washes: ``kind=ErrorKind.OPTED_OUT``."""
    if permanent:
        outcome = SendOutcome.REFUSED_PERMANENT
        status = DeliveryStatus.REJECTED if kind in CHUNK_ERROR_KINDS else DeliveryStatus.FAILED
    else:
        outcome, status = SendOutcome.REFUSED_TRANSIENT, DeliveryStatus.QUEUED
    return SendResult(
        reference=sms.reference,
        accepted=False,
        status=status,
        raw_status=raw_status,
        error_code=str(code or ""),
        error_message=message,
        permanent=permanent,
        outcome=outcome,
        error_kind=str(kind or ""),
        retry_after=retry_after,
    )


def not_attempted_result(sms: OutboundSms, error: ProviderError) -> SendResult:
    """``sms`` never reached the provider because of ``error`` (the pacer, a
    429, an account-wide refusal, an earlier call of the batch): re-queue it,
    no attempt counted, after ``retry_after`` when set."""
    return SendResult(
        reference=sms.reference,
        accepted=False,
        status=DeliveryStatus.QUEUED,
        error_code=error.code,
        error_message=f"Not sent: {error.message}",
        permanent=False,
        outcome=SendOutcome.NOT_ATTEMPTED,
        error_kind=str(error.kind or ""),
        retry_after=error.retry_after,
    )


def unknown_result(sms: OutboundSms, message: str, *, kind: str = "", code: str = "") -> SendResult:
    """The call carrying ``sms`` may have reached the provider but we do not
    know what it did: reconcile by our reference, never re-send blindly."""
    return SendResult(
        reference=sms.reference,
        accepted=False,
        status=DeliveryStatus.UNKNOWN,
        error_code=code,
        error_message=message,
        permanent=False,
        outcome_unknown=True,
        outcome=SendOutcome.UNKNOWN,
        error_kind=str(kind or ""),
    )


def error_result(sms: OutboundSms, error: ProviderError) -> SendResult:
    """The outcome of ``sms`` when the call carrying it failed with ``error``:

    - ``maybe_processed`` → ``UNKNOWN`` (a read timeout, an unreadable 2xx);
    - kind auth, credit, rate limit or deferred → ``NOT_ATTEMPTED`` (with
      the kind and ``retry_after``: :func:`batch_stop_error` reads them);
    - ``permanent`` → ``REFUSED_PERMANENT``;
    - anything else (5xx, connection failure) → ``REFUSED_TRANSIENT``, which
      costs an attempt, so a provider that keeps failing is given up on.
    """
    if error.maybe_processed:
        return unknown_result(sms, error.message, kind=error.kind, code=error.code)
    if error.kind in NOT_ATTEMPTED_KINDS:
        return not_attempted_result(sms, error)
    return refused_result(
        sms,
        kind=error.kind,
        message=error.message,
        code=error.code,
        permanent=error.permanent,
        retry_after=error.retry_after,
    )


@dataclass(frozen=True, slots=True)
class ProviderRef:
    """Identifies a sent message at the provider, for status polling."""

    provider_ref: str
    provider_batch_ref: str = ""
    reference: str = ""  # ours
    to: str = ""


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A delivery report, normalised. Matched on ``provider_ref`` (or our
    ``reference`` when the provider echoes it)."""

    status: DeliveryStatus
    provider_ref: str = ""
    reference: str = ""
    to: str = ""
    raw_status: str = ""
    error_code: str = ""
    error_message: str = ""
    occurred_at: datetime | None = None
    refunded: bool = False  # the provider returns the credits for this message


@dataclass(frozen=True, slots=True)
class InboundSms:
    """A reply from a handset."""

    from_number: str  # E.164 with "+"
    body: str
    received_at: datetime
    provider_ref: str = ""  # the provider's id for the reply (idempotency)
    to_number: str = ""
    in_reply_to_provider_ref: str = ""
    raw: dict = field(default_factory=dict)
    #: The provider itself flags this reply as an opt-out (TransmitSMS
    #: ``is_optout=yes``): the number is opted out whatever the text says.
    opt_out: bool = False


@dataclass(frozen=True, slots=True)
class RemoteOptOut:
    """A number on the provider's own opt-out list (capability "optouts")."""

    number: str  # E.164 with "+"
    added_at: datetime | None = None
    reason: str = ""
    text: str = ""


@dataclass(frozen=True, slots=True)
class CredentialField:
    """One credential a backend needs, as the account form asks for it.

    ``name`` is the key in ``ProviderAccount.credentials``. A ``secret`` is
    write-only: never shown again, left empty to keep the stored value. A
    ``required`` field must have a value (entered or already stored) for
    the account to be saved.
    """

    name: str
    label: str
    secret: bool = False
    required: bool = True
    help_text: str = ""


@dataclass(frozen=True, slots=True)
class SenderOption:
    """A sender the provider accepts for the account (capability "senders"):
    ``value`` as it goes in a campaign's sender field (numbers E.164 with
    ``+``), ``label`` for people, ``kind`` "number" or "alpha"."""

    value: str
    label: str
    kind: str = "alpha"


@dataclass(frozen=True, slots=True)
class AccountSettings:
    """What the provider says about the account (capability
    ``account_settings``); ``None`` / ``""`` where it says nothing.

    - ``allows_unicode``: False when a UCS-2 text would be refused.
    - ``allows_international``: False when only ``home_country`` numbers
      can be sent to.
    - ``home_country``: ISO 3166 alpha-2 code of the account's country.
    - ``time_zone``: IANA name of the zone the provider's timestamps (and
      schedule times) are in.
    """

    allows_unicode: bool | None = None
    allows_international: bool | None = None
    home_country: str = ""
    time_zone: str = ""


class ProviderError(Exception):
    """Any failure talking to a provider.

    ``permanent`` errors (authentication, validation, insufficient credit)
    must not be retried; transient ones (timeouts, 5xx, 429) may be, after
    ``retry_after`` seconds when the provider said so. ``kind`` lets callers
    react without parsing text: "auth", "credit", "validation", "rate_limit",
    "unavailable", "timeout", "protocol", "not_found", "unsupported".

    ``maybe_processed`` is true when the request may have reached the
    provider and been acted on although we got no answer (read timeout,
    connection dropped mid-response, an answer we could not read). Messages
    of such a call must be reconciled (``lookup_by_reference``) or left for
    the status reports, never simply sent again. Connection failures and
    refusals (4xx/5xx with a body) have ``maybe_processed`` false.

    Backends never retry; the caller does, using ``permanent`` and
    ``retry_after``.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        permanent: bool = False,
        retry_after: float | None = None,
        kind: str = "",
        status_code: int | None = None,
        maybe_processed: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = str(code)
        self.permanent = permanent
        self.retry_after = retry_after
        self.kind = kind
        self.status_code = status_code
        self.maybe_processed = maybe_processed

    @property
    def retryable(self) -> bool:
        return not self.permanent

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe description, e.g. for an audit row or ``Message.raw_error``."""
        return {
            "message": self.message,
            "code": self.code,
            "kind": self.kind,
            "permanent": self.permanent,
            "retry_after": self.retry_after,
            "status_code": self.status_code,
            "maybe_processed": self.maybe_processed,
        }

    def __str__(self) -> str:
        return f"{self.message} (code {self.code})" if self.code else self.message


class UnsupportedOperation(ProviderError):
    def __init__(self, backend: str, operation: str) -> None:
        super().__init__(
            f"{backend} does not support {operation}.",
            permanent=True,
            kind="unsupported",
        )


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def to_msisdn(number: str) -> str:
    """``"+61400123456"`` → ``"61400123456"`` (international digits, no ``+``/``00``).

    Raises a permanent ProviderError for anything that is not a number, so a
    bad value is refused before it reaches a provider.
    """
    digits = (number or "").strip().replace(" ", "")
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        digits = digits[2:]
    if not digits.isdigit() or not 6 <= len(digits) <= 15:
        raise ProviderError(
            f"{number!r} is not an international phone number; expected E.164 such as "
            "+61400123456.",
            code="invalid_number",
            permanent=True,
            kind="validation",
        )
    return digits


def to_e164(number: str) -> str:
    """A provider's MSISDN (``"61400123456"``, ``"+61…"`` or ``"0061…"``) as
    ``"+61400123456"``; values that are not digits (alphanumeric senders) are
    returned stripped but otherwise unchanged."""
    value = (number or "").strip().replace(" ", "")
    digits = value[1:] if value.startswith("+") else value
    if digits.startswith("00"):
        digits = digits[2:]
    return f"+{digits}" if digits.isdigit() else value


def parse_local_datetime(value: Any, tz: str | ZoneInfo = "UTC") -> datetime | None:
    """Parse a provider timestamp (ISO-8601, ``T`` or space separated, with or
    without zone). Naive values are read in ``tz``. Unreadable → ``None``."""
    if not value:
        return None
    text = str(value).strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz))
    return parsed


#: First reply poll of an account (no cursor yet) looks back this far.
REPLY_LOOKBACK = timedelta(days=1)
#: Each reply poll re-reads this much before its last end (late arrivals);
#: a reply is stored once per provider id, so reading it twice is harmless.
REPLY_OVERLAP = timedelta(minutes=10)


class ReplyCursor:
    """Where an account's reply polling stands, kept in the cache under ``key``.

    :meth:`window` is (start, end): from the last successful poll's end less
    :data:`REPLY_OVERLAP` (or :data:`REPLY_LOOKBACK` ago on the first poll)
    to now. :meth:`advance` moves the cursor to that end; call it only once
    the replies of the window were read, so a failed poll is read again.
    """

    def __init__(self, key: str) -> None:
        self.key = key

    def window(self) -> tuple[datetime, datetime]:
        from django.core.cache import cache

        now = datetime.now(UTC)
        last = cache.get(self.key)
        if last:
            return datetime.fromtimestamp(float(last), UTC) - REPLY_OVERLAP, now
        return now - REPLY_LOOKBACK, now

    def advance(self, to: datetime) -> None:
        from django.core.cache import cache

        cache.set(self.key, to.timestamp(), timeout=None)


class SmsBackend:
    """Base class of every provider backend.

    Writing a backend (one module in ``providers/backends/``, one line in
    ``settings.SMS_BACKENDS``, a contract profile in
    ``tests/providers/contract/``):

    - Class attributes: ``name``, ``capabilities`` (only what the provider
      really does), ``max_batch`` (recipients per call, from its doc),
      ``default_base_url``, ``send_path`` (or override :meth:`post`),
      ``max_requests_per_second`` when the doc gives a rate.
    - Sending: never override :meth:`send`. Implement :meth:`build_payload`
      and :meth:`parse_results`; override :meth:`post` when the call is not a
      JSON POST to ``send_path``, :meth:`group_key` when one call carries
      different texts (or none of the same), :meth:`check_message` and
      :meth:`format_sender` for the provider's number and sender rules.
    - Errors: :meth:`auth_headers`, :meth:`error_details` (code and text of
      an error body), :meth:`classify_http_error` (map the provider's codes
      to an :class:`ErrorKind` and ``permanent``) and :meth:`error_in_answer`
      (failures inside HTTP 200). Return kinds from :class:`ErrorKind`:
      the send flow turns them into outcomes (see :func:`error_result`).
    - Other operations (statuses, replies, balance...) call :meth:`request`
      with an ``operation`` name and raise :class:`ProviderError`; the
      operations a backend lacks raise :class:`UnsupportedOperation`.

    Body length and sender rules are not here: they are in
    :func:`providers.limits.limits_for` (one table, from the providers' docs).
    """

    name: ClassVar[str] = ""
    #: The provider's name for people ("FullSMS"); ``name`` when empty.
    label: ClassVar[str] = ""
    capabilities: ClassVar[frozenset[str]] = frozenset()
    #: The credentials the account form asks for, in order (see
    #: :class:`CredentialField`); each ``name`` is a key of ``credentials``.
    #: Empty: the form offers the raw JSON only.
    credential_fields: ClassVar[tuple[CredentialField, ...]] = ()
    #: Why a backend with neither ``dlr_poll`` nor ``dlr_webhook`` leaves
    #: accepted messages ``sent`` for good; shown on the account and
    #: campaign pages (see :meth:`delivery_reports_missing`).
    delivery_reports_note: ClassVar[str] = ""
    default_base_url: ClassVar[str] = ""
    #: Provider's own cap on API calls per second (0 = none documented).
    max_requests_per_second: ClassVar[float] = 0
    #: Minimum seconds between two reply polls (SMS Everyone: 60).
    min_reply_poll_interval: ClassVar[float] = 0
    #: Whether the provider returns credits for undelivered/expired/rejected.
    refunds_failed: ClassVar[bool] = False
    #: What staff must do at the provider for its webhooks (account page).
    webhook_setup_note: ClassVar[str] = ""

    #: Per phase, in seconds. The read timeout stays well below the django-q2
    #: task timeout (90 s) so a slow provider fails the call, not the worker.
    timeout = httpx.Timeout(connect=5.0, read=15.0, write=10.0, pool=5.0)

    def __init__(
        self,
        *,
        credentials: Mapping[str, Any] | None = None,
        base_url: str | None = None,
        transport: httpx.BaseTransport | None = None,
        account_key: str = "",
        pacer: Pacer | None = None,
        webhook_urls: WebhookUrls | None = None,
        **options: Any,
    ) -> None:
        self.credentials = dict(credentials or {})
        self.pacer = pacer
        #: Our webhook addresses for this account, to pass per message where
        #: the provider takes a callback URL.
        self.webhook_urls = webhook_urls or WebhookUrls()
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.account_key = account_key
        self.options = options
        self._transport = transport
        self._client: httpx.Client | None = None

    def __repr__(self) -> str:
        # Never the credentials: backends end up in logs and tracebacks.
        return f"<{type(self).__name__} account={self.account_key or '-'}>"

    @classmethod
    def supports(cls, capability: str) -> bool:
        return str(capability) in cls.capabilities

    @classmethod
    def delivery_reports_missing(cls) -> str:
        """Empty when the provider reports deliveries (polled or pushed);
        otherwise the sentence pages show to say why statuses stay ``sent``."""
        if cls.capabilities & {Capability.DLR_POLL, Capability.DLR_WEBHOOK}:
            return ""
        return cls.delivery_reports_note or (
            f"{cls.label or cls.name} sends no delivery reports: accepted messages stay "
            "“sent” and are never marked delivered or undelivered."
        )

    def require(self, capability: str, operation: str = "") -> None:
        """Raise UnsupportedOperation unless this backend has ``capability``."""
        if not self.supports(capability):
            raise UnsupportedOperation(self.name, operation or str(capability))

    def secrets(self) -> list[str]:
        """Values that must never appear in a log line or error message:
        every credential string plus the Basic-auth encodings of user/password
        pairs. Subclasses with tokens obtained at runtime add them."""
        values = [v for v in self.credentials.values() if isinstance(v, str) and v]
        user = str(self.credentials.get("username", "") or "")
        password = str(self.credentials.get("password", "") or "")
        if user or password:
            values.append(basic_auth_token(user, password))
        # Short values (a 2-letter region, "1") would mask harmless text.
        return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        """``text`` with every credential value replaced by ``***``, and any
        echoed Authorization value or webhook token too
        (:func:`smsoffice.logredact.redact_text`)."""
        from smsoffice.logredact import redact_text

        for secret in self.secrets():
            text = text.replace(secret, "***")
        return redact_text(text)

    # ----------------------------------------------------------------- HTTP
    @property
    def client(self) -> httpx.Client:
        """One reused client per backend instance (connection pooling)."""
        if self._client is None:
            self._client = httpx.Client(
                base_url=self.base_url,
                timeout=self.timeout,
                transport=self._transport,
                headers={"User-Agent": "smsoffice/0.1"},
                follow_redirects=False,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate a request (override per provider)."""
        return {}

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        expect_json: bool = True,
        ok_statuses: tuple[int, ...] = (),
        operation: str = "call",
    ) -> Any:
        """Send one request and return the decoded JSON (or text).

        Raises :class:`ProviderError`: transient for timeouts, connection
        errors, 429 and 5xx (with ``retry_after`` from Retry-After), permanent
        for the other 4xx after :meth:`classify_http_error` had its say, and
        whatever :meth:`error_in_answer` finds in a 2xx answer. ``operation``
        names the call for the pacer and :meth:`error_in_answer`.
        """
        all_headers = {**self.auth_headers(), **(headers or {})}
        where = f"{self.name}: {method} {path}"
        if self.pacer is not None:
            # May sleep, or raise a ProviderError (DEFERRED / RATE_LIMIT) so
            # this call is never made.
            self.pacer(operation)
        error: ProviderError | None
        try:
            response = self.client.request(
                method,
                path,
                json=json_body,
                data=data,
                params=params,
                headers=all_headers,
                auth=auth,
            )
        # The exception texts are left out on purpose: some carry the URL,
        # and a URL may carry credentials.
        except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing was sent: safe to try again.
            error = ProviderError(
                f"{where} could not connect in time ({type(exc).__name__}); "
                "the request was not sent.",
                kind="unavailable",
            )
        except httpx.TimeoutException as exc:
            error = ProviderError(
                f"{where} timed out waiting for the answer ({type(exc).__name__}); "
                "the provider may have acted on it.",
                kind="timeout",
                maybe_processed=True,
            )
        except (httpx.ConnectError, httpx.ProxyError) as exc:
            error = ProviderError(
                f"{where} failed to connect ({type(exc).__name__}); the request was not sent.",
                kind="unavailable",
            )
        except httpx.UnsupportedProtocol:
            error = ProviderError(
                f"{where}: the base URL {self.base_url!r} is not an http(s) URL; "
                "fix the account's base URL.",
                permanent=True,
                kind="validation",
            )
        except (httpx.RequestError, httpx.InvalidURL) as exc:
            # Connection dropped while reading/writing, bad encoding, ...
            error = ProviderError(
                f"{where} failed ({type(exc).__name__}); the provider may have acted on it.",
                kind="unavailable",
                maybe_processed=True,
            )
        else:
            error = None
        if error is not None:
            logger.warning("%s", error)
            raise error

        body = self.decode(response, expect_json=expect_json)
        if response.is_success or response.status_code in ok_statuses:
            logger.debug("%s -> HTTP %s", where, response.status_code)
            error = self.error_in_answer(body, operation=operation) if response.is_success else None
            if error is None:
                return body
            if error.status_code is None:
                error.status_code = response.status_code
            logger.warning("%s", error)
            raise error
        error = self.classify_http_error(response, body)
        logger.warning("%s", error)
        raise error

    def decode(self, response: httpx.Response, *, expect_json: bool = True) -> Any:
        if not expect_json:
            return response.text
        if not response.content:
            return None
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            if response.is_success:
                # It said yes in a form we cannot read: it may have acted on it.
                raise ProviderError(
                    f"{self.name}: {response.request.method} {response.request.url.path} "
                    f"answered HTTP {response.status_code} with a body that is not JSON: "
                    f"{self.scrub(response.text[:200])!r}",
                    kind="protocol",
                    status_code=response.status_code,
                    maybe_processed=True,
                ) from None
            return response.text

    def classify_http_error(self, response: httpx.Response, body: Any) -> ProviderError:
        """Turn a non-2xx answer into a ProviderError. Providers override
        :meth:`error_details` to pull their own code and message out of ``body``."""
        status = response.status_code
        code, message = self.error_details(body)
        message = message or (body if isinstance(body, str) else "") or response.reason_phrase
        message = self.scrub(str(message)[:500])
        where = f"{self.name}: HTTP {status}"
        if status < 400:
            # Redirects are not followed: a moved API must be configured, not guessed.
            return ProviderError(
                f"{where} redirect to {self.scrub(response.headers.get('Location', '?'))!r}; "
                "check the account's base URL.",
                code=str(status),
                permanent=True,
                kind="protocol",
                status_code=status,
            )
        if status == 429:
            return ProviderError(
                f"{where} rate limited: {message}",
                code=code or "429",
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                kind="rate_limit",
                status_code=status,
            )
        if status >= 500:
            return ProviderError(
                f"{where} provider unavailable: {message}",
                code=code or str(status),
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                kind="unavailable",
                status_code=status,
            )
        kind = {401: "auth", 403: "auth", 402: "credit", 404: "not_found"}.get(status, "validation")
        return ProviderError(
            f"{where}: {message}",
            code=code or str(status),
            permanent=True,
            kind=kind,
            status_code=status,
        )

    def error_details(self, body: Any) -> tuple[str, str]:
        """(code, message) from an error body; override per provider."""
        if isinstance(body, Mapping):
            return str(body.get("code", "") or ""), str(body.get("message", "") or "")
        return "", ""

    # ------------------------------------------------------------ send flow
    def send(self, batch: Sequence[OutboundSms]) -> list[SendResult]:
        """Send ``batch``: one :class:`SendResult` per message, in the same order.

        This is the whole flow, owned here so every provider means the same
        thing by each outcome (django-anymail's shape; providers fill in the
        hooks below, never this method):

        1. :meth:`check_message` each message; one it raises for is refused
           on its own (no call).
        2. Group the rest by :meth:`group_key` (first-seen order) and cut
           each group into chunks of at most ``max_batch``: one provider call
           per chunk, at most ``max_calls_per_send`` calls.
        3. Per chunk: :meth:`build_payload` → :meth:`post` (which goes
           through :meth:`request`, hence the pacer and
           :meth:`error_in_answer`) → :meth:`parse_results`.
        4. A call that fails gives its chunk the outcome of its error
           (:meth:`results_for_error`). An error that concerns the account or
           the provider rather than this chunk (auth, credit, rate limit,
           deferred by the pacer, provider unavailable, timeout, an answer we
           cannot read) stops the batch: the chunks not tried are
           ``NOT_ATTEMPTED`` with that error's kind and ``retry_after``. A
           refusal of the chunk's content (validation, not found) does not:
           the other groups are still tried.

        It never raises for a provider problem, a refused message or a bug in
        a hook: everything ends in a result (a hook that crashes before its
        call refuses its chunk transiently; after it, the chunk's fate is
        ``UNKNOWN``). Messages the provider accepted are never reported
        otherwise.
        """
        batch = list(batch)
        results: list[SendResult | None] = [None] * len(batch)
        groups: dict[Hashable, list[int]] = {}
        for index, sms in enumerate(batch):
            try:
                self.check_message(sms)
                key = self.group_key(sms)
            except ProviderError as exc:
                results[index] = self.results_for_error(exc, [sms])[0]
                continue
            except Exception as exc:  # a bug in a hook: refuse (an attempt), never raise
                logger.exception("%s: check_message/group_key failed", self.name)
                error = ProviderError(
                    f"{self.name}: could not prepare the message ({type(exc).__name__}); "
                    "nothing was sent.",
                    kind=ErrorKind.PROTOCOL,
                )
                results[index] = error_result(sms, error)
                continue
            groups.setdefault(key, []).append(index)

        size = max(1, int(self.max_batch or 1))
        chunks = [
            indexes[start : start + size]
            for indexes in groups.values()
            for start in range(0, len(indexes), size)
        ]
        stop: ProviderError | None = None
        calls = 0
        for chunk in chunks:
            members = [batch[i] for i in chunk]
            if stop is None and self.max_calls_per_send and calls >= self.max_calls_per_send:
                stop = ProviderError(
                    f"{self.name}: not sent in this batch: at most {self.max_calls_per_send} "
                    "provider calls per send.",
                    kind=ErrorKind.DEFERRED,
                )
            if stop is not None:
                outcome = [not_attempted_result(sms, stop) for sms in members]
            else:
                calls += 1
                outcome, stop = self._send_chunk(members)
            for index, result in zip(chunk, outcome, strict=True):
                results[index] = result
        return [result for result in results if result is not None]

    def _send_chunk(
        self, members: list[OutboundSms]
    ) -> tuple[list[SendResult], ProviderError | None]:
        """One provider call for ``members``: their results and the error
        that stops the rest of the batch, if any."""
        posted = False
        try:
            payload = self.build_payload(members)
            posted = True
            answer = self.post(payload, members)
            try:
                parsed = self.parse_results(answer, members)
            except ProviderError as exc:
                # The call went through: whatever we could not read may have
                # been acted on.
                exc.maybe_processed = True
                raise
        except ProviderError as exc:
            results = self.results_for_error(exc, members)
            return results, exc if self.stops_batch(exc) else None
        except Exception as exc:  # a bug in a hook: never lose what the provider took
            logger.exception("%s: send hook failed", self.name)
            error = ProviderError(
                f"{self.name}: send failed unexpectedly ({type(exc).__name__}); "
                + ("the provider may have acted on it." if posted else "nothing was sent."),
                kind=ErrorKind.PROTOCOL,
                maybe_processed=posted,
            )
            return self.results_for_error(error, members), error
        by_ref = {result.reference: result for result in parsed}
        results = []
        for sms in members:
            result = by_ref.get(sms.reference)
            if result is None:
                # The answer did not mention it: it may be with the provider.
                result = unknown_result(
                    sms, f"{self.name}: the provider's answer does not mention this message."
                )
            results.append(result)
        return results, None

    # --- hooks of the send flow (a provider module overrides these) ---------
    #: Recipients one provider call can carry; the flow cuts groups to it.
    max_batch: ClassVar[int] = 1
    #: At most this many provider calls per ``send()`` (0 = no cap). Keeps a
    #: batch of personalised texts (one call per distinct body) well inside
    #: the task timeout; the chunks beyond it come back ``NOT_ATTEMPTED``
    #: (kind ``deferred``) and go in the next batch.
    max_calls_per_send: ClassVar[int] = 25
    #: Path :meth:`post` POSTs the JSON payload to, when not overridden.
    send_path: ClassVar[str] = ""

    def check_message(self, sms: OutboundSms) -> None:
        """Raise a permanent :class:`ProviderError` (kind ``validation``) if
        ``sms`` cannot be sent at all through this provider; it is then
        refused alone (``REFUSED_PERMANENT``, status ``rejected``) and never
        reaches a call. Default: the destination must be an international
        number (:func:`to_msisdn`). Must not make HTTP calls."""
        to_msisdn(sms.to)

    def group_key(self, sms: OutboundSms) -> Hashable:
        """Messages with equal keys may travel in one provider call. Default:
        same body, sender and schedule (one text to many recipients). A
        provider whose call carries a different text per recipient returns
        a constant; one that takes a single recipient per call leaves
        ``max_batch = 1``."""
        return (sms.body, sms.sender, sms.send_at)

    def build_payload(self, batch: list[OutboundSms]) -> Any:
        """The request body of one provider call for ``batch`` (1 to
        ``max_batch`` messages sharing one :meth:`group_key`). Numbers are
        converted to the provider's format here, senders through
        :meth:`format_sender`, our ``reference`` passed where the provider
        keeps one. Raise :class:`ProviderError` (permanent, ``validation``)
        for a chunk that cannot be expressed; no HTTP here."""
        raise UnsupportedOperation(self.name, "send")

    def post(self, payload: Any, batch: list[OutboundSms]) -> Any:
        """Make the provider call for ``payload`` and return the decoded
        answer. Default: ``POST send_path`` as JSON through :meth:`request`
        with ``operation="send"``. Override to choose the path per chunk,
        send a form, or authenticate first, but always call
        :meth:`request` (it applies the pacer, timeouts, error
        classification and :meth:`error_in_answer`). Raises
        :class:`ProviderError` for a refused or failed call."""
        if not self.send_path:
            raise UnsupportedOperation(self.name, "send")
        return self.request("POST", self.send_path, json_body=payload, operation="send")

    def error_in_answer(self, answer: Any, *, operation: str) -> ProviderError | None:
        """The error hidden in a successful (2xx) answer, or ``None``.

        Called by :meth:`request` for every 2xx answer of every operation,
        with the decoded body. Providers that report failures inside HTTP 200
        (a JSON-RPC ``error`` object, ``error.code`` other than ``SUCCESS``,
        a negative ``Code``) return a :class:`ProviderError` with the right
        ``kind`` (an :class:`ErrorKind`), ``permanent`` and ``code`` (the
        provider's own); :meth:`request` raises it. Return ``None`` for an
        answer that reports success, including one that accepts some
        recipients and refuses others: those refusals are per message and
        belong to :meth:`parse_results`. ``maybe_processed`` stays false:
        the provider said it did not do it."""
        return None

    def parse_results(self, answer: Any, batch: list[OutboundSms]) -> list[SendResult]:
        """One :class:`SendResult` per message of ``batch`` from the answer of
        a successful call, each with an explicit ``outcome``: use
        :func:`accepted_result` for accepted ones (with the provider's id)
        and :func:`refused_result` for recipients the answer refuses (e.g.
        an ``invalid`` list, an opt-out wash: ``ErrorKind.OPTED_OUT``, which
        the engine records as ``skipped`` and does not charge). A message the
        answer does not mention becomes ``UNKNOWN`` (the base fills it in).
        Raise :class:`ProviderError` when the answer cannot be read (e.g.
        no id): the whole chunk becomes ``UNKNOWN``, to be reconciled."""
        raise UnsupportedOperation(self.name, "send")

    def results_for_error(self, error: ProviderError, batch: list[OutboundSms]) -> list[SendResult]:
        """The results of ``batch`` when its call failed with ``error``
        (see :func:`error_result` for the mapping). Override only to refine
        it per message; the outcome's meaning must stay the same."""
        return [error_result(sms, error) for sms in batch]

    def stops_batch(self, error: ProviderError) -> bool:
        """Whether a call failing with ``error`` ends the batch (the chunks not
        tried come back ``NOT_ATTEMPTED``). Default:
        :func:`error_stops_batch`. Override only for provider codes that
        concern one message although they look transient."""
        return error_stops_batch(error)

    def format_sender(self, sender: str) -> str:
        """``sender`` as this provider wants it (e.g. a numeric sender
        without ``+``). Default: stripped, unchanged."""
        return (sender or "").strip()

    # ----------------------------------------------------------- operations
    def fetch_statuses(self, refs: list[ProviderRef]) -> list[StatusUpdate]:
        raise UnsupportedOperation(self.name, "status polling")

    def lookup_by_reference(
        self, references: list[str], *, numbers: Mapping[str, str] | None = None
    ) -> list[SendResult]:
        """For crash recovery: what the provider knows of messages sent with
        our ``references`` (``numbers`` maps each reference to its E.164
        destination, for providers that need it). Missing ones are absent."""
        raise UnsupportedOperation(self.name, "lookup by reference")

    def fetch_replies(self) -> list[InboundSms]:
        raise UnsupportedOperation(self.name, "reply polling")

    def verify_webhook(self, request) -> None:
        """Raise :class:`WebhookForbidden` unless ``request`` (a Django
        HttpRequest) comes from the provider. Called by the webhook view after
        the account's URL token matched (always, in constant time) and
        before :meth:`parse_webhook`. Default: the token is all the provider
        offers. A provider that signs its calls checks the signature here
        (:func:`hmac_signature_valid`, a secret from the credentials); when a
        secret is configured a missing signature is forged."""

    def parse_webhook(self, request) -> list[StatusUpdate | InboundSms]:
        """Parse a webhook request (a Django HttpRequest) into updates.

        Raises :class:`WebhookError` for a body that is not what the provider sends.
        """
        raise UnsupportedOperation(self.name, "webhooks")

    def webhook_response(self, request):
        """The HttpResponse the provider expects after a webhook was handled."""
        from django.http import HttpResponse

        return HttpResponse("OK", content_type="text/plain")

    def balance(self) -> Decimal:
        raise UnsupportedOperation(self.name, "balance")

    def senders(self) -> list[SenderOption]:
        """The senders the provider accepts for this account (capability
        "senders"): its numbers and approved sender IDs. An empty list names
        none: any sender the format rules allow may be tried (the provider
        has the last word)."""
        raise UnsupportedOperation(self.name, "sender listing")

    def account_settings(self) -> AccountSettings:
        """The account's settings at the provider (capability
        ``account_settings``), cached on the account and used by the quote."""
        raise UnsupportedOperation(self.name, "account settings")

    def top_up(self, credits: Decimal) -> Decimal:
        """Add credits to this (sub-)account at the provider; returns the new balance."""
        raise UnsupportedOperation(self.name, "top-up")

    # The provider's own opt-out list (capability "optouts"), which it washes
    # every send against; kept in step with the local opt-outs by
    # campaigns.provider_optouts.
    def optouts_list(self) -> list[RemoteOptOut]:
        raise UnsupportedOperation(self.name, "opt-out list")

    def optouts_remove(self, numbers: list[str]) -> None:
        """Take ``numbers`` (E.164) off the provider's opt-out list: they were
        opted back in here, and the provider would otherwise keep dropping
        them. Numbers not on the list are no error."""
        raise UnsupportedOperation(self.name, "opt-in at the provider")


class WebhookError(ValueError):
    """A webhook body we cannot read; the view answers 400 with this text."""


class WebhookForbidden(Exception):
    """A webhook call that is not the provider's (a bad or missing
    signature); the view answers 403 and reads nothing."""
