"""The SMS Works (https://api.thesmsworks.co.uk/v1), per ``thesmsworks.txt``.

Authentication: ``POST /auth/token`` with ``{customerid, key, secret}``
answers ``{"token": "JWT eyJ..."}``. The token already starts with ``JWT ``
and goes into ``Authorization`` as it is. Tokens never expire on their own
(the doc, "Renewing JSON Web Tokens"), so one is cached per account and
fetched again once when a call answers 401 (the key/secret was renewed).

Sending: one recipient → ``/message/send`` (or ``/message/schedule``), several
recipients of the same text → ``/batch/send`` (``/batch/schedule``), at most
500 destinations per call. Our reference travels in ``tag`` (≤ 280 chars).
A batch has one tag for all its destinations: it is the reference of the
batch's first message, so a report of a batch message carries that
reference plus its destination, which identifies the recipient within the
same campaign (see :func:`campaigns.reports.statuses_apply`).

Reports: delivery reports and incoming messages arrive as JSON POSTs
(:meth:`TheSmsWorksBackend.parse_webhook`); ``GET /messages/{id}`` and
``GET /batch/{id}`` poll them; ``POST /messages`` with ``{"tag": ...}`` finds
messages by our reference after a crash.

Replies are polled too: ``POST /messages`` ("Get messages matching your
search criteria") takes ``status``, ``from`` and ``to`` (ISO 8601 times), and
INCOMING is one of the statuses a message has (README), so
``{"status": "INCOMING", "from": <last poll - overlap>, "to": <now>}``
lists the replies (:meth:`TheSmsWorksBackend.fetch_replies`). A user
without a public HTTPS address still gets replies and STOPs; the webhook,
when set, only brings them sooner (each reply is stored once per
``messageid``). The doc does not show an incoming message's fields in a
query answer, so the webhook's (``from``, ``to``, ``content``) are read,
with the report's (``sender``, ``destination``) as fallbacks.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from providers.backends.base import (
    Capability,
    CredentialField,
    DeliveryStatus,
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
    map_status,
    parse_local_datetime,
    to_msisdn,
)
from smsoffice.logredact import register_secrets
from smsoffice.secretbox import InvalidToken, decrypt_text, encrypt_text

logger = logging.getLogger("providers.backends.thesmsworks")

S = DeliveryStatus

#: Provider status → our vocabulary. Sources: the doc's delivery-report
#: status table ("Delivery Reports") and the statuses listed in README.md.
STATUS_MAP: dict[str, DeliveryStatus] = {
    # "The SMS Works platform has accepted the message but no delivery report
    # has yet been received from the networks."
    "ACCEPTED": S.SENT,
    "SENT": S.SENT,
    # "message has been successfully delivered to the handset."
    "DELIVERED": S.DELIVERED,
    # "The message could not be delivered. The text credit is added back."
    "UNDELIVERED": S.UNDELIVERED,
    "UNDELIVERABLE": S.UNDELIVERED,
    # "not delivered within the validity period ... credit will be refunded."
    "EXPIRED": S.EXPIRED,
    # "The message could not be sent ... only used for batch messages."
    "FAILED": S.FAILED,
    # "rejected by The SMS Works Platform. No credit will be deducted."
    "REJECTED": S.REJECTED,
    # Waiting at the provider for its scheduled time.
    "SCHEDULED": S.QUEUED,
    # CANCELLED (a cancelled schedule) and INCOMING (a reply, not a report)
    # are deliberately absent: they map to UNKNOWN and keep the raw value.
}

#: Reports whose credits the provider puts back: UNDELIVERED and EXPIRED are
#: refunded except for texts sent outside the UK ("We cannot refund
#: undelivered messages to numbers sent outside the UK"); REJECTED was never
#: charged. FAILED and UNKNOWN are not refunded.
REFUNDED_UK_ONLY = frozenset({"UNDELIVERED", "UNDELIVERABLE", "EXPIRED"})
REFUNDED_ALWAYS = frozenset({"REJECTED"})

#: The doc's error table ("Error codes"): code → (permanent, kind).
ERROR_CODES: dict[str, tuple[bool, str]] = {
    # Bad message content (HTTP 400)
    "4001": (True, "validation"),  # Message length is 0 characters.
    "4002": (True, "validation"),  # Cannot send messages longer than 1280 characters.
    "4003": (True, "validation"),  # Sender ID length invalid.
    "4004": (True, "validation"),  # Invalid destination number.
    "4005": (True, "validation"),  # Tag longer than 280 characters.
    "4006": (True, "validation"),  # Message contains profanity.
    "4007": (True, "auth"),  # Message contains blocked terms. Account disabled.
    "4008": (True, "not_found"),  # Invalid message ID.
    "4009": (True, "validation"),  # Invalid date/time supplied.
    # Authentication (HTTP 401)
    "4011": (True, "auth"),  # Not authenticated.
    # Credit (HTTP 402)
    "4021": (True, "credit"),  # Insufficient credit to send message.
    # Authorisation (HTTP 403)
    "4031": (True, "auth"),  # Not authorised.
    "4032": (True, "auth"),  # Account not found.
    "4033": (True, "auth"),  # Account disabled.
    "4034": (True, "validation"),  # Not enabled for international SMS.
    # Service errors (HTTP 400)
    "5001": (True, "validation"),  # Handset: number does not exist.
    "5002": (True, "validation"),  # Service database error.
    "5004": (True, "validation"),  # Rejected by the operator.
    "5006": (False, "validation"),  # Handset: no response (switched off / low signal).
    "5008": (False, "validation"),  # Handset: roaming not allowed.
    "5009": (True, "validation"),  # Undelivered, reverted from the operator.
    "5010": (True, "validation"),  # Subscriber on DND services.
    "5011": (True, "validation"),  # Subscriber's service suspended.
    "5013": (False, "validation"),  # Handset: Do Not Disturb.
    "5015": (False, "validation"),  # Pending until validity expired.
    "5020": (True, "validation"),  # Anti-flooding.
    "5034": (False, "validation"),  # Handset: system failure.
}

#: Codes that concern one message (its content or its recipient) rather than
#: the account or the call: a single send refused with one of these is a
#: refused recipient (``accepted=False``), not a failure of the whole call.
MESSAGE_LEVEL_CODES = frozenset({"4001", "4002", "4004", "4006", "4034"}) | frozenset(
    code for code in ERROR_CODES if code.startswith("5")
)

TOKEN_CACHE_SECONDS = 12 * 3600
MAX_TAG = 280


def e164(value: Any) -> str:
    """A number as The SMS Works writes it (``447777777777`` as int or str,
    UK national ``07777777777``, or with ``+``) → ``+447777777777``. Short
    codes and anything not numeric come back as given (stripped)."""
    text = str(value if value is not None else "").strip().replace(" ", "")
    digits = text.lstrip("+")
    if digits.startswith("00"):
        digits = digits[2:]
    elif digits.startswith("0"):
        digits = "44" + digits[1:]  # UK national format (the doc's "07900123456")
    if not digits.isdigit() or len(digits) < 8:
        return text
    return "+" + digits


def _items(body: Any, *keys: str) -> list[Mapping[str, Any]]:
    """The list of message objects in an answer: a bare list, or a list under
    one of ``keys`` (defensive: the doc names the response types but does not
    show them)."""
    if isinstance(body, list):
        return [item for item in body if isinstance(item, Mapping)]
    if isinstance(body, Mapping):
        for key in keys:
            if isinstance(body.get(key), list):
                return [item for item in body[key] if isinstance(item, Mapping)]
        if "messageid" in body:
            return [body]
    return []


def _digits(value: Any) -> str:
    """A number as comparable digits (``+447…``, ``447…`` and ``07…`` agree)."""
    return e164(value).lstrip("+")


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _cached_token(value: Any) -> str | None:
    """The token kept in the cache, or None when missing or unreadable (a
    rotated key, or a plain value from before encryption: fetch a new one)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return decrypt_text(value)
    except (InvalidToken, ValueError):
        return None


class TheSmsWorksBackend(SmsBackend):
    name = "thesmsworks"
    label = "The SMS Works"
    credential_fields = (
        CredentialField("customerid", "Customer ID", help_text="API Key tab of your account."),
        CredentialField("key", "API key", secret=True),
        CredentialField("secret", "API secret", secret=True),
    )
    capabilities = frozenset(
        {
            Capability.SCHEDULE,
            Capability.DLR_POLL,
            Capability.DLR_WEBHOOK,
            Capability.REPLIES_POLL,
            Capability.REPLIES_WEBHOOK,
            Capability.BALANCE,
            Capability.LOOKUP_BY_REFERENCE,
        }
    )
    #: "Sending to multiple numbers is limited to 500 recipients."
    max_batch = 500
    default_base_url = "https://api.thesmsworks.co.uk/v1"
    #: Refunds depend on the report (UK or not): each StatusUpdate says
    #: ``refunded`` itself, so the blanket rule stays off.
    refunds_failed = False
    webhook_setup_note = (
        "Replies (and STOPs) are polled every minute; to get them at once, paste the Replies "
        "URL as the incoming messages URL on your SMS Works account page. Delivery reports "
        "need nothing: each message carries our Delivery reports URL when PUBLIC_BASE_URL "
        "is set."
    )

    REQUIRED_CREDENTIALS = ("customerid", "key", "secret")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._jwt: str | None = None

    def secrets(self) -> list[str]:
        """The stored credentials and the token obtained at run time (with and
        without its ``JWT`` scheme), so a provider echoing the Authorization
        header never leaks it into an error, a log line or ``raw_error``."""
        values = set(super().secrets())
        if self._jwt:
            values.add(self._jwt)
            values.add(self._jwt.split(" ", 1)[-1])
        return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)

    # ------------------------------------------------------------ auth
    def _credentials(self) -> dict[str, str]:
        creds = {k: _text(self.credentials.get(k)) for k in self.REQUIRED_CREDENTIALS}
        if not creds["customerid"]:
            creds["customerid"] = _text(self.credentials.get("customer_id"))
        missing = [k for k, v in creds.items() if not v]
        if missing:
            raise ProviderError(
                "The SMS Works needs the credentials "
                '{"customerid": ..., "key": ..., "secret": ...} (API Key tab of your '
                f"account page); missing: {', '.join(missing)}.",
                permanent=True,
                kind="auth",
            )
        return creds

    def _token_cache_key(self, creds: Mapping[str, str]) -> str:
        # The fingerprint changes when the key/secret are replaced, so a token
        # of old credentials is never reused; it is a hash, never the secret.
        fingerprint = hashlib.sha256(
            "\0".join(creds[k] for k in self.REQUIRED_CREDENTIALS).encode()
        ).hexdigest()[:24]
        return f"smsoffice:thesmsworks:jwt:{self.account_key or '-'}:{fingerprint}"

    def _token(self, *, refresh: bool = False) -> str:
        """The JWT for ``Authorization``: from this instance, the cache, or
        ``POST /auth/token`` (when missing or ``refresh``)."""
        from django.core.cache import cache

        creds = self._credentials()
        key = self._token_cache_key(creds)
        if refresh:
            self._jwt = None
            cache.delete(key)
        if self._jwt:
            return self._jwt
        token = _cached_token(cache.get(key))
        if not token:
            body = self.request("POST", "/auth/token", json_body=dict(creds), operation="auth")
            raw = _text(body.get("token")) if isinstance(body, Mapping) else ""
            if not raw:
                raise ProviderError(
                    "The SMS Works: /auth/token answered without a token.",
                    permanent=True,
                    kind="protocol",
                )
            # The doc's token already starts with "JWT "; accept a bare one too.
            token = raw if raw.upper().startswith(("JWT ", "BEARER ")) else f"JWT {raw}"
            # Encrypted in the cache (a database table by default), like the
            # credentials it stands for.
            cache.set(key, encrypt_text(token), TOKEN_CACHE_SECONDS)
        self._jwt = token
        register_secrets(self.secrets())
        return token

    def call(
        self, method: str, path: str, *, json_body: Any = None, operation: str = "call"
    ) -> Any:
        """An authenticated API call; a 401 fetches a new token and tries once more."""
        token = self._token()  # a refusal here is final: the credentials are wrong
        headers = {"Authorization": token}
        try:
            return self.request(
                method, path, json_body=json_body, headers=headers, operation=operation
            )
        except ProviderError as exc:
            if exc.status_code != 401:
                raise
        logger.info("%s: token refused (401), fetching a new one", self.name)
        headers = {"Authorization": self._token(refresh=True)}
        try:
            return self.request(
                method, path, json_body=json_body, headers=headers, operation=operation
            )
        except ProviderError as exc:
            if exc.status_code == 401:
                # Do not keep a token the API refuses.
                self._token_forget()
            raise

    def _token_forget(self) -> None:
        from django.core.cache import cache

        self._jwt = None
        cache.delete(self._token_cache_key(self._credentials()))

    # ---------------------------------------------------------- errors
    def error_details(self, body: Any) -> tuple[str, str]:
        # Errors are {message} or {message, errorCode, status, permanent}.
        if isinstance(body, Mapping):
            code = body.get("errorCode", body.get("code", ""))
            return _text(code), _text(body.get("message"))
        return "", ""

    def classify_http_error(self, response: httpx.Response, body: Any) -> ProviderError:
        error = super().classify_http_error(response, body)
        if response.status_code >= 500 or response.status_code == 429:
            return error
        code = error.code
        permanent, kind = ERROR_CODES.get(code, (True, error.kind))
        # The body's own "permanent" wins over the table (it is per message).
        if isinstance(body, Mapping) and isinstance(body.get("permanent"), bool):
            permanent = body["permanent"]
        error.permanent = permanent
        error.kind = kind
        return error

    # ------------------------------------------------------------ send
    # One text to one recipient → /message/send (/message/schedule); to
    # several → /batch/send (/batch/schedule). The base flow groups by
    # (body, sender, schedule) and cuts at ``max_batch``.
    def check_message(self, sms: OutboundSms) -> None:
        to_msisdn(sms.to)
        if len(sms.reference) > MAX_TAG:
            raise ProviderError(
                f"Our reference {sms.reference[:20]!r}... is longer than The SMS Works' "
                f"{MAX_TAG}-character tag.",
                permanent=True,
                kind="validation",
            )

    def format_sender(self, sender: str) -> str:
        """A numeric sender as digits only: the doc's numeric sender is "up to
        15 numeric characters" (e.g. ``07900123456``) and a ``+`` makes the
        API refuse every message with 4003 "Sender ID length invalid"."""
        sender = (sender or "").strip()
        digits = sender[1:] if sender.startswith("+") else sender
        if digits.startswith("00") and digits.isdigit():
            digits = digits[2:]
        return digits if digits.isdigit() else sender

    @staticmethod
    def _schedule(when: datetime) -> str:
        # "The schedule date format should match the JavaScript date format,
        # which is the same as the ISO 8601 syntax."
        return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def build_payload(self, batch: list[OutboundSms]) -> dict[str, Any]:
        first = batch[0]
        payload: dict[str, Any] = {"sender": self.format_sender(first.sender)}
        if len(batch) == 1:
            payload["destination"] = to_msisdn(first.to)
        else:
            payload["destinations"] = [to_msisdn(sms.to) for sms in batch]
        payload["content"] = first.body
        if first.send_at is not None:
            payload["schedule"] = self._schedule(first.send_at)
        # Our reference; a batch carries its first message's (see the module doc).
        payload["tag"] = first.reference
        # Reports of this message come to our URL, whatever the account page
        # at the provider says (the doc's optional "deliveryreporturl").
        if self.webhook_urls.status:
            payload["deliveryreporturl"] = self.webhook_urls.status
        validity = self.options.get("validity_minutes")
        if validity:
            payload["validity"] = int(validity)
        return payload

    def post(self, payload: Any, batch: list[OutboundSms]) -> Any:
        kind = "message" if len(batch) == 1 else "batch"
        action = "schedule" if batch[0].send_at is not None else "send"
        return self.call("POST", f"/{kind}/{action}", json_body=payload, operation="send")

    def stops_batch(self, error: ProviderError) -> bool:
        # The service errors (5xxx) and content errors concern the message,
        # even the transient ones ("Handset may be switched off").
        if error.code in MESSAGE_LEVEL_CODES and not error.maybe_processed:
            return False
        return super().stops_batch(error)

    def parse_results(self, answer: Any, batch: list[OutboundSms]) -> list[SendResult]:
        """``/message/send``: ``{messageid, status, credits, creditsUsed}``;
        ``/message/schedule``: a list of ``{messageid, status}``;
        ``/batch/...``: ``{batchid, status}`` (no per-recipient id: the
        batch's messages are matched by destination when polled)."""
        scheduled = batch[0].send_at is not None
        if len(batch) == 1:
            items = _items(answer, "messages")
            item = items[0] if items else (answer if isinstance(answer, Mapping) else {})
            messageid = _text(item.get("messageid"))
            if not messageid:
                raise ProviderError(
                    f"The SMS Works answered without a messageid: {str(answer)[:200]!r}.",
                    kind="protocol",
                    maybe_processed=True,
                )
            raw = _text(item.get("status"))
            return [
                accepted_result(
                    batch[0],
                    status=self._accepted_status(raw, scheduled=scheduled),
                    provider_ref=messageid,
                    raw_status=raw,
                    credits=self._decimal(item.get("creditsUsed")),
                )
            ]
        batchid = _text(answer.get("batchid")) if isinstance(answer, Mapping) else ""
        if not batchid:
            raise ProviderError(
                f"The SMS Works answered without a batchid: {str(answer)[:200]!r}.",
                kind="protocol",
                maybe_processed=True,
            )
        raw = _text(answer.get("status"))
        status = self._accepted_status(raw, scheduled=scheduled)
        return [
            accepted_result(sms, status=status, provider_batch_ref=batchid, raw_status=raw)
            for sms in batch
        ]

    @staticmethod
    def _accepted_status(raw: str, *, scheduled: bool) -> DeliveryStatus:
        status = map_status(STATUS_MAP, raw)
        if status is S.UNKNOWN:
            # Accepted (2xx) with a status we do not know: it is with the provider.
            return S.QUEUED if scheduled else S.SENT
        return status

    @staticmethod
    def _decimal(value: Any) -> Decimal | None:
        if value is None or value == "":
            return None
        try:
            return Decimal(str(value))
        except InvalidOperation:
            return None

    # ---------------------------------------------------------- reports
    def report_update(self, item: Mapping[str, Any], *, reference: str = "") -> StatusUpdate:
        """One message object (delivery report, ``GET /messages/{id}``, batch
        or query item) as a StatusUpdate. ``reference`` overrides the tag."""
        raw = _text(item.get("status")).upper()
        status = map_status(STATUS_MAP, raw)
        destination = _text(item.get("destination"))
        error_code = error_message = ""
        failure = item.get("failurereason")
        # The doc's example carries a failurereason on a DELIVERED report;
        # keep reasons only where something went wrong.
        if isinstance(failure, Mapping) and status not in (S.DELIVERED, S.SENT, S.QUEUED):
            error_code = _text(failure.get("code"))
            error_message = _text(failure.get("details"))
        return StatusUpdate(
            status=status,
            provider_ref=_text(item.get("messageid")),
            reference=reference or _text(item.get("tag")),
            to=e164(destination) if destination else "",
            raw_status=raw,
            error_code=error_code,
            error_message=error_message,
            occurred_at=parse_local_datetime(item.get("modified")),
            refunded=self._refunded(raw, item),
        )

    @staticmethod
    def _refunded(raw: str, item: Mapping[str, Any]) -> bool:
        if raw in REFUNDED_ALWAYS:
            return True
        if raw not in REFUNDED_UK_ONLY:
            return False
        international = item.get("international")
        if isinstance(international, bool):
            return not international
        # No flag: judge by the destination (UK numbers are 44... or 07...).
        return e164(item.get("destination")).startswith("+44")

    def fetch_statuses(self, refs: list[ProviderRef]) -> list[StatusUpdate]:
        """Poll reports: one ``GET /batch/{id}`` per batch (matched by message id
        or destination), ``GET /messages/{id}`` for the others. Each update
        carries the ``reference`` of the ProviderRef it answers. Ids the
        provider does not know (404/4008) are skipped and logged."""
        updates: list[StatusUpdate] = []
        by_batch: dict[str, list[ProviderRef]] = {}
        singles: list[ProviderRef] = []
        for ref in refs:
            if ref.provider_batch_ref:
                by_batch.setdefault(ref.provider_batch_ref, []).append(ref)
            elif ref.provider_ref:
                singles.append(ref)
        for batchid, members in by_batch.items():
            body = self._get_or_none(f"/batch/{batchid}")
            items = _items(body, "messages")
            by_id = {_text(i.get("messageid")): i for i in items}
            by_to = {e164(i.get("destination")): i for i in items}
            for ref in members:
                item = by_id.get(ref.provider_ref) if ref.provider_ref else None
                item = item or by_to.get(e164(ref.to))
                if item is not None and not self._is_inbound(item):
                    updates.append(self.report_update(item, reference=ref.reference))
        for ref in singles:
            body = self._get_or_none(f"/messages/{ref.provider_ref}")
            for item in _items(body, "messages")[:1]:
                if not self._is_inbound(item):
                    updates.append(self.report_update(item, reference=ref.reference))
        return updates

    def _get_or_none(self, path: str) -> Any:
        try:
            return self.call("GET", path)
        except ProviderError as exc:
            if exc.status_code in (400, 404) and exc.kind in ("not_found", "validation"):
                logger.warning("%s: %s unknown to the provider (%s)", self.name, path, exc)
                return None
            raise

    def lookup_by_reference(
        self, references: list[str], *, numbers: Mapping[str, str] | None = None
    ) -> list[SendResult]:
        """What The SMS Works knows of our ``references`` (``POST /messages``
        with ``{"tag": reference}``), for recovering a crashed send.

        A batch is tagged with its first message's reference, so its other
        members cannot be found by their own reference: pass ``numbers``
        (reference → E.164) to match them by destination. Without numbers,
        references not found while some batch was found are returned with
        ``outcome_unknown=True`` (they may be in that batch): reconcile them by
        hand, never re-send. References absent from the result were not sent.
        """
        numbers = dict(numbers or {})
        wanted = list(dict.fromkeys(references))
        by_number = {_digits(numbers[r]): r for r in wanted if numbers.get(r)}
        found: dict[str, SendResult] = {}
        ambiguous = False
        for reference in wanted:
            if reference in found:
                continue
            body = self.call("POST", "/messages", json_body={"tag": reference})
            items = [
                item
                for item in _items(body, "messages")
                # An item without a tag is kept: wrongly thinking a message was
                # sent is recoverable, sending it twice is not.
                if _text(item.get("tag", reference)) == reference and not self._is_inbound(item)
            ]
            if len(items) == 1:
                found[reference] = self._found(reference, items[0])
            elif items:
                # A batch tagged with ``reference``: its members by destination.
                for item in items:
                    owner = by_number.get(_digits(item.get("destination")))
                    if owner is None:
                        ambiguous = True
                    elif owner not in found:
                        found[owner] = self._found(owner, item)
        results = list(found.values())
        if ambiguous:
            for reference in wanted:
                if reference not in found:
                    results.append(
                        SendResult(
                            reference=reference,
                            accepted=False,
                            status=S.UNKNOWN,
                            error_message=(
                                "The SMS Works holds a batch this message may belong to; "
                                "without its number it cannot be matched. Check before "
                                "sending again."
                            ),
                            permanent=False,
                            outcome_unknown=True,
                        )
                    )
        return results

    def _found(self, reference: str, item: Mapping[str, Any]) -> SendResult:
        update = self.report_update(item, reference=reference)
        status = update.status
        return SendResult(
            reference=reference,
            accepted=status not in (S.REJECTED, S.FAILED),
            status=S.SENT if status is S.UNKNOWN else status,
            provider_ref=update.provider_ref,
            provider_batch_ref=_text(item.get("batchid")),
            raw_status=update.raw_status,
            error_code=update.error_code,
            error_message=update.error_message,
            credits=self._decimal(item.get("credits")),
        )

    # ---------------------------------------------------------- webhooks
    @staticmethod
    def _is_inbound(item: Mapping[str, Any]) -> bool:
        return (
            _text(item.get("messagetype")).lower() == "incoming"
            or _text(item.get("status")).upper() == "INCOMING"
            or ("from" in item and "destination" not in item)
        )

    def parse_webhook(self, request) -> list[StatusUpdate | InboundSms]:
        """A delivery report or an incoming message, POSTed as JSON (one object,
        or a list of them). Raises WebhookError naming what is wrong."""
        try:
            payload = json.loads(request.body or b"")
        except (ValueError, UnicodeDecodeError) as exc:
            raise WebhookError(f"The body is not JSON ({exc}).") from None
        items = payload if isinstance(payload, list) else [payload]
        if not items or not all(isinstance(item, dict) for item in items):
            raise WebhookError(
                "Expected a JSON object (a delivery report or an incoming message) "
                "or a list of them."
            )
        parsed: list[StatusUpdate | InboundSms] = []
        for item in items:
            if self._is_inbound(item):
                parsed.append(self._inbound(item))
                continue
            missing = [k for k in ("messageid", "status") if not _text(item.get(k))]
            if missing:
                raise WebhookError(
                    f"A delivery report needs {' and '.join(missing)}; got the keys "
                    f"{', '.join(sorted(item)) or 'none'}."
                )
            parsed.append(self.report_update(item))
        return parsed

    def _inbound(self, item: Mapping[str, Any]) -> InboundSms:
        """An incoming message: the webhook's object (``from``, ``to``,
        ``content``, ``messageid``) or a query item (``sender`` and
        ``destination`` when ``from``/``to`` are absent)."""
        sender = _text(item.get("from") or item.get("sender"))
        if not sender:
            raise WebhookError("An incoming message needs 'from' (the sender's number).")
        to = item.get("to") or item.get("destination")
        received = parse_local_datetime(item.get("created") or item.get("received"))
        return InboundSms(
            from_number=e164(sender),
            body=_text(item.get("content")) if item.get("content") is not None else "",
            received_at=received or datetime.now(UTC),
            provider_ref=_text(item.get("messageid") or item.get("_id")),
            to_number=e164(to) if to else "",
            raw=dict(item),
        )

    # ------------------------------------------------------------ replies
    def _reply_cursor_key(self) -> str:
        who = (
            self.account_key
            or hashlib.sha256(self._credentials()["customerid"].encode()).hexdigest()[:16]
        )
        return f"smsoffice:thesmsworks:replies:{who}"

    def fetch_replies(self) -> list[InboundSms]:
        """Incoming messages since the last poll (less ``REPLY_OVERLAP``),
        through ``POST /messages`` with ``status: INCOMING``. Items that are
        not incoming (a provider ignoring the filter) are left out; one
        without a sender is logged and skipped."""
        cursor = ReplyCursor(self._reply_cursor_key())
        start, now = cursor.window()
        query = {"status": "INCOMING", "from": self._schedule(start), "to": self._schedule(now)}
        body = self.call("POST", "/messages", json_body=query, operation="replies")
        replies = []
        for item in _items(body, "messages"):
            if not self._is_inbound(item):
                continue
            try:
                replies.append(self._inbound(item))
            except WebhookError:
                logger.warning("%s: incoming message without a sender skipped", self.name)
        cursor.advance(now)
        return replies

    # ------------------------------------------------------------ misc
    def balance(self) -> Decimal:
        """``GET /credits/balance`` → ``{credits}``."""
        body = self.call("GET", "/credits/balance")
        value = self._decimal(body.get("credits")) if isinstance(body, Mapping) else None
        if value is None:
            raise ProviderError(
                f"The SMS Works: /credits/balance answered without credits: {str(body)[:200]!r}.",
                kind="protocol",
            )
        return value
