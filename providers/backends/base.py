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
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    PAUSE = "pause"
    CANCEL = "cancel"
    DLR_POLL = "dlr_poll"
    DLR_WEBHOOK = "dlr_webhook"
    REPLIES_POLL = "replies_poll"
    REPLIES_WEBHOOK = "replies_webhook"
    BALANCE = "balance"
    TOPUP = "topup"
    OPTOUTS = "optouts"
    LISTS = "lists"
    LOOKUP_BY_REFERENCE = "lookup_by_reference"


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


def batch_stop_error(results: Sequence[SendResult]) -> ProviderError | None:
    """The account-wide error hidden in ``results``, if any.

    A backend's ``send()`` reports per message; when one message is refused or
    not attempted for a reason that concerns the whole account (bad
    credentials, no credit at the provider, a 429 with Retry-After), the
    engine must react once for the batch: pause the campaign (auth, credit)
    or hold the account off for ``retry_after`` (rate limit). Returns that
    error (auth before credit before rate limit, the longest Retry-After), or
    ``None``. The engine and the backend contract share this one reading.

    Contract for backends: a message held back because of such an error is
    reported ``NOT_ATTEMPTED`` with that ``error_kind`` (and ``retry_after``
    for a 429), never ``REFUSED_PERMANENT``: it was not the message's fault,
    and it is sent once the account is fixed or the wait is over.
    """
    found: dict[str, SendResult] = {}
    for result in results:
        if result.outcome == SendOutcome.ACCEPTED or result.error_kind not in BATCH_STOPPING_KINDS:
            continue
        kept = found.get(result.error_kind)
        if kept is None or (result.retry_after or 0) > (kept.retry_after or 0):
            found[result.error_kind] = result
    for kind in (ErrorKind.AUTH, ErrorKind.CREDIT, ErrorKind.RATE_LIMIT):
        result = found.get(kind)
        if result is not None:
            return ProviderError(
                result.error_message or result.raw_status or f"{kind} error from the provider",
                code=result.error_code,
                permanent=kind != ErrorKind.RATE_LIMIT,
                retry_after=result.retry_after,
                kind=str(kind),
            )
    return None


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


@dataclass(frozen=True, slots=True)
class ProviderRef:
    """Identifies a sent message at the provider, for status polling or cancel."""

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


@dataclass(frozen=True, slots=True)
class RemoteOptOut:
    """A number on the provider's own opt-out list (capability "optouts")."""

    number: str  # E.164 with "+"
    added_at: datetime | None = None
    reason: str = ""
    text: str = ""


@dataclass(frozen=True, slots=True)
class RemoteList:
    """A contact list stored at the provider (capability "lists")."""

    list_id: str
    name: str
    count: int = 0


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


SECRET_KEYS = ("password", "secret", "key", "token", "authorization", "api_key", "apikey")


def redact(data: Any) -> Any:
    """A copy of ``data`` with every credential-looking value replaced."""
    if isinstance(data, Mapping):
        return {
            k: "***" if any(s in str(k).lower() for s in SECRET_KEYS) else redact(v)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [redact(v) for v in data]
    return data


class SmsBackend:
    """Base class of every provider backend.

    Subclasses set ``name``, ``capabilities``, ``max_batch``,
    ``default_base_url`` and implement the operations they support; the
    others raise :class:`UnsupportedOperation`. Use :meth:`request` for all
    HTTP: it applies timeouts, auth, decoding and error classification.
    Body length and sender rules are not here: they are in
    :func:`providers.limits.limits_for` (one table, from the providers' docs).
    """

    name: ClassVar[str] = ""
    capabilities: ClassVar[frozenset[str]] = frozenset()
    max_batch: ClassVar[int] = 1
    default_base_url: ClassVar[str] = ""
    #: Provider's own cap on API calls per second (0 = none documented).
    max_requests_per_second: ClassVar[float] = 0
    #: Minimum seconds between two reply polls (SMS Everyone: 60).
    min_reply_poll_interval: ClassVar[float] = 0
    #: Whether the provider returns credits for undelivered/expired/rejected.
    refunds_failed: ClassVar[bool] = False

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
        **options: Any,
    ) -> None:
        self.credentials = dict(credentials or {})
        self.pacer = pacer
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
            values.append(base64.b64encode(f"{user}:{password}".encode()).decode("ascii"))
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
        for the other 4xx after :meth:`classify_http_error` had its say.
        """
        all_headers = {**self.auth_headers(), **(headers or {})}
        where = f"{self.name}: {method} {path}"
        if self.pacer is not None:
            # May sleep, or raise a ProviderError (DEFERRED / RATE_LIMIT) so
            # this call is never made.
            self.pacer(operation)
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
            return body
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

    # ----------------------------------------------------------- operations
    def send(self, batch: list[OutboundSms]) -> list[SendResult]:
        """Send up to ``max_batch`` messages; one SendResult per input, same order.

        A refusal of the whole call raises ProviderError; a refusal of some
        recipients comes back as results with ``accepted=False``.
        """
        raise UnsupportedOperation(self.name, "send")

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

    def top_up(self, credits: Decimal) -> Decimal:
        """Add credits to this (sub-)account at the provider; returns the new balance."""
        raise UnsupportedOperation(self.name, "top-up")

    # Cancel/pause/resume act on what the provider holds on a schedule. When
    # the provider groups messages (``provider_batch_ref``), they act on the
    # whole group; callers call them once per distinct group.
    def cancel(self, ref: ProviderRef) -> None:
        raise UnsupportedOperation(self.name, "cancel")

    def pause(self, ref: ProviderRef) -> None:
        raise UnsupportedOperation(self.name, "pause")

    def resume(self, ref: ProviderRef) -> None:
        raise UnsupportedOperation(self.name, "resume")

    # Provider-side opt-outs (capability "optouts"). Numbers are E.164 with "+".
    def optouts_add(self, numbers: list[str]) -> None:
        raise UnsupportedOperation(self.name, "opt-out management")

    def optouts_remove(self, numbers: list[str]) -> None:
        raise UnsupportedOperation(self.name, "opt-out management")

    def optouts_list(self) -> list[RemoteOptOut]:
        raise UnsupportedOperation(self.name, "opt-out management")

    # Provider-side contact lists (capability "lists").
    def lists_list(self) -> list[RemoteList]:
        raise UnsupportedOperation(self.name, "lists")

    def list_numbers(self, list_id: str) -> list[str]:
        raise UnsupportedOperation(self.name, "lists")

    def list_create(self, name: str, numbers: list[str]) -> str:
        """Create a list; returns its provider id."""
        raise UnsupportedOperation(self.name, "lists")

    def list_add_numbers(self, list_id: str, numbers: list[str]) -> None:
        raise UnsupportedOperation(self.name, "lists")

    def list_remove_numbers(self, list_id: str, numbers: list[str]) -> None:
        raise UnsupportedOperation(self.name, "lists")

    def list_delete(self, list_id: str) -> None:
        raise UnsupportedOperation(self.name, "lists")


class WebhookError(ValueError):
    """A webhook body we cannot read; the view answers 400 with this text."""
