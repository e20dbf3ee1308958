"""FullSMS (https://api.fullsms.com), per ``provider-docs/fullsms.txt``.

REST/JSON with a Bearer token (``Authorization: Bearer 20|YLuv...``, made in
the FullSMS web app: Settings → API → Generate API token).

What the API offers and how it maps onto ours:

- Sending: ``POST messages/send/to_numbers`` with ``to_numbers`` (at most
  500), ``message``, ``from`` and an optional ``send_at``
  (``YYYY-MM-DD HH:MM:SS``). One call carries one text, so the base flow
  groups by (body, sender, schedule) and cuts at 500. The answer has one
  ``campaign_id`` and no per-recipient id: a message's ``provider_ref`` is
  ``"<campaign_id>-<msisdn>"``, its ``provider_batch_ref`` the campaign id.
  ``invalid.numbers`` inside a 200 answer are the recipients it refused;
  the others were taken.
- No delivery reports and no replies: the doc has no status, report,
  webhook or inbound call. A message FullSMS took stays ``sent`` for good;
  :attr:`FullSmsBackend.delivery_reports_note` says so on the account and
  campaign pages. No call finds a send by our reference either, so a send
  left unknown by a crash cannot be reconciled (``lookup_by_reference`` is
  not offered) and is left for a person, never re-sent.
- Account: ``account/balance``, ``account/numbers``, ``account/senderids``
  (they feed the sender choices: :meth:`FullSmsBackend.senders`).
  ``account/lists`` and ``account/templates`` are not used: recipients and
  texts are ours.
- Errors (doc "Errors" and each call's examples): 403 is how it reports bad
  credentials ("Access Denied", "Unauthenticated - Missing/Invalid API
  key") but also a ``from`` it will not send from ("Sender ID is not
  approved", "Number invalid, inactive or unknown") and "Shortlinks are not
  allowed"; 404 "Template not found or not valid"; 422 with ``errors`` per
  field (``to_numbers.<i>``: that recipient) or ``reason: balance_low``
  (insufficient credit); 500 "Internal Error". See :data:`ERRORS_403`.

The OTP calls (``otp/*``) and ``messages/send/to_lists`` are not used: the
engine sends to its own recipients, one message row each.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from providers.backends.base import (
    Capability,
    CredentialField,
    DeliveryStatus,
    ErrorKind,
    OutboundSms,
    ProviderError,
    SenderOption,
    SendResult,
    SmsBackend,
    accepted_result,
    error_result,
    refused_result,
    to_e164,
    to_msisdn,
)

logger = logging.getLogger("providers.backends.fullsms")

#: The 403 texts of the doc, each with what it means: (code, kind, advice).
#: A ``from`` FullSMS will not send from is a setting a person must fix,
#: like a bad token: every message with it would be refused the same way,
#: so it holds the batch back (kind ``auth``: the campaign pauses with this
#: text) instead of rejecting every recipient one call at a time.
ERRORS_403: dict[str, tuple[str, str, str]] = {
    "access denied": (
        "access_denied",
        ErrorKind.AUTH,
        "The API token is not allowed to do this: check the token in the account's "
        "credentials (FullSMS: Settings → API).",
    ),
    "unauthenticated - missing/invalid api key": (
        "invalid_api_key",
        ErrorKind.AUTH,
        "The API token is missing or wrong: generate one in FullSMS (Settings → API) and "
        "enter it in the account's credentials.",
    ),
    "sender id is not approved": (
        "sender_not_approved",
        ErrorKind.AUTH,
        "Choose an approved sender ID or one of the account's numbers (the sender choices "
        "on the account page), or have this one approved by FullSMS.",
    ),
    "number invalid, inactive or unknown": (
        "from_number_invalid",
        ErrorKind.AUTH,
        "The sending number does not belong to the FullSMS account or is inactive: choose "
        "one of the account's numbers.",
    ),
    "shortlinks are not allowed in your account. you may use templates without shortlinks.": (
        "shortlinks_not_allowed",
        ErrorKind.VALIDATION,
        "Remove the link from the message text.",
    ),
}

#: ``to_numbers.<index>``: the validation error of one recipient of the call.
RECIPIENT_ERROR = re.compile(r"^to_numbers\.(\d+)$")

#: FullSMS' ``send_at`` format.
SEND_AT_FORMAT = "%Y-%m-%d %H:%M:%S"


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _items(body: Any, key: str) -> list[Any]:
    value = body.get(key) if isinstance(body, Mapping) else None
    return list(value) if isinstance(value, list) else []


class FullSmsBackend(SmsBackend):
    """FullSMS. Credentials: ``api_token`` (the Bearer token) and optionally
    ``time_zone``, the zone FullSMS reads ``send_at`` in (the doc does not
    say; UTC unless set)."""

    name = "fullsms"
    label = "FullSMS"
    capabilities = frozenset({Capability.SCHEDULE, Capability.BALANCE, Capability.SENDERS})
    credential_fields = (
        CredentialField(
            "api_token",
            "API token",
            secret=True,
            help_text="FullSMS web app: Settings → API → Generate API token "
            "(it looks like 20|a1B2c3…).",
        ),
        CredentialField(
            "time_zone",
            "Time zone of scheduled sends",
            required=False,
            help_text="The zone FullSMS reads send_at in, e.g. Asia/Jerusalem. Empty: UTC.",
        ),
    )
    delivery_reports_note = (
        "FullSMS has no delivery reports or replies in its API: messages it accepted stay "
        "“sent” and are never marked delivered or undelivered here."
    )
    #: "Can contain up to 500 entries."
    max_batch = 500
    default_base_url = "https://api.fullsms.com"
    send_path = "/messages/send/to_numbers"

    # ------------------------------------------------------------ plumbing
    def auth_headers(self) -> dict[str, str]:
        token = _text(self.credentials.get("api_token") or self.credentials.get("token"))
        if not token:
            raise ProviderError(
                "FullSMS needs an API token ('api_token' in the account's credentials): "
                "generate one in FullSMS under Settings → API.",
                permanent=True,
                kind=ErrorKind.AUTH,
            )
        return {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    @property
    def tz(self) -> ZoneInfo:
        name = _text(self.options.get("time_zone") or self.credentials.get("time_zone")) or "UTC"
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ProviderError(
                f"FullSMS time_zone {name!r} is not a time zone name; use one such as "
                "'Asia/Jerusalem' or 'UTC'.",
                permanent=True,
                kind=ErrorKind.VALIDATION,
            ) from None

    def get(self, path: str, *, operation: str) -> Any:
        body = self.request("GET", path, operation=operation)
        if not isinstance(body, Mapping):
            raise ProviderError(
                f"FullSMS {path}: expected a JSON object, got {str(body)[:200]!r}.",
                kind=ErrorKind.PROTOCOL,
            )
        return body

    # -------------------------------------------------------------- errors
    def error_details(self, body: Any) -> tuple[str, str]:
        """(code, message): ``reason`` (``balance_low``), else our name for a
        documented 403 text, else the first field of ``errors``."""
        if not isinstance(body, Mapping):
            return "", ""
        message = _text(body.get("message"))
        errors = body.get("errors")
        if isinstance(errors, Mapping) and errors:
            details = []
            for fieldname, texts in errors.items():
                texts = texts if isinstance(texts, list) else [texts]
                details.append(f"{fieldname}: {'; '.join(_text(t) for t in texts)}")
            message = f"{message} ({', '.join(details)})" if message else ", ".join(details)
        reason = _text(body.get("reason"))
        if reason:
            return reason, message
        known = ERRORS_403.get(_text(body.get("message")).lower())
        if known:
            return known[0], message
        if isinstance(errors, Mapping) and errors:
            return str(next(iter(errors))), message
        return "", message

    def classify_http_error(self, response: httpx.Response, body: Any) -> ProviderError:
        error = super().classify_http_error(response, body)
        status = response.status_code
        said = _text(body.get("message")).lower() if isinstance(body, Mapping) else ""
        if status == 403:
            # 403 is bad credentials, but also a ``from`` or content it refuses.
            code, kind, advice = ERRORS_403.get(
                said, ("forbidden", ErrorKind.AUTH, ERRORS_403["access denied"][2])
            )
            error.code, error.kind, error.permanent = code, kind, True
            error.message = f"{error.message}. {advice}"
        elif status == 422:
            reason = _text(body.get("reason")) if isinstance(body, Mapping) else ""
            if reason == "balance_low":
                error.kind = ErrorKind.CREDIT
                error.message = (
                    f"{error.message}. Top up the FullSMS account; the campaign resumes "
                    "from the first unsent message."
                )
            else:
                error.kind = ErrorKind.VALIDATION
                # Read by results_for_error: refuse only the recipients named.
                error.recipient_errors = self.recipient_errors(body)  # type: ignore[attr-defined]
            error.permanent = True
        elif status == 404:
            error.kind, error.permanent = ErrorKind.NOT_FOUND, True
        return error

    def error_in_answer(self, answer: Any, *, operation: str) -> ProviderError | None:
        """A 200 whose body says ``status: declined`` or carries an error
        ``status_code`` (defensive: the doc shows those only with 4xx)."""
        if not isinstance(answer, Mapping):
            return None
        status_code = _int(answer.get("status_code"))
        declined = _text(answer.get("status")).lower() == "declined"
        if not declined and (status_code is None or status_code < 400):
            return None
        code, message = self.error_details(answer)
        if code == "balance_low":
            kind = ErrorKind.CREDIT
        elif code in {c for c, _, _ in ERRORS_403.values()}:
            kind = ErrorKind(next(k for c, k, _ in ERRORS_403.values() if c == code))
        elif status_code is not None and status_code >= 500:
            return ProviderError(
                f"FullSMS {operation}: {message or 'Internal Error'}",
                code=str(status_code),
                kind=ErrorKind.UNAVAILABLE,
            )
        else:
            kind = ErrorKind.VALIDATION
        return ProviderError(
            f"FullSMS {operation} declined: {self.scrub(message) or 'no reason given'}",
            code=code or str(status_code or "declined"),
            permanent=True,
            kind=kind,
        )

    # ---------------------------------------------------------------- send
    def format_sender(self, sender: str) -> str:
        """``from`` is an E.164 number as the doc writes them (``441111111111``,
        no ``+``) or an approved sender ID, unchanged."""
        sender = (sender or "").strip()
        if sender.startswith("+") and sender[1:].isdigit():
            return sender[1:]
        return sender

    def _send_at(self, send_at: datetime | None) -> str:
        """``send_at`` in the account's zone, or "" to send now (a time already
        reached is sent now)."""
        if send_at is None:
            return ""
        if send_at.tzinfo is None:
            raise ProviderError(
                f"Schedule time {send_at!r} has no time zone; pass an aware datetime.",
                permanent=True,
                kind=ErrorKind.VALIDATION,
            )
        if send_at <= datetime.now(UTC):
            return ""
        return send_at.astimezone(self.tz).strftime(SEND_AT_FORMAT)

    def build_payload(self, batch: list[OutboundSms]) -> dict[str, Any]:
        first = batch[0]
        payload: dict[str, Any] = {
            "to_numbers": [to_msisdn(sms.to) for sms in batch],
            "message": first.body,
            "from": self.format_sender(first.sender),
        }
        send_at = self._send_at(first.send_at)
        if send_at:
            payload["send_at"] = send_at
        return payload

    def parse_results(self, answer: Any, batch: list[OutboundSms]) -> list[SendResult]:
        """``{status: approved, campaign_id, total_sent, invalid: {count,
        numbers}}``: the ``invalid`` numbers are refused (permanently: the doc
        calls them invalid or unable to receive), every other recipient is
        accepted under ``<campaign_id>-<msisdn>``."""
        campaign_id = _text(answer.get("campaign_id")) if isinstance(answer, Mapping) else ""
        if not campaign_id:
            raise ProviderError(
                f"FullSMS send: the answer has no campaign_id ({str(answer)[:200]!r}); the "
                "messages may have been sent.",
                kind=ErrorKind.PROTOCOL,
                maybe_processed=True,
            )
        invalid_block = answer.get("invalid")
        invalid_numbers = _items(invalid_block, "numbers")
        invalid = {to_msisdn_or_raw(_text(n)) for n in invalid_numbers}
        raw = _text(answer.get("status"))
        scheduled = bool(self._send_at(batch[0].send_at))
        results = []
        for sms in batch:
            msisdn = to_msisdn(sms.to)
            if msisdn in invalid:
                results.append(
                    refused_result(
                        sms,
                        kind=ErrorKind.VALIDATION,
                        code="invalid_number",
                        message=(
                            f"FullSMS refused {sms.to}: invalid or cannot receive messages "
                            "(invalid.numbers of its answer)."
                        ),
                        raw_status="invalid",
                    )
                )
                continue
            results.append(
                accepted_result(
                    sms,
                    status=DeliveryStatus.QUEUED if scheduled else DeliveryStatus.SENT,
                    provider_ref=f"{campaign_id}-{msisdn}",
                    provider_batch_ref=campaign_id,
                    raw_status=raw,
                )
            )
        total_sent = _int(answer.get("total_sent"))
        taken = sum(1 for r in results if r.accepted)
        if total_sent is not None and total_sent != taken:
            # It does not say which; the ones it did not name stay accepted
            # (never sent twice), and the gap is logged for a person.
            logger.warning(
                "FullSMS campaign %s: total_sent %s, but %s recipients were not named invalid.",
                campaign_id,
                total_sent,
                taken,
            )
        return results

    def results_for_error(self, error: ProviderError, batch: list[OutboundSms]) -> list[SendResult]:
        """A 422 naming only recipients (``errors: {"to_numbers.3": [...]}``)
        refuses those recipients; the others were not sent because of them,
        so they are ``NOT_ATTEMPTED`` (no attempt counted) and go in the next
        batch without the refused ones."""
        named = self._named_recipients(error, batch)
        if not named:
            return super().results_for_error(error, batch)
        held = ProviderError(
            f"FullSMS refused another recipient of the same call ({error.message})",
            code=error.code,
            kind=ErrorKind.DEFERRED,
        )
        return [
            refused_result(
                sms,
                kind=ErrorKind.VALIDATION,
                code=f"to_numbers.{index}",
                message=f"FullSMS refused {sms.to}: {named[index]}",
            )
            if index in named
            else error_result(sms, held)
            for index, sms in enumerate(batch)
        ]

    def stops_batch(self, error: ProviderError) -> bool:
        # Recipients refused by name concern this chunk only.
        if getattr(error, "recipient_errors", None):
            return False
        return super().stops_batch(error)

    @staticmethod
    def _named_recipients(error: ProviderError, batch: list[OutboundSms]) -> dict[int, str]:
        named = getattr(error, "recipient_errors", None) or {}
        if error.maybe_processed or any(index >= len(batch) for index in named):
            return {}
        return dict(named)

    @staticmethod
    def recipient_errors(body: Any) -> dict[int, str]:
        """``{index: text}`` when a 422's ``errors`` name only ``to_numbers.<i>``
        fields; empty when another field is wrong too (the whole call is)."""
        errors = body.get("errors") if isinstance(body, Mapping) else None
        if not isinstance(errors, Mapping) or not errors:
            return {}
        named: dict[int, str] = {}
        for fieldname, texts in errors.items():
            match = RECIPIENT_ERROR.match(str(fieldname))
            if match is None:
                return {}
            texts = texts if isinstance(texts, list) else [texts]
            named[int(match.group(1))] = "; ".join(_text(t) for t in texts)
        return named

    # ---------------------------------------------------------- operations
    def balance(self) -> Decimal:
        """``GET account/balance`` → ``{"balance": 100}``."""
        body = self.get("/account/balance", operation="balance")
        try:
            return Decimal(str(body["balance"]))
        except (KeyError, InvalidOperation, ValueError):
            raise ProviderError(
                f"FullSMS account/balance answered without a balance: {str(body)[:200]!r}.",
                kind=ErrorKind.PROTOCOL,
            ) from None

    def numbers(self) -> list[SenderOption]:
        """``GET account/numbers``: the account's numbers (senders)."""
        body = self.get("/account/numbers", operation="senders")
        options = []
        for item in _items(body, "numbers"):
            if not isinstance(item, Mapping) or not _text(item.get("number")):
                continue
            number = to_e164(_text(item.get("number")))
            country = _text(item.get("country"))
            label = f"{number} (number{', ' + country if country else ''})"
            options.append(SenderOption(value=number, label=label, kind="number"))
        return options

    def sender_ids(self) -> list[SenderOption]:
        """``GET account/senderids``: the approved custom sender IDs."""
        body = self.get("/account/senderids", operation="senders")
        return [
            SenderOption(value=_text(s), label=f"{_text(s)} (approved sender ID)", kind="alpha")
            for s in _items(body, "senderids")
            if _text(s)
        ]

    def senders(self) -> list[SenderOption]:
        """Every ``from`` FullSMS accepts for this account: approved sender
        IDs, then numbers."""
        return [*self.sender_ids(), *self.numbers()]


def to_msisdn_or_raw(number: str) -> str:
    try:
        return to_msisdn(number)
    except ProviderError:
        return number
