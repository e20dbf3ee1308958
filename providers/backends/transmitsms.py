"""TransmitSMS / Burst SMS (https://api.transmitsms.com/), per ``transmitsms.txt``.

Every call is ``<method>.json``, form encoded, with Basic auth
``api_key:secret``; every answer carries ``error: {code, description}``
(``SUCCESS`` on success, else the doc's error constants, also inside an
HTTP 200).

How our model maps onto theirs:

- ``send-sms`` takes one text to up to 500 comma-separated numbers and
  answers one ``message_id`` for them all (no per-recipient id and no field
  for our reference). A message's ``provider_ref`` is therefore
  ``"<message_id>-<msisdn>"`` and its ``provider_batch_ref`` the
  ``message_id``; delivery callbacks carry ``message_id`` and ``mobile``, so
  they name the same pair. As nothing finds a send by our reference,
  ``lookup_by_reference`` is not offered: a send whose answer was lost stays
  ``unknown`` for a person to check, never re-sent blindly.
- Delivery reports and replies arrive as GET callbacks to the
  ``dlr_callback`` / ``reply_callback`` URLs passed with every send (our
  webhook URLs, ``self.webhook_urls``); ``get-sms-sent`` (paged) and
  ``get-user-sms-responses`` poll the same information. A reply with
  ``is_optout=yes`` is an opt-out whatever its text.
- The provider allows 2 calls per second per account (``OVER_LIMIT``, HTTP
  429, beyond). ``max_requests_per_second`` declares it, so the engine's
  shared pacer (:mod:`campaigns.pacing`) books one slot per batch across all
  workers; on top of that an instance never makes two calls less than half
  a second apart (pages of one poll, chunks of one send), unless the caller
  gave it a pacer, which then paces every call.
- Reseller calls (``add-client``, ``edit-client``, ``get-client``,
  ``get-clients``, ``get-transactions``) are thin methods here; the glue that
  mirrors our sub-accounts is :mod:`providers.reseller_sync`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from providers.backends.base import (
    Capability,
    DeliveryStatus,
    ErrorKind,
    InboundSms,
    OutboundSms,
    ProviderError,
    ProviderRef,
    ReplyCursor,
    SendResult,
    SmsBackend,
    StatusUpdate,
    WebhookError,
    accepted_result,
    basic_auth_token,
    map_status,
    parse_local_datetime,
    parse_retry_after,
    to_e164,
    to_msisdn,
)

logger = logging.getLogger("providers.backends.transmitsms")

S = DeliveryStatus

#: The doc's error table: code → (HTTP status it comes with, kind, permanent).
#: ``OVER_LIMIT``: the request was dropped (nothing done), to be made again later.
ERROR_CODES: dict[str, tuple[int, str, bool]] = {
    "AUTH_FAILED_NO_DATA": (401, ErrorKind.AUTH, True),  # no auth data
    "AUTH_FAILED": (401, ErrorKind.AUTH, True),  # auth data invalid
    "NOT_IMPLEMENTED": (404, ErrorKind.UNSUPPORTED, True),  # method unsupported
    "OVER_LIMIT": (429, ErrorKind.RATE_LIMIT, False),  # request limit exceeded
    "FIELD_EMPTY": (400, ErrorKind.VALIDATION, True),  # required field empty
    "FIELD_INVALID": (400, ErrorKind.VALIDATION, True),  # field has an invalid format
    # "You do not have access to this resource": the account lacks a
    # permission (a sender, a client of another reseller); a person must act.
    "NO_ACCESS": (400, ErrorKind.AUTH, True),
    "KEY_EXISTS": (400, ErrorKind.VALIDATION, True),  # resource with this key exists
    "NOT_FOUND": (400, ErrorKind.NOT_FOUND, True),  # resource with this key not found
}

#: Seconds to wait after ``OVER_LIMIT`` when no Retry-After came with it: the
#: limit is per second.
OVER_LIMIT_WAIT = 1.0

#: ``delivery_status`` of ``get-sms-sent`` and the DLR callback's ``status``.
#: A soft bounce (handset off, out of coverage) is reported once the
#: provider stopped trying; a hard bounce is a number that cannot receive.
STATUS_MAP: dict[str, DeliveryStatus] = {
    "delivered": S.DELIVERED,
    "pending": S.SENT,
    "soft-bounce": S.UNDELIVERED,
    "hard-bounce": S.UNDELIVERED,
}

#: ``max`` of paged calls: "the default is 10, the maximum is 100".
PAGE_MAX = 100
#: A poll reads at most this many pages of one send (5,000 recipients).
MAX_PAGES = 50

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # "All timestamps are in ISO8601 ... always UTC"

# Tests replace these to run the per-instance spacing on a fake clock.
_monotonic = time.monotonic
_sleep = time.sleep


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value not in (None, "") else None
    except (InvalidOperation, ValueError):
        return None


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _msisdn(value: Any) -> str:
    """Digits of a number as the provider writes it (``61400000000``, int or str)."""
    return to_e164(_text(value)).lstrip("+")


def recipient_ref(message_id: Any, mobile: Any) -> str:
    """Our ``provider_ref`` of one recipient of one send."""
    return f"{_text(message_id)}-{_msisdn(mobile)}"


def utc_text(when: datetime) -> str:
    return when.astimezone(UTC).strftime(TIME_FORMAT)


class TransmitSmsBackend(SmsBackend):
    """TransmitSMS. Credentials: ``api_key`` and ``secret`` (the API settings
    page). Our webhook addresses (``webhook_urls``, a ``WebhookUrls``,
    passed as ``dlr_callback`` / ``reply_callback``), ``validity`` (minutes
    a message may wait for delivery; 0 = the provider's default)."""

    name = "transmitsms"
    capabilities = frozenset(
        {
            Capability.SCHEDULE,
            Capability.DLR_POLL,
            Capability.DLR_WEBHOOK,
            Capability.REPLIES_POLL,
            Capability.REPLIES_WEBHOOK,
            Capability.BALANCE,
        }
    )
    #: "to: comma separated, up to 500".
    max_batch = 500
    #: "we limit the number of API calls ... to 2 calls per sec".
    max_requests_per_second = 2
    default_base_url = "https://api.transmitsms.com"
    refunds_failed = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._last_call = 0.0
        self._spacing_lock = threading.Lock()

    # ------------------------------------------------------------ plumbing
    def _key_secret(self) -> tuple[str, str]:
        key = _text(self.credentials.get("api_key") or self.credentials.get("username"))
        secret = _text(self.credentials.get("secret") or self.credentials.get("password"))
        if not key or not secret:
            raise ProviderError(
                "TransmitSMS needs 'api_key' and 'secret' in the account's credentials "
                "(API settings page of your TransmitSMS account).",
                permanent=True,
                kind=ErrorKind.AUTH,
                code="AUTH_FAILED_NO_DATA",
            )
        return key, secret

    def auth_headers(self) -> dict[str, str]:
        key, secret = self._key_secret()
        return {"Authorization": f"Basic {basic_auth_token(key, secret)}"}

    def secrets(self) -> list[str]:
        values = super().secrets()
        key = _text(self.credentials.get("api_key"))
        secret = _text(self.credentials.get("secret"))
        if key and secret:
            values.append(basic_auth_token(key, secret))
        return sorted(set(values), key=len, reverse=True)

    def _space_calls(self) -> None:
        """At most ``max_requests_per_second`` calls per second from this
        instance when no pacer was given (several calls of one operation)."""
        gap = 1.0 / self.max_requests_per_second
        with self._spacing_lock:
            wait = self._last_call + gap - _monotonic()
            if self._last_call and wait > 0:
                _sleep(wait)
            self._last_call = _monotonic()

    def call(self, method: str, params: Mapping[str, Any], *, operation: str) -> dict[str, Any]:
        """``POST /<method>.json`` with ``params`` form encoded; the decoded
        answer, or :class:`ProviderError` (also for an error in a 200)."""
        data = {k: v for k, v in params.items() if v is not None and v != ""}
        if self.pacer is None:
            self._space_calls()
        answer = self.request("POST", f"/{method}.json", data=data, operation=operation)
        if not isinstance(answer, Mapping):
            raise ProviderError(
                f"TransmitSMS {method}: the answer is not a JSON object: {str(answer)[:200]!r}.",
                kind=ErrorKind.PROTOCOL,
                maybe_processed=operation == "send",
            )
        return dict(answer)

    def error_details(self, body: Any) -> tuple[str, str]:
        if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
            error = body["error"]
            return _text(error.get("code")), _text(error.get("description"))
        return super().error_details(body)

    def code_error(
        self,
        code: str,
        description: str,
        *,
        status_code: int | None,
        retry_after: float | None = None,
    ) -> ProviderError:
        """The ProviderError for an ``error.code`` other than ``SUCCESS``."""
        said = self.scrub(description)[:300]
        if code in ERROR_CODES:
            _status, kind, permanent = ERROR_CODES[code]
        elif code.startswith("AUTH_FAILED"):
            kind, permanent = ErrorKind.AUTH, True
        elif status_code is not None and status_code >= 500:
            kind, permanent = ErrorKind.UNAVAILABLE, False
        elif any(word in code for word in ("BALANCE", "CREDIT", "FUNDS")):
            # Custom method errors are not listed in the excerpt (unverified):
            # a code about money is treated as an empty account.
            kind, permanent = ErrorKind.CREDIT, True
        else:
            kind, permanent = ErrorKind.VALIDATION, True
        if kind == ErrorKind.RATE_LIMIT and retry_after is None:
            retry_after = OVER_LIMIT_WAIT
        what = f" ({said})" if said else ""
        hints: dict[str, str] = {
            ErrorKind.AUTH: " Check the account's api_key and secret.",
            ErrorKind.RATE_LIMIT: " The request was dropped; it is made again later.",
        }
        hint = hints.get(kind, "")
        return ProviderError(
            f"TransmitSMS error {code}{what}.{hint}",
            code=code,
            permanent=permanent,
            kind=kind,
            retry_after=retry_after if not permanent else None,
            status_code=status_code,
        )

    def classify_http_error(self, response: httpx.Response, body: Any) -> ProviderError:
        code, description = self.error_details(body)
        if code and code != "SUCCESS":
            return self.code_error(
                code,
                description,
                status_code=response.status_code,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        error = super().classify_http_error(response, body)
        if response.status_code == 429 and error.retry_after is None:
            error.retry_after = OVER_LIMIT_WAIT
        return error

    def error_in_answer(self, answer: Any, *, operation: str) -> ProviderError | None:
        code, description = self.error_details(answer)
        if not code or code == "SUCCESS":
            return None
        return self.code_error(code, description, status_code=None)

    # ---------------------------------------------------------------- send
    def format_sender(self, sender: str) -> str:
        """A numeric sender travels as international digits; alphanumeric as is."""
        value = (sender or "").strip()
        digits = value.lstrip("+").replace(" ", "")
        return digits if digits.isdigit() else value

    def _callbacks(self) -> dict[str, str]:
        return {
            "dlr_callback": _text(self.webhook_urls.status),
            "reply_callback": _text(self.webhook_urls.inbound),
        }

    def build_payload(self, batch: list[OutboundSms]) -> dict[str, Any]:
        first = batch[0]
        payload: dict[str, Any] = {
            "message": first.body,
            "to": ",".join(to_msisdn(sms.to) for sms in batch),
        }
        sender = self.format_sender(first.sender)
        if sender:
            payload["from"] = sender
        if first.send_at is not None:
            payload["send_at"] = utc_text(first.send_at)
        validity = (
            self.options.get("validity_minutes")
            or self.options.get("validity")
            or self.credentials.get("validity")
        )
        if validity:
            payload["validity"] = int(validity)
        callbacks = self._callbacks()
        if callbacks["dlr_callback"]:
            # Our reference of the call's first message rides on the callback
            # URL: a report that comes before the send is recorded then finds
            # its message (by reference and number) and is asked to retry.
            url = callbacks["dlr_callback"]
            callbacks["dlr_callback"] = f"{url}{'&' if '?' in url else '?'}ref={first.reference}"
        payload.update({k: v for k, v in callbacks.items() if v})
        return payload

    def post(self, payload: Any, batch: list[OutboundSms]) -> Any:
        return self.call("send-sms", payload, operation="send")

    def parse_results(self, answer: Any, batch: list[OutboundSms]) -> list[SendResult]:
        """``{message_id, send_at, recipients, cost, sms}``: every number of
        the call is with the provider under ``message_id``."""
        message_id = _text(answer.get("message_id")) if isinstance(answer, Mapping) else ""
        if not message_id:
            raise ProviderError(
                f"TransmitSMS send-sms answered without a message_id: {str(answer)[:200]!r}.",
                kind=ErrorKind.PROTOCOL,
                maybe_processed=True,
            )
        recipients = answer.get("recipients")
        if recipients is not None and str(recipients).isdigit() and int(recipients) < len(batch):
            # The doc gives no way to tell which numbers were dropped; the
            # status poll and callbacks will only ever report the others.
            logger.warning(
                "TransmitSMS send %s took %s of %s numbers.", message_id, recipients, len(batch)
            )
        cost = _decimal(answer.get("cost"))
        status = S.QUEUED if batch[0].send_at is not None else S.SENT
        return [
            accepted_result(
                sms,
                provider_ref=recipient_ref(message_id, to_msisdn(sms.to)),
                provider_batch_ref=message_id,
                status=status,
                raw_status="SUCCESS",
                credits=cost / len(batch) if cost is not None else None,
            )
            for sms in batch
        ]

    # ------------------------------------------------------------ receipts
    def report(
        self, message_id: Any, mobile: Any, raw: Any, when: Any = None, **extra: Any
    ) -> StatusUpdate:
        raw_status = _text(raw).lower()
        return StatusUpdate(
            status=map_status(STATUS_MAP, raw_status),
            provider_ref=recipient_ref(message_id, mobile),
            to=to_e164(_msisdn(mobile)),
            raw_status=raw_status,
            occurred_at=parse_local_datetime(when),
            **extra,
        )

    def sent_page(self, message_id: str, page: int = 1) -> dict[str, Any]:
        """One page of ``get-sms-sent`` (recipients with ``delivery_status``)."""
        return self.call(
            "get-sms-sent",
            {"message_id": message_id, "page": page, "max": PAGE_MAX},
            operation="status",
        )

    def fetch_statuses(self, refs: list[ProviderRef]) -> list[StatusUpdate]:
        """Reports for ``refs``: ``get-sms-sent`` of each send, page by page
        until every asked number was seen (or the last page). Numbers still
        ``pending`` come back ``sent``; a send the provider does not know
        (``NOT_FOUND``) is skipped with a warning."""
        wanted: dict[str, dict[str, ProviderRef]] = {}
        for ref in refs:
            message_id = ref.provider_batch_ref or ref.provider_ref.split("-", 1)[0]
            mobile = _msisdn(ref.to) if ref.to else ref.provider_ref.partition("-")[2]
            if message_id and mobile:
                wanted.setdefault(message_id, {})[mobile] = ref
        updates: list[StatusUpdate] = []
        for message_id, numbers in wanted.items():
            left = set(numbers)
            for page in range(1, MAX_PAGES + 1):
                try:
                    answer = self.sent_page(message_id, page)
                except ProviderError as exc:
                    if exc.kind == ErrorKind.NOT_FOUND:
                        logger.warning("TransmitSMS: send %s unknown: %s", message_id, exc)
                        break
                    raise
                for item in answer.get("recipients") or []:
                    if not isinstance(item, Mapping):
                        continue
                    mobile = _msisdn(item.get("mobile"))
                    if mobile in left:
                        left.discard(mobile)
                        ref = numbers[mobile]
                        updates.append(
                            self.report(
                                message_id,
                                mobile,
                                item.get("delivery_status"),
                                item.get("delivery_at") or item.get("datetime"),
                                reference=ref.reference,
                            )
                        )
                pages = answer["page"] if isinstance(answer.get("page"), Mapping) else {}
                count = int(_decimal(pages.get("count")) or 1)
                if not left or page >= count:
                    break
        return updates

    # ------------------------------------------------------------- replies
    def reply(self, item: Mapping[str, Any]) -> InboundSms | None:
        """A reply of ``get-user-sms-responses`` or of the reply callback."""
        sender = _text(item.get("mobile") or item.get("msisdn"))
        if not sender:
            return None
        text = _text(item.get("response")) if item.get("response") is not None else ""
        received = item.get("datetime_entry") or item.get("received_at") or item.get("datetime")
        reply_id = _text(item.get("response_id") or item.get("id"))
        if not reply_id:
            digest = hashlib.sha256(f"{sender}\0{received}\0{text}".encode()).hexdigest()[:16]
            reply_id = f"{_text(item.get('message_id')) or '-'}-{digest}"
        message_id = _text(item.get("message_id"))
        raw = {str(k): v for k, v in item.items() if str(k).lower() not in ("api_key", "secret")}
        return InboundSms(
            from_number=to_e164(_msisdn(sender)),
            body=text,
            received_at=parse_local_datetime(received) or datetime.now(UTC),
            provider_ref=reply_id,
            to_number=to_e164(_msisdn(item.get("longcode"))) if item.get("longcode") else "",
            in_reply_to_provider_ref=recipient_ref(message_id, sender) if message_id else "",
            raw=raw,
            opt_out=_text(item.get("is_optout")).lower() == "yes",
        )

    def _reply_cursor_key(self) -> str:
        who = self.account_key or hashlib.sha256(self._key_secret()[0].encode()).hexdigest()[:16]
        return f"smsoffice:transmitsms:replies:{who}"

    def fetch_replies(self) -> list[InboundSms]:
        """``get-user-sms-responses`` since the last poll (minus an overlap;
        a reply is stored once per id), every page."""
        cursor = ReplyCursor(self._reply_cursor_key())
        start, now = cursor.window()
        replies = self.replies(start=start, end=now)
        cursor.advance(now)
        return replies

    def replies(self, *, start: datetime, end: datetime) -> list[InboundSms]:
        found: list[InboundSms] = []
        for page in range(1, MAX_PAGES + 1):
            answer = self.call(
                "get-user-sms-responses",
                {"start": utc_text(start), "end": utc_text(end), "page": page, "max": PAGE_MAX},
                operation="replies",
            )
            for item in answer.get("responses") or []:
                reply = self.reply(item) if isinstance(item, Mapping) else None
                if reply is not None:
                    found.append(reply)
            pages = answer["page"] if isinstance(answer.get("page"), Mapping) else {}
            if page >= int(_decimal(pages.get("count")) or 1):
                break
        return found

    # ------------------------------------------------------------ webhooks
    def parse_webhook(self, request) -> list[StatusUpdate | InboundSms]:
        """A GET callback: a delivery report (``message_id, mobile, datetime,
        status, user_id``) or a reply (``message_id, mobile, longcode,
        datetime_entry, response, response_id, is_optout``). Raises
        WebhookError naming what is missing. The provider retries failed
        callbacks; applying one twice changes nothing."""
        source = request.GET if request.GET else request.POST
        params = {str(k).lower(): v for k, v in source.items()}
        if not _text(params.get("mobile")) or not _msisdn(params.get("mobile")).isdigit():
            raise WebhookError(
                "TransmitSMS callback without a 'mobile' number; expected a delivery report "
                "(message_id, mobile, status) or a reply (mobile, response)."
            )
        if "response" in params or "response_id" in params:
            reply = self.reply(params)
            return [reply] if reply is not None else []
        if not _text(params.get("message_id")) or not _text(params.get("status")):
            missing = [k for k in ("message_id", "status") if not _text(params.get(k))]
            raise WebhookError(f"TransmitSMS delivery report without {' and '.join(missing)}.")
        return [
            self.report(
                params["message_id"],
                params["mobile"],
                params["status"],
                params.get("datetime"),
                reference=_text(params.get("ref")),
            )
        ]

    # ------------------------------------------------------------- credits
    def balance(self) -> Decimal:
        """``get-balance`` → ``{balance, currency}``."""
        answer = self.call("get-balance", {}, operation="balance")
        value = _decimal(answer.get("balance"))
        if value is None:
            raise ProviderError(
                "TransmitSMS get-balance: the answer has no balance.", kind=ErrorKind.PROTOCOL
            )
        return value

    # ------------------------------------------------------------ reseller
    def get_clients(self, *, page: int = 1) -> dict[str, Any]:
        return self.call(
            "get-clients", {"page": page, "max": PAGE_MAX}, operation="reseller clients"
        )

    def get_client(self, client_id: str | int) -> dict[str, Any]:
        return self.call("get-client", {"client_id": client_id}, operation="reseller client")

    def add_client(self, **fields: Any) -> dict[str, Any]:
        """``add-client`` (``name``, ``email``, ``password``, ``msisdn``, ...)."""
        return self.call("add-client", fields, operation="reseller add client")

    def edit_client(self, client_id: str | int, **fields: Any) -> dict[str, Any]:
        return self.call(
            "edit-client", {"client_id": client_id, **fields}, operation="reseller edit client"
        )

    def get_transactions(self, client_id: str | int, *, page: int = 1) -> dict[str, Any]:
        return self.call(
            "get-transactions",
            {"client_id": client_id, "page": page, "max": PAGE_MAX},
            operation="reseller transactions",
        )
