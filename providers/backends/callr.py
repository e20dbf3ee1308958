"""CALLR (JSON-RPC 2.0, https://api.callr.com/json-rpc/v1.1/), per ``callr.txt``.

Every call is a POST of ``{"jsonrpc": "2.0", "id": N, "method": ..., "params":
[...]}`` to the one endpoint, with Basic auth ``login:password``. The answer
is ``{"result": ...}`` or ``{"error": {"code", "message"}}``, the latter
usually inside HTTP 200: :meth:`CallrBackend.error_in_answer` turns it into a
:class:`ProviderError`, so the base send flow gives the message the outcome
of that error.

How our model maps onto theirs:

- ``sms.send`` carries one recipient (``params: [from, to, body, options]``)
  and returns the SMS hash, our ``provider_ref``. ``options.user_data`` is
  our reference, ``options.webhook.endpoint`` our status webhook URL and
  ``options.nature`` ``MARKETING`` (campaigns; option ``nature`` to change).
- ``%STOPNUM%`` (replaced by CALLR's STOP number) is accepted in a body only
  with a custom sender, as the doc allows; without one it would be sent as
  typed, so such a message is refused before any call.
- ``sms.get`` polls statuses, ``sms.search`` finds replies and, after a
  crash, the messages sent with our reference (``user_data``). The search
  filter fields are not in the excerpt (unverified): an answer that does not
  look filtered never counts as "not sent", so nothing is sent twice.
- Webhooks ``sms.mt.status_update`` and ``sms.mo`` are JSON POSTs; when the
  account's credentials hold ``webhook_secret``, ``X-CALLR-HmacSignature``
  (base64 HMAC-SHA256 of the body) must match or nothing is read.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

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
    WebhookForbidden,
    accepted_result,
    basic_auth_token,
    hmac_signature_valid,
    map_status,
    parse_local_datetime,
    to_e164,
    to_msisdn,
)

logger = logging.getLogger("providers.backends.callr")

S = DeliveryStatus

#: The README's status list: PENDING/CREATED (queued), SENT/REMOTE_QUEUED
#: (sent), RECEIVED (delivered to the handset), ERROR (rejected), FAILED,
#: EXPIRED.
STATUS_MAP: dict[str, DeliveryStatus] = {
    "PENDING": S.QUEUED,
    "CREATED": S.QUEUED,
    "SENT": S.SENT,
    "REMOTE_QUEUED": S.SENT,
    "RECEIVED": S.DELIVERED,
    "ERROR": S.REJECTED,
    "FAILED": S.FAILED,
    "EXPIRED": S.EXPIRED,
}

#: JSON-RPC 2.0's own error codes: code → (kind, permanent).
JSONRPC_ERRORS: dict[int, tuple[str, bool]] = {
    -32700: (ErrorKind.PROTOCOL, True),  # parse error: our request is not JSON
    -32600: (ErrorKind.VALIDATION, True),  # invalid request
    -32601: (ErrorKind.UNSUPPORTED, True),  # method not found
    -32602: (ErrorKind.VALIDATION, True),  # invalid params (number, sender, body)
    -32603: (ErrorKind.UNAVAILABLE, False),  # internal error
}
#: "-32000 to -32099: reserved for implementation-defined server-errors".
SERVER_ERRORS = range(-32099, -31999)

#: Words of CALLR's own error names (not in the excerpt: unverified) that
#: say the account, not the message, is the problem.
AUTH_WORDS = ("AUTH", "LOGIN", "PASSWORD", "ACCESS_DENIED", "FORBIDDEN")
CREDIT_WORDS = ("BALANCE", "CREDIT", "FUNDS", "PREPAID")

MAX_BODY = 3200  # "Max length = 3200 characters."
MAX_SENDER = 11  # "Max length = 11 characters."
SENDER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_")
STOPNUM = "%STOPNUM%"
#: Senders that are not custom: empty (a shared shortcode) and CALLR's "SMS".
SHARED_SENDERS = frozenset({"", "SMS"})

SEARCH_PAGE = 100
MAX_SEARCH_PAGES = 20
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # the doc's datetime format, UTC

_ids = itertools.count(1)


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _items(result: Any) -> list[Mapping[str, Any]]:
    """The SMS objects of a ``Search.Results`` (its shape is not in the
    excerpt: a bare list, or a list under ``data``/``results``/``items``)."""
    if isinstance(result, list):
        return [item for item in result if isinstance(item, Mapping)]
    if isinstance(result, Mapping):
        for key in ("data", "results", "items", "list"):
            if isinstance(result.get(key), list):
                return [item for item in result[key] if isinstance(item, Mapping)]
    return []


class CallrBackend(SmsBackend):
    """CALLR. Credentials: ``login`` and ``password`` (Basic auth), optionally
    ``webhook_secret`` (the secret set on the webhook, to check signatures).
    Our status webhook address (``self.webhook_urls.status``) goes in
    ``webhook.endpoint``. Options: ``nature`` (``MARKETING`` by default, or ``ALERTING``)."""

    name = "callr"
    capabilities = frozenset(
        {
            Capability.DLR_POLL,
            Capability.DLR_WEBHOOK,
            Capability.REPLIES_POLL,
            Capability.REPLIES_WEBHOOK,
            Capability.LOOKUP_BY_REFERENCE,
        }
    )
    #: ``sms.send`` takes one recipient.
    max_batch = 1
    default_base_url = "https://api.callr.com/json-rpc/v1.1"
    refunds_failed = False

    # ------------------------------------------------------------ plumbing
    def _login(self) -> tuple[str, str]:
        login = _text(self.credentials.get("login") or self.credentials.get("username"))
        password = _text(self.credentials.get("password"))
        if not login or not password:
            raise ProviderError(
                "CALLR needs 'login' and 'password' in the account's credentials.",
                permanent=True,
                kind=ErrorKind.AUTH,
            )
        return login, password

    def auth_headers(self) -> dict[str, str]:
        login, password = self._login()
        return {"Authorization": f"Basic {basic_auth_token(login, password)}"}

    def secrets(self) -> list[str]:
        values = super().secrets()
        login = _text(self.credentials.get("login"))
        password = _text(self.credentials.get("password"))
        if login and password:
            values.append(basic_auth_token(login, password))
        return sorted(set(values), key=len, reverse=True)

    def rpc(self, method: str, params: list[Any], *, operation: str) -> Any:
        """One JSON-RPC call; its ``result``, or :class:`ProviderError`."""
        envelope = {"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": params}
        answer = self.request("POST", "/", json_body=envelope, operation=operation)
        if not isinstance(answer, Mapping) or "result" not in answer:
            raise ProviderError(
                f"CALLR {method}: the answer has no result: {self.scrub(str(answer)[:200])!r}.",
                kind=ErrorKind.PROTOCOL,
                maybe_processed=operation == "send",
            )
        return answer["result"]

    def error_details(self, body: Any) -> tuple[str, str]:
        if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
            error = body["error"]
            return _text(error.get("code")), _text(error.get("message"))
        return super().error_details(body)

    def rpc_error(self, code: str, message: str, *, status_code: int | None) -> ProviderError:
        """The ProviderError for a JSON-RPC ``error`` object."""
        try:
            number = int(code)
        except ValueError:
            number = None
        said = self.scrub(message)[:300]
        name = f"{code} {said}".upper()
        if number in JSONRPC_ERRORS:
            kind, permanent = JSONRPC_ERRORS[number]
        elif number in SERVER_ERRORS:
            kind, permanent = ErrorKind.UNAVAILABLE, False
        elif any(word in name for word in AUTH_WORDS):
            kind, permanent = ErrorKind.AUTH, True
        elif any(word in name for word in CREDIT_WORDS):
            kind, permanent = ErrorKind.CREDIT, True
        else:
            kind, permanent = ErrorKind.VALIDATION, True
        return ProviderError(
            f"CALLR error {code}: {said or 'no message'}.",
            code=code,
            permanent=permanent,
            kind=kind,
            status_code=status_code,
        )

    def classify_http_error(self, response, body: Any) -> ProviderError:
        code, message = self.error_details(body)
        if code and response.status_code not in (401, 403, 429) and response.status_code < 500:
            return self.rpc_error(code, message, status_code=response.status_code)
        return super().classify_http_error(response, body)

    def error_in_answer(self, answer: Any, *, operation: str) -> ProviderError | None:
        if isinstance(answer, Mapping) and answer.get("error") not in (None, {}):
            code, message = self.error_details(answer)
            return self.rpc_error(code or "?", message, status_code=None)
        return None

    # ---------------------------------------------------------------- send
    def check_message(self, sms: OutboundSms) -> None:
        to_msisdn(sms.to)
        sender = self.format_sender(sms.sender)
        problem = ""
        if len(sms.body) > MAX_BODY:
            problem = f"the text is {len(sms.body)} characters; CALLR takes at most {MAX_BODY}"
        elif sender and (len(sender) > MAX_SENDER or not set(sender) <= SENDER_CHARS):
            problem = (
                f"the sender {sender!r} must be at most {MAX_SENDER} letters, digits, spaces, "
                "dashes or underscores"
            )
        elif STOPNUM in sms.body and sender in SHARED_SENDERS:
            problem = (
                f"{STOPNUM} is only replaced with a custom sender; choose one, or remove "
                f"{STOPNUM} from the text"
            )
        elif sms.send_at is not None:
            problem = "CALLR cannot schedule a message; send it when it is due"
        if problem:
            raise ProviderError(
                f"Cannot send through CALLR: {problem}.", permanent=True, kind="validation"
            )

    def group_key(self, sms: OutboundSms) -> Any:
        return sms.reference  # one recipient per call

    def build_payload(self, batch: list[OutboundSms]) -> list[Any]:
        sms = batch[0]
        options: dict[str, Any] = {
            "nature": _text(self.options.get("nature")).upper() or "MARKETING",
            "user_data": sms.reference,
        }
        endpoint = _text(self.webhook_urls.status)
        if endpoint:
            options["webhook"] = {"endpoint": endpoint}
        return [self.format_sender(sms.sender), "+" + to_msisdn(sms.to), sms.body, options]

    def post(self, payload: Any, batch: list[OutboundSms]) -> Any:
        return self.rpc("sms.send", payload, operation="send")

    def parse_results(self, answer: Any, batch: list[OutboundSms]) -> list[SendResult]:
        sms_hash = _text(answer)
        if not sms_hash or isinstance(answer, Mapping | list):
            raise ProviderError(
                f"CALLR sms.send returned no SMS id: {str(answer)[:200]!r}.",
                kind=ErrorKind.PROTOCOL,
                maybe_processed=True,
            )
        return [accepted_result(batch[0], provider_ref=sms_hash, raw_status="CREATED")]

    # ------------------------------------------------------------ receipts
    def status_update(self, item: Mapping[str, Any], *, reference: str = "") -> StatusUpdate:
        """An SMS object (``sms.get``, ``sms.search``, a status webhook)."""
        raw = _text(item.get("status")).upper()
        error_code = _text(item.get("error_code") or item.get("status_code"))
        status = map_status(STATUS_MAP, raw)
        when = (
            item.get("date_update")
            or item.get("date_delivered")
            or item.get("date_sent")
            or item.get("date_creation")
        )
        return StatusUpdate(
            status=status,
            provider_ref=_text(item.get("hash")),
            reference=reference or _text(item.get("user_data")),
            to=to_e164(_text(item.get("to"))) if item.get("to") else "",
            raw_status=raw,
            error_code="" if status in (S.SENT, S.DELIVERED, S.QUEUED) else error_code,
            error_message=_text(item.get("error_message") or item.get("error")),
            occurred_at=parse_local_datetime(when),
        )

    def fetch_statuses(self, refs: list[ProviderRef]) -> list[StatusUpdate]:
        """``sms.get`` for each ref. An id CALLR does not know is skipped."""
        updates = []
        for ref in refs:
            if not ref.provider_ref:
                continue
            try:
                item = self.rpc("sms.get", [ref.provider_ref], operation="status")
            except ProviderError as exc:
                if exc.kind in (ErrorKind.NOT_FOUND, ErrorKind.VALIDATION) and exc.permanent:
                    logger.warning("CALLR: sms %s unknown: %s", ref.provider_ref, exc)
                    continue
                raise
            if isinstance(item, Mapping):
                update = self.status_update(item, reference=ref.reference)
                if not update.provider_ref:
                    update = StatusUpdate(**{**_fields(update), "provider_ref": ref.provider_ref})
                updates.append(update)
        return updates

    def search(self, filters: dict[str, Any], *, operation: str) -> list[Mapping[str, Any]]:
        """Every page of ``sms.search`` for ``filters`` (Search.Options
        ``limit``/``offset``; unverified)."""
        found: list[Mapping[str, Any]] = []
        for page in range(MAX_SEARCH_PAGES):
            options = {"limit": SEARCH_PAGE, "offset": page * SEARCH_PAGE}
            items = _items(self.rpc("sms.search", [filters, options], operation=operation))
            found.extend(items)
            if len(items) < SEARCH_PAGE:
                break
        return found

    def lookup_by_reference(
        self, references: list[str], *, numbers: Mapping[str, str] | None = None
    ) -> list[SendResult]:
        """Messages sent with our ``references`` (``user_data``), via
        ``sms.search``. A reference is reported absent (never sent) only when
        the answer was visibly filtered on it (every item carries it, or
        none came back); otherwise its fate is unknown, never "not sent"."""
        results = []
        for reference in dict.fromkeys(references):
            items = self.search(
                {"direction": "OUT", "user_data": reference}, operation="lookup by reference"
            )
            mine = [i for i in items if _text(i.get("user_data")) == reference]
            if mine:
                update = self.status_update(mine[0], reference=reference)
                refused = update.status in (S.REJECTED, S.FAILED)
                results.append(
                    SendResult(
                        reference=reference,
                        accepted=not refused,
                        status=S.SENT if update.status in (S.UNKNOWN, S.QUEUED) else update.status,
                        provider_ref=update.provider_ref,
                        raw_status=update.raw_status,
                        error_code=update.error_code,
                        error_message=update.error_message,
                    )
                )
            elif items:
                results.append(
                    SendResult(
                        reference=reference,
                        accepted=False,
                        status=S.UNKNOWN,
                        error_message=(
                            "CALLR's search did not filter on our reference; check at CALLR "
                            "before sending again."
                        ),
                        permanent=False,
                        outcome_unknown=True,
                    )
                )
        return results

    # ------------------------------------------------------------- replies
    def inbound(self, item: Mapping[str, Any]) -> InboundSms | None:
        sender = _text(item.get("from"))
        if not sender:
            return None
        text = item.get("body", item.get("text"))
        received = item.get("date_received") or item.get("date_creation") or item.get("date")
        ref = _text(item.get("hash"))
        if not ref:
            digest = hashlib.sha256(f"{sender}\0{received}\0{text}".encode()).hexdigest()[:16]
            ref = f"mo-{digest}"
        return InboundSms(
            from_number=to_e164(sender),
            body="" if text is None else str(text),
            received_at=parse_local_datetime(received) or datetime.now(UTC),
            provider_ref=ref,
            to_number=to_e164(_text(item.get("to"))) if item.get("to") else "",
            raw=dict(item),
        )

    def _reply_cursor_key(self) -> str:
        who = self.account_key or hashlib.sha256(self._login()[0].encode()).hexdigest()[:16]
        return f"smsoffice:callr:replies:{who}"

    def fetch_replies(self) -> list[InboundSms]:
        """Inbound SMS since the last poll (less an overlap; replies are stored
        once per hash), through ``sms.search``."""
        cursor = ReplyCursor(self._reply_cursor_key())
        start, now = cursor.window()
        filters = {
            "direction": "IN",
            "date_min": start.strftime(TIME_FORMAT),
            "date_max": now.strftime(TIME_FORMAT),
        }
        replies = []
        for item in self.search(filters, operation="replies"):
            if _text(item.get("direction")).upper() not in ("", "IN"):
                continue  # the filter was not applied: not a reply
            reply = self.inbound(item)
            if reply is not None:
                replies.append(reply)
        cursor.advance(now)
        return replies

    # ------------------------------------------------------------ webhooks
    def verify_webhook(self, request) -> None:
        """With a ``webhook_secret``, the body's base64 HMAC-SHA256 must equal
        ``X-CALLR-HmacSignature`` (compared in constant time); a missing one
        is forged too. The view answers 403 and reads nothing."""
        secret = _text(self.credentials.get("webhook_secret"))
        if not secret:
            return
        given = request.headers.get("X-CALLR-HmacSignature", "")
        if not hmac_signature_valid(request.body or b"", secret, given):
            raise WebhookForbidden(
                "CALLR webhook refused: X-CALLR-HmacSignature is missing or does not match "
                "the account's webhook_secret."
            )

    def parse_webhook(self, request) -> list[StatusUpdate | InboundSms]:
        """``sms.mt.status_update`` (a status report) or ``sms.mo`` (a reply),
        JSON with the event name in ``type``/``event`` and the SMS object in
        ``data`` (beyond ``event_id``, ``event_at``, ``hook_hash`` the payload
        is unverified, so the object may also be the body itself). The
        signature is checked before, by :meth:`verify_webhook` (the view calls
        it first)."""
        try:
            payload = json.loads(request.body or b"")
        except (ValueError, UnicodeDecodeError) as exc:
            raise WebhookError(f"The body is not JSON ({exc}).") from None
        if not isinstance(payload, Mapping):
            raise WebhookError("Expected a JSON object (a CALLR webhook event).")
        event = _text(payload.get("type") or payload.get("event")).lower()
        data: Mapping[str, Any] = (
            payload["data"] if isinstance(payload.get("data"), Mapping) else payload
        )
        if event == "sms.mo":
            reply = self.inbound(data)
            if reply is None:
                raise WebhookError("CALLR sms.mo without 'from' (the sender's number).")
            return [reply]
        if event == "sms.mt.status_update":
            if not _text(data.get("hash")) or not _text(data.get("status")):
                raise WebhookError("CALLR sms.mt.status_update needs the SMS 'hash' and 'status'.")
            return [self.status_update(data)]
        if event:
            # Another event this hook was subscribed to: acknowledged, ignored,
            # so CALLR does not retry it.
            logger.info("CALLR webhook event %r ignored.", event)
            return []
        raise WebhookError(
            "CALLR webhook without an event name ('type'); expected sms.mt.status_update or sms.mo."
        )


def _fields(update: StatusUpdate) -> dict[str, Any]:
    return {name: getattr(update, name) for name in StatusUpdate.__dataclass_fields__}
