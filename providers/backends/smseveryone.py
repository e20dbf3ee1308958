"""SMS Everyone (https://smseveryone.com/api), per ``provider-docs/smseveryone.txt``.

REST/JSON with Basic auth; one endpoint per area and an ``Action`` field
choosing the operation. Every answer carries ``Code`` (0 = success, negative =
the error table of the doc). Numbers travel as international digits without
``+``.

How our model maps onto theirs:

- A provider *campaign* is one message text to many ``Destinations``. A send
  batch is grouped by (body, sender, schedule); each group is one ``create``
  call (split at ``max_batch``). The answer has one ``CampaignId`` and no
  per-recipient id, so a message's ``provider_ref`` is
  ``"<CampaignId>-<msisdn>"`` and its ``provider_batch_ref`` the CampaignId:
  delivery receipts (``/api/DRStatus``) are per campaign and destination.
- ``Reference`` is our reference of the group's first message, so a campaign
  can be traced back to our messages in their web interface.
- There is no call that finds a campaign by ``Reference``, so
  ``lookup_by_reference`` is not offered: a message left ``submitting`` by a
  crash cannot be reconciled and must not be sent again blindly.
- Schedule times (``TimeScheduled``) and the timestamps returned are in the
  time zone SMS Everyone set for the account ("your local time or UTC").
  The account's ``provider_time_zone`` (shown and editable on its page;
  taken from the provider's settings if they ever carry one) reaches the
  backend as the ``time_zone`` option; Australia/Sydney until set.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from providers.backends.base import (
    AccountSettings,
    Capability,
    CredentialField,
    DeliveryStatus,
    ErrorKind,
    InboundSms,
    OutboundSms,
    ProviderError,
    ProviderRef,
    RemoteOptOut,
    SendResult,
    SmsBackend,
    StatusUpdate,
    WebhookError,
    accepted_result,
    basic_auth_token,
    map_status,
    parse_local_datetime,
    refused_result,
    to_e164,
    to_msisdn,
)

logger = logging.getLogger("providers.backends.smseveryone")

#: ``Code`` values from the doc's "Error Codes" table: (doc text, kind, permanent).
#: Codes -108/-109 and -500..-506 describe an outage; they are transient.
ERROR_CODES: dict[int, tuple[str, str, bool]] = {
    -2: ("Account suspended. Please contact SMS Everyone for more info.", "auth", True),
    -100: ("Campaign create attempt with no CampaignID or ClientRef specified", "validation", True),
    -101: ("Campaign create attempted to modify a deleted campaign", "validation", True),
    -102: ("Campaign create attempted to modify a running campaign", "validation", True),
    -103: ("Campaign create attempted to modify a completed campaign", "validation", True),
    -104: ("Deletion request after campaign start time cutoff", "validation", True),
    -105: ("Campaign deletion request for campaign that does not exist", "not_found", True),
    -106: ("Deletion request for completed campaign", "validation", True),
    -107: ("Deletion request for previously deleted campaign", "validation", True),
    -108: ("Campaign rescheduled due to outage", "unavailable", False),
    -109: ("Campaign rescheduled due to unknown reason", "unavailable", False),
    -110: ("Campaign start time has already past", "validation", True),
    -111: ("Campaign no destination number(s) specified", "validation", True),
    -112: ("Campaign not specified for delete action", "validation", True),
    -113: ("Campaign originator length invalid", "validation", True),
    -114: ("Campaign originator contains invalid characters", "validation", True),
    -115: ("Campaign schedule date invalid", "validation", True),
    -116: (
        "Campaign message length too long. Specify concat option for longer messages",
        "validation",
        True,
    ),
    -117: ("Campaign message text not specified", "validation", True),
    -118: ("Campaign ID not specified for status action", "validation", True),
    -119: ("Campaign Unicode characters not allowed in Message Text", "validation", True),
    -120: ("Attempt to modify a non-existent campaign. Check Campaign Id", "not_found", True),
    -121: ("Attempt to remove numbers from invalid campaign", "not_found", True),
    -122: ("Invalid action specified", "validation", True),
    -123: (
        "Attempt to retrieve status of non-existent campaign. Check Campaign Id",
        "not_found",
        True,
    ),
    -124: ("Modification request after campaign start time cutoff", "validation", True),
    -125: ("No valid Destinations or ListIds found to schedule", "validation", True),
    -127: ("CampaignId not found", "not_found", True),
    -128: ("CrmId not found", "not_found", True),
    -129: ("Not allowed to add credits", "auth", True),
    -130: ("Invalid amount of credits to add", "validation", True),
    -131: (
        "Campaign originator invalid. You must send from a registered origin",
        "validation",
        True,
    ),
    -132: ("Invalid date range", "validation", True),
    -200: ("Credits remaining enquiry failed to locate Credit record", "credit", True),
    -201: ("Credits to use for campaign not specified", "validation", True),
    -202: ("Insufficient credits available to start campaign", "credit", True),
    -203: ("Insufficient credits available to complete campaign", "credit", True),
    -204: ("Insufficient business grade credits available to start campaign", "credit", True),
    -205: ("Insufficient business grade credits available to complete campaign", "credit", True),
    -206: ("Credit account is inactive", "credit", True),
    -207: ("Credit record already exists for client", "validation", True),
    -500: ("Default gateway offline. Using failover gateways.", "unavailable", False),
    -501: ("Default gateway offline. Using system default gateway.", "unavailable", False),
    -502: ("Default gateway offline. Campaign processing halted.", "unavailable", False),
    -503: ("Default gateway offline. No failover gateways found.", "unavailable", False),
    -504: ("Gateway offline. End-point unavailable.", "unavailable", False),
    -505: ("Gateway offline. Manually set.", "unavailable", False),
    -506: ("Gateway Offline. Unknown Reason.", "unavailable", False),
}

#: Codes that may come back *with* a CampaignId on create: the campaign exists
#: at the provider (delayed or on a failover route), so its messages count as
#: accepted and must never be sent again.
CREATED_WITH_WARNING = {-108, -109, -500, -501, -502}
#: Of those, the ones where the campaign is held rather than going out now.
HELD_CODES = {-108, -109, -502}

#: ``DeliveryReceiptStatusId`` (doc "Check the delivery status", JSON examples):
#: 1 = "Successful delivery"; 2 = "Failed delivery ... permanent error" with the
#: carrier's reason in ``Code`` (300 = "Invalid destination"). The doc's full
#: table is an image we do not have; any other id maps to ``unknown`` and keeps
#: the raw id.
DR_STATUS: dict[str, DeliveryStatus] = {
    "1": DeliveryStatus.DELIVERED,
    "2": DeliveryStatus.UNDELIVERED,
}

#: Carrier codes seen in the doc (passed through from the carriers unaltered).
CARRIER_CODES: dict[str, str] = {"300": "Invalid destination"}

#: The zone assumed for the provider's timestamps until the account says
#: otherwise (``ProviderAccount.provider_time_zone``): SMS Everyone is in Sydney.
DEFAULT_TIME_ZONE = "Australia/Sydney"
HOME_COUNTRY = "AU"


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def reply_ref(reference: str, number: str, text: str) -> str:
    """Idempotency key of a reply, the same from the REST poll and the webhook.

    The doc calls the reply's id ``ReferenceId`` (REST) and ``reference``
    (webhook) without saying what it identifies. Keying on it alone would
    merge distinct replies if it named the campaign, so the sender and a hash
    of the text are part of the key: the same reply delivered twice still
    gives the same key.
    """
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return f"{reference or '-'}-{to_msisdn_or_raw(number)}-{digest}"


def to_msisdn_or_raw(number: str) -> str:
    try:
        return to_msisdn(number)
    except ProviderError:
        return (number or "").strip()


class SmsEveryoneBackend(SmsBackend):
    """SMS Everyone. Credentials: ``username``, ``password`` (Basic auth).
    The option ``time_zone`` (from ``ProviderAccount.provider_time_zone``,
    the zone SMS Everyone set for the account) reads and writes its
    timestamps; ``credentials["time_zone"]`` is still honoured.

    Top-ups (``/api/credits``) authenticate as the account being topped up,
    i.e. with this instance's credentials, which for a reseller's
    sub-account are the sub-account's own.
    """

    name = "smseveryone"
    label = "SMS Everyone"
    credential_fields = (
        CredentialField("username", "Username"),
        CredentialField("password", "Password", secret=True),
        CredentialField(
            "time_zone",
            "Account time zone",
            required=False,
            help_text="The zone SMS Everyone set for the account (IANA name). "
            "Empty: Australia/Sydney.",
        ),
    )
    capabilities = frozenset(
        {
            Capability.SCHEDULE,
            Capability.DLR_POLL,
            Capability.REPLIES_POLL,
            Capability.REPLIES_WEBHOOK,
            Capability.BALANCE,
            Capability.TOPUP,
            Capability.OPTOUTS,
            Capability.ACCOUNT_SETTINGS,
        }
    )
    #: Destinations per create call. The doc gives no cap; 500 keeps a request
    #: small (~10 kB) and in line with the other providers.
    max_batch = 500
    default_base_url = "https://smseveryone.com/api"
    #: "Please do not check this API any more often than 1 minute."
    min_reply_poll_interval = 60
    webhook_setup_note = (
        "Replies are polled every minute; the Replies URL is optional (SMS Everyone sets it "
        "up on request, for single-connection accounts)."
    )
    refunds_failed = False

    # ------------------------------------------------------------ plumbing
    def auth_headers(self) -> dict[str, str]:
        username = str(self.credentials.get("username", "") or "")
        password = str(self.credentials.get("password", "") or "")
        if not username or not password:
            raise ProviderError(
                "SMS Everyone needs 'username' and 'password' in the account's credentials.",
                permanent=True,
                kind="auth",
            )
        return {"Authorization": f"Basic {basic_auth_token(username, password)}"}

    @property
    def tz(self) -> ZoneInfo:
        name = str(
            self.options.get("time_zone") or self.credentials.get("time_zone") or DEFAULT_TIME_ZONE
        )
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ProviderError(
                f"SMS Everyone time_zone {name!r} is not a time zone name; "
                "use one such as 'Australia/Sydney' or 'UTC'.",
                permanent=True,
                kind="validation",
            ) from None

    def error_details(self, body: Any) -> tuple[str, str]:
        if isinstance(body, Mapping):
            return str(body.get("Code", "") or ""), str(body.get("Message", "") or "")
        return "", ""

    def code_error(
        self, code: int, message: Any, *, operation: str, status_code: int | None = None
    ) -> ProviderError:
        """The ProviderError for a negative ``Code`` (doc "Error Codes" table)."""
        said = self.scrub(str(message or "").strip())
        if code in ERROR_CODES:
            text, kind, permanent = ERROR_CODES[code]
        else:
            # Unknown codes: -5xx are gateway trouble; anything else we cannot
            # safely retry.
            text = "Unknown SMS Everyone error code"
            kind, permanent = (
                ("unavailable", False) if -599 <= code <= -500 else ("validation", True)
            )
        detail = f" (provider said: {said})" if said and said != text else ""
        return ProviderError(
            f"SMS Everyone {operation} failed: {text}{detail}.",
            code=str(code),
            permanent=permanent,
            kind=kind,
            status_code=status_code,
        )

    def classify_http_error(self, response: httpx.Response, body: Any) -> ProviderError:
        code = _int(body.get("Code")) if isinstance(body, Mapping) else None
        if code is not None and code < 0 and response.status_code != 429:
            # The documented code says more than the HTTP status.
            return self.code_error(
                code,
                body.get("Message"),
                operation=f"{response.request.method} {response.request.url.path}",
                status_code=response.status_code,
            )
        return super().classify_http_error(response, body)

    def error_in_answer(self, answer: Any, *, operation: str) -> ProviderError | None:
        """A negative ``Code`` in a 200 answer is the doc's error table, except
        where the operation tolerates it: a ``create`` that came back with a
        ``CampaignId`` and an outage warning (the campaign exists: see
        :data:`CREATED_WITH_WARNING`)."""
        code = _int(answer.get("Code")) if isinstance(answer, Mapping) else None
        if code is None or code >= 0:
            return None
        if operation == "send" and code in CREATED_WITH_WARNING and answer.get("CampaignId"):
            return None
        return self.code_error(code, answer.get("Message"), operation=operation)

    def call(self, path: str, payload: Mapping[str, Any], *, operation: str) -> dict[str, Any]:
        """POST ``payload`` as JSON and return the answer; a negative ``Code``
        raises (:meth:`error_in_answer`)."""
        body = self.request("POST", path, json_body=dict(payload), operation=operation)
        if not isinstance(body, Mapping):
            raise ProviderError(
                f"SMS Everyone {operation}: expected a JSON object, got {type(body).__name__}.",
                kind="protocol",
                maybe_processed=True,
            )
        return dict(body)

    def _campaign_id(self, ref: ProviderRef | str | int) -> int:
        if isinstance(ref, ProviderRef):
            value = ref.provider_batch_ref or ref.provider_ref.split("-", 1)[0]
        else:
            value = str(ref)
        cid = _int(value)
        if cid is None:
            raise ProviderError(
                f"{value!r} is not an SMS Everyone CampaignId.", permanent=True, kind="validation"
            )
        return cid

    def _schedule(self, send_at: datetime | None) -> str:
        """``TimeScheduled`` (``YYYYMMDDHHMM`` in the account's zone), or "" to send now."""
        if send_at is None:
            return ""
        if send_at.tzinfo is None:
            raise ProviderError(
                f"Schedule time {send_at!r} has no time zone; pass an aware datetime.",
                permanent=True,
                kind="validation",
            )
        # A time already reached is sent now: the API refuses past times (-110).
        if send_at <= datetime.now(UTC):
            return ""
        return send_at.astimezone(self.tz).strftime("%Y%m%d%H%M")

    def format_sender(self, sender: str) -> str:
        """Numbers travel without ``+`` ("Only MSISDNs in international format
        without the + sign are accepted")."""
        sender = (sender or "").strip()
        if sender.startswith("+") and sender[1:].isdigit():
            return sender[1:]
        return sender

    _originator = format_sender

    # ---------------------------------------------------------------- send
    # One provider campaign (``create``) per (body, sender, schedule) group,
    # cut at ``max_batch`` by the base flow.
    send_path = "/campaign"

    def build_payload(self, batch: list[OutboundSms]) -> dict[str, Any]:
        first = batch[0]
        payload: dict[str, Any] = {"Message": first.body}
        originator = self.format_sender(first.sender)
        if originator:
            payload["Originator"] = originator
        # Traces the campaign back to our messages in their web interface.
        payload["Reference"] = first.reference
        scheduled = self._schedule(first.send_at)
        if scheduled:
            payload["TimeScheduled"] = scheduled
        payload["Destinations"] = [to_msisdn(sms.to) for sms in batch]
        payload["Action"] = "create"
        return payload

    def parse_results(self, answer: Any, batch: list[OutboundSms]) -> list[SendResult]:
        """``{Code, CampaignId, Messages, Segments, Credits}``: every
        destination accepted under ``<CampaignId>-<msisdn>``, except the ones
        the provider washed against its opt-out list ("accepted N of M":
        ``Messages`` below the destinations sent), which come back refused
        with ``ErrorKind.OPTED_OUT`` (found through the opt-out list)."""
        if not isinstance(answer, Mapping) or not answer.get("CampaignId"):
            raise ProviderError(
                "SMS Everyone send: the answer has no CampaignId; the campaign may exist at "
                "the provider.",
                kind="protocol",
                maybe_processed=True,
            )
        campaign_id = str(answer["CampaignId"])
        code = _int(answer.get("Code")) or 0
        held = batch[0].send_at is not None and bool(self._schedule(batch[0].send_at))
        held = held or code in HELD_CODES
        count = _int(answer.get("Messages"))
        washed = self._washed(campaign_id, batch, count)
        credits = _decimal(answer.get("Credits"))
        per_message = None
        if credits is not None and count:
            share = credits / count
            if share == share.quantize(Decimal("0.01")):
                per_message = share
        results = []
        for sms in batch:
            msisdn = to_msisdn(sms.to)
            if msisdn in washed:
                results.append(
                    refused_result(
                        sms,
                        kind=ErrorKind.OPTED_OUT,
                        code="optout",
                        message=(
                            f"SMS Everyone dropped {sms.to}: it is on the account's opt-out "
                            "list at SMS Everyone."
                        ),
                    )
                )
                continue
            results.append(
                accepted_result(
                    sms,
                    status=DeliveryStatus.QUEUED if held else DeliveryStatus.SENT,
                    provider_ref=f"{campaign_id}-{msisdn}",
                    provider_batch_ref=campaign_id,
                    raw_status=str(code),
                    credits=per_message,
                )
            )
        return results

    def _washed(self, campaign_id: str, batch: list[OutboundSms], count: int | None) -> set[str]:
        """The destinations of ``batch`` the provider dropped for opt-out,
        when it accepted fewer than it was sent. The answer does not say
        which; the opt-out list it washed against does. Numbers dropped for
        another reason cannot be told apart: they stay accepted (and are
        logged), as the provider gives no id to reconcile them by."""
        if count is None or count >= len(batch):
            return set()
        try:
            listed = {to_msisdn_or_raw(o.number) for o in self.optouts_list()}
        except ProviderError as exc:
            logger.warning(
                "SMS Everyone campaign %s accepted %s of %s destinations; the opt-out list "
                "could not be read to tell which (%s).",
                campaign_id,
                count,
                len(batch),
                exc,
            )
            return set()
        washed = {to_msisdn(sms.to) for sms in batch} & listed
        if len(batch) - len(washed) != count:
            logger.warning(
                "SMS Everyone campaign %s accepted %s of %s destinations; %s of them are on "
                "the opt-out list.",
                campaign_id,
                count,
                len(batch),
                len(washed),
            )
        return washed

    # ------------------------------------------------------------ receipts
    def fetch_statuses(self, refs: list[ProviderRef]) -> list[StatusUpdate]:
        """Delivery receipts for ``refs``: one ``/api/DRStatus`` call per
        provider campaign (with ``Destination`` when only one number of it is
        asked). Messages without a receipt yet are absent. A campaign the
        provider does not know is skipped with a warning."""
        wanted: dict[int, set[str]] = {}
        for ref in refs:
            campaign_id = self._campaign_id(ref)
            if ref.to:
                msisdn = to_msisdn_or_raw(ref.to)
            else:
                msisdn = ref.provider_ref.split("-", 1)[1] if "-" in ref.provider_ref else ""
            wanted.setdefault(campaign_id, set()).add(msisdn)
        updates: list[StatusUpdate] = []
        for campaign_id, numbers in wanted.items():
            payload: dict[str, Any] = {"CampaignId": campaign_id}
            if len(numbers) == 1 and "" not in numbers:
                payload["Destination"] = next(iter(numbers))
            try:
                answer = self.call("/DRStatus", payload, operation="delivery status")
            except ProviderError as exc:
                if exc.kind == "not_found":
                    logger.warning("SMS Everyone: %s", exc)
                    continue
                raise
            for item in answer.get("Destinations") or []:
                update = self._receipt(campaign_id, item)
                if update is not None and ("" in numbers or to_msisdn_or_raw(update.to) in numbers):
                    updates.append(update)
        return updates

    def _receipt(self, campaign_id: int, item: Any) -> StatusUpdate | None:
        if not isinstance(item, Mapping) or not item.get("Destination"):
            return None
        destination = str(item["Destination"])
        found = item.get("Status")
        status: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        raw = status.get("DeliveryReceiptStatusId")
        carrier_code = status.get("Code")
        error_code = "" if carrier_code in (None, "", 0, "0") else str(carrier_code)
        return StatusUpdate(
            status=map_status(DR_STATUS, raw),
            provider_ref=f"{campaign_id}-{to_msisdn_or_raw(destination)}",
            to=to_e164(destination),
            raw_status="" if raw is None else str(raw),
            error_code=error_code,
            error_message=CARRIER_CODES.get(error_code, ""),
            occurred_at=parse_local_datetime(item.get("TimeStamp"), self.tz),
        )

    # ------------------------------------------------------------- replies
    def _reply_poll_guard(self) -> None:
        """Refuse a poll sooner than ``min_reply_poll_interval`` after the last
        one for this account, across all processes (the shared cache)."""
        from django.core.cache import cache

        who = (
            self.account_key
            or hashlib.sha256(str(self.credentials.get("username", "")).encode()).hexdigest()[:16]
        )
        key = f"smsoffice:replies-poll:{self.name}:{who}"
        now = time.time()
        if not cache.add(key, now, timeout=int(self.min_reply_poll_interval)):
            last = cache.get(key) or now
            wait = max(1.0, self.min_reply_poll_interval - (now - float(last)))
            raise ProviderError(
                f"SMS Everyone replies may be polled at most once a minute; try again in "
                f"{wait:.0f} s.",
                kind="rate_limit",
                retry_after=wait,
            )

    def fetch_replies(self) -> list[InboundSms]:
        """Replies not retrieved before (``/api/replies`` with ``{}``: the
        provider flags what it returns), at most once a minute per account."""
        payload: dict[str, Any] = {}
        self._reply_poll_guard()
        answer = self.call("/replies", payload, operation="replies")
        replies = []
        for item in answer.get("Messages") or []:
            if not isinstance(item, Mapping) or not item.get("Originator"):
                logger.warning("SMS Everyone reply without Originator skipped: %r", item)
                continue
            text = str(item.get("MessageText") or "")
            number = to_e164(str(item["Originator"]))
            replies.append(
                InboundSms(
                    from_number=number,
                    body=text,
                    received_at=parse_local_datetime(item.get("Received"), self.tz)
                    or datetime.now(UTC),
                    provider_ref=reply_ref(str(item.get("ReferenceId") or ""), number, text),
                    to_number=to_e164(str(item.get("Recipient") or "")),
                    raw=dict(item),
                )
            )
        return replies

    def parse_webhook(self, request) -> list[StatusUpdate | InboundSms]:
        """A reply pushed as HTTP GET with query parameters ``originator``,
        ``recipient``, ``reference``, ``message_text`` (and ``username``/
        ``password``, which are dropped). Raises WebhookError when the sender
        or the text is missing."""
        source = request.GET if request.GET else request.POST
        params = {str(k).lower(): v for k, v in source.items()}
        originator = (params.get("originator") or "").strip()
        if not originator:
            raise WebhookError("SMS Everyone reply without 'originator' (the sender's number).")
        number = to_e164(originator)
        if not number[1:].isdigit():
            raise WebhookError(f"SMS Everyone reply 'originator' {originator!r} is not a number.")
        if "message_text" not in params:
            raise WebhookError("SMS Everyone reply without 'message_text'.")
        text = params["message_text"]
        raw = {k: v for k, v in params.items() if k not in ("username", "password")}
        recipient = (params.get("recipient") or "").strip()
        return [
            InboundSms(
                from_number=number,
                body=text,
                received_at=datetime.now(UTC),
                provider_ref=reply_ref(params.get("reference") or "", number, text),
                to_number=to_e164(recipient) if recipient else "",
                raw=raw,
            )
        ]

    def webhook_response(self, request):
        """The doc: "respond with nothing but a 0 (zero) … Just plain text"."""
        from django.http import HttpResponse

        return HttpResponse("0", content_type="text/plain")

    # ------------------------------------------------------------- credits
    def user_settings(self) -> dict[str, Any]:
        """``/api/RetrieveUserSettings``: UserId, AllowUnicode, AllowInternational, Credits."""
        return self.call("/RetrieveUserSettings", {}, operation="balance")

    def account_settings(self) -> AccountSettings:
        """``AllowUnicode`` and ``AllowInternational`` from
        ``/api/RetrieveUserSettings``. SMS Everyone is an Australian service
        ("messaging is limited to Australia only" when not international).
        The doc shows no time zone there; one is read if the answer ever
        carries a valid ``TimeZone``, else the account keeps the zone staff
        set (the doc: "represented in your local time or UTC. Just let us
        know what you prefer")."""
        answer = self.user_settings()

        def flag(key: str) -> bool | None:
            value = answer.get(key)
            return value if isinstance(value, bool) else None

        zone = str(answer.get("TimeZone") or "").strip()
        try:
            ZoneInfo(zone) if zone else None
        except (ZoneInfoNotFoundError, ValueError):
            logger.warning("SMS Everyone TimeZone %r is not a zone name; ignored.", zone)
            zone = ""
        return AccountSettings(
            allows_unicode=flag("AllowUnicode"),
            allows_international=flag("AllowInternational"),
            home_country=HOME_COUNTRY,
            time_zone=zone,
        )

    def balance(self) -> Decimal:
        answer = self.user_settings()
        credits = _decimal(answer.get("Credits"))
        if credits is None:
            raise ProviderError("SMS Everyone balance: the answer has no Credits.", kind="protocol")
        return credits

    def top_up(self, credits: Decimal | int) -> Decimal:
        """Add whole ``credits`` to this account (``/api/credits``, authenticated
        as this account); returns the new balance."""
        amount = _decimal(credits)
        if amount is None or amount <= 0 or amount != amount.to_integral_value():
            raise ProviderError(
                f"SMS Everyone tops up whole credits above zero; {credits!r} is not one.",
                permanent=True,
                kind="validation",
            )
        answer = self.call(
            "/credits", {"credits": int(amount), "action": "add"}, operation="top-up"
        )
        balance = _decimal(answer.get("Credits"))
        if balance is None:
            raise ProviderError(
                "SMS Everyone top-up: the answer has no Credits; check the balance.",
                kind="protocol",
                maybe_processed=True,
            )
        return balance

    # ------------------------------------------------------------- opt-outs
    def optouts_list(self) -> list[RemoteOptOut]:
        answer = self.call("/optouts", {"Action": "list"}, operation="opt-out list")
        return [
            RemoteOptOut(
                number=to_e164(str(item.get("Originator", ""))),
                added_at=parse_local_datetime(item.get("Added"), self.tz),
                reason=str(item.get("Reason") or ""),
                text=str(item.get("MessageText") or ""),
            )
            for item in answer.get("OptOut") or []
            if isinstance(item, Mapping) and item.get("Originator")
        ]

    def optouts_remove(self, numbers: list[str]) -> None:
        """``/api/optouts`` ``Action: delete`` ("opt the number back in")."""
        if numbers:
            self.call(
                "/optouts",
                {"Action": "delete", "Originator": [to_msisdn(n) for n in numbers]},
                operation="opt-in",
            )
