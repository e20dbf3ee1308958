"""Apply what providers report: delivery statuses and replies.

Both webhooks (:mod:`campaigns.webhooks`) and the polling tasks feed the
backends' normalised value objects in here, so a report has the same effect
whichever way it arrives, as often as it arrives.

Matching a report to a message, within the account's campaigns:

1. ``provider_ref`` (the provider's message id), when we recorded it;
2. else our ``reference`` ``f"m{message.pk}"``. A provider that tags a whole
   batch with one reference (The SMS Works) tags it with its first message's
   reference; when the report's ``to`` is another number, the message is
   the one to that number in the same campaign and batch.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from campaigns.counters import counters_move_many
from campaigns.inbox import conversation_note_inbound
from campaigns.models import Campaign, InboundMessage, Message
from contacts.models import Contact, OptOut
from contacts.phones import try_normalize_phone
from contacts.services import optout_add, optout_opt_in
from providers.backends import backend_class
from providers.backends.base import STATUS_RANK, DeliveryStatus, InboundSms, StatusUpdate
from providers.models import ProviderAccount
from providers.services import credits_refund_many
from smsoffice.logredact import redact_text

logger = logging.getLogger("campaigns.reports")

MS = Message.Status
DS = DeliveryStatus

#: Rows per query. Fewer, larger queries roughly double the throughput
#: against 500; 2,000 stays well under the bound-parameter limit of SQLite
#: 3.32+ (32,766) and of PostgreSQL (65,535). Older SQLite allows 999.
CHUNK = 2000 if sqlite3.sqlite_version_info >= (3, 32) else 500

#: Provider ids per lookup on PostgreSQL. With statistics, PostgreSQL
#: prices 2,000 probes of the provider id index above one sequential scan of
#: a table of ~100k messages, and scans (20 ms against 2 ms); at 500 it
#: always probes the index.
REF_CHUNK_POSTGRESQL = 500

#: A report may move a message only out of these statuses.
UPDATABLE = frozenset({MS.SENT, MS.UNKNOWN})
#: Not yet recorded as sent (the send call may still be in flight): a report
#: for these waits for the engine to record the send, and is answered
#: "try again later" (webhooks) or picked up by the next poll.
PENDING = frozenset({MS.QUEUED, MS.SUBMITTING})

#: The statuses a report can set. A provider's "queued" (scheduled at the
#: provider) never moves a message back to our queue, which would send it again.
TARGETS: dict[DeliveryStatus, str] = {
    DS.SENT: MS.SENT,
    DS.DELIVERED: MS.DELIVERED,
    DS.UNDELIVERED: MS.UNDELIVERED,
    DS.EXPIRED: MS.EXPIRED,
    DS.REJECTED: MS.REJECTED,
    DS.FAILED: MS.FAILED,
}

#: What ``SmsBackend.refunds_failed`` covers.
REFUNDED_BY_BACKEND = frozenset({MS.UNDELIVERED, MS.EXPIRED, MS.REJECTED})
#: Where an update's own ``refunded=True`` is honoured.
REFUNDABLE = REFUNDED_BY_BACKEND | {MS.FAILED}
#: The statuses whose credits were charged (the engine charges ``unknown``
#: too: the provider most likely took the message), so a refund can come
#: out of them.
CHARGED = frozenset({MS.SENT, MS.UNKNOWN})

REFERENCE = re.compile(r"^m(\d+)$")


#: By plain string, so the per-row check builds no enum members.
_RANKS: dict[str, int] = {str(status): rank for status, rank in STATUS_RANK.items()}


def _rank(status: str) -> int:
    return _RANKS.get(status, 0)


def _chunks(values: Sequence, size: int = CHUNK) -> Iterable[Sequence]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


@dataclass(slots=True)
class _Row:
    pk: int
    campaign_id: int
    phone: str
    provider_ref: str
    provider_batch_ref: str


_ROW_FIELDS = ("pk", "campaign_id", "phone", "provider_ref", "provider_batch_ref")


def _match(account: ProviderAccount, updates: Sequence[StatusUpdate]) -> list[int | None]:
    """The message id each update is about (``None``: not one of ours)."""
    # Filtering on the account's campaigns in Python, not with a join: with the
    # join SQLite picks the campaign index and walks every message of the
    # account for each chunk, so applying reports slowed as the table grew.
    campaign_ids = set(Campaign.objects.filter(account_id=account.pk).values_list("pk", flat=True))
    messages = Message.objects.order_by()
    matched: list[int | None] = [None] * len(updates)

    by_ref: dict[str, list[_Row]] = defaultdict(list)
    refs = sorted({u.provider_ref for u in updates if u.provider_ref})
    size = REF_CHUNK_POSTGRESQL if connection.vendor == "postgresql" else CHUNK
    for chunk in _chunks(refs, size):
        # ``exclude("")`` lets the database use the partial provider_ref index.
        by_provider_ref = messages.filter(provider_ref__anyof=frozenset(chunk)).exclude(
            provider_ref=""
        )
        for values in by_provider_ref.values_list(*_ROW_FIELDS):
            if values[1] in campaign_ids:
                by_ref[values[3]].append(_Row(*values))

    pending_refs: list[int] = []
    for i, update in enumerate(updates):
        rows = by_ref.get(update.provider_ref) if update.provider_ref else None
        if rows:
            if len(rows) == 1:
                matched[i] = rows[0].pk
            else:
                # One provider id for several messages (a provider that ids
                # the batch): the recipient decides.
                same = [r.pk for r in rows if r.phone == update.to]
                matched[i] = same[0] if len(same) == 1 else None
        if matched[i] is None and REFERENCE.match(update.reference or ""):
            pending_refs.append(i)

    if not pending_refs:
        return matched
    pks = sorted({int(REFERENCE.match(updates[i].reference).group(1)) for i in pending_refs})
    by_pk: dict[int, _Row] = {}
    for chunk in _chunks(pks):
        for values in messages.filter(pk__anyof=frozenset(chunk)).values_list(*_ROW_FIELDS):
            if values[1] in campaign_ids:
                by_pk[values[0]] = _Row(*values)

    siblings_wanted: dict[int, set[str]] = defaultdict(set)
    for i in pending_refs:
        row = by_pk.get(int(REFERENCE.match(updates[i].reference).group(1)))
        if row is None:
            continue
        to = updates[i].to
        if not to or to == row.phone:
            matched[i] = row.pk
        else:
            siblings_wanted[row.campaign_id].add(to)
    if siblings_wanted:
        siblings: dict[tuple[int, str], _Row] = {}
        for campaign_id, phones in siblings_wanted.items():
            for chunk in _chunks(sorted(phones)):
                rows = messages.filter(campaign_id=campaign_id, phone__in=chunk)
                for values in rows.values_list(*_ROW_FIELDS):
                    siblings[(values[1], values[2])] = _Row(*values)
        for i in pending_refs:
            if matched[i] is not None:
                continue
            row = by_pk.get(int(REFERENCE.match(updates[i].reference).group(1)))
            if row is None:
                continue
            sibling = siblings.get((row.campaign_id, updates[i].to))
            # Same batch only: a number may be in the campaign twice over
            # time (never: (campaign, phone) is unique) but not in another batch.
            if sibling is not None and (
                not row.provider_batch_ref
                or not sibling.provider_batch_ref
                or sibling.provider_batch_ref == row.provider_batch_ref
            ):
                matched[i] = sibling.pk
    return matched


def statuses_apply(*, account: ProviderAccount, updates: list[StatusUpdate]) -> dict[str, int]:
    """Apply delivery reports to the messages of ``account``'s campaigns.

    Contract:

    - A message moves only forward (``STATUS_RANK``): out of ``sent`` or
      ``unknown``, to a higher rank; a final status (delivered, undelivered,
      expired, rejected, failed) and skipped/cancelled are never overwritten,
      so a late "sent" never undoes "delivered" and the first final wins.
      Several reports for one message in one call: the highest rank wins.
    - Idempotent: the same reports again change nothing and refund nothing.
    - ``raw_status``, ``error_code``, ``raw_error`` and ``status_at`` are
      written with the status; the provider id is recorded on a message that
      had none (a batch member reported by destination).
    - One ``UPDATE`` per (from, to, raw status, error) group, by id, of rows
      locked when their old status was read; campaign counters move in the
      same transaction.
    - A message that was charged (``sent`` or ``unknown``) and ends
      undelivered, expired, rejected or failed is refunded when the report
      says ``refunded``, or when the backend ``refunds_failed`` and the
      status is undelivered, expired or rejected. The refunds of one call
      are ONE ledger row per campaign (``credits_refund_many``, reference
      ``campaign:<id>``, the count, the message ids and the call's
      ``refund:apply:<uuid>`` in its note), and each refunded message's
      ``status_reason`` names that ``refund:apply:<uuid>``.
    - Reports for messages still queued/submitting are not applied
      (``deferred``): their send is not recorded yet.
    - A report that maps to no status (``DeliveryStatus.UNKNOWN``) on a
      ``sent``/``unknown`` message leaves its status alone but keeps the
      provider's raw code and text (``raw_status``, ``error_code``,
      ``raw_error``) and sets ``report_unmapped`` (``raw_kept``), so staff
      can see and filter them; a later mapped report moves it as usual and
      clears the flag.

    Returns counts: ``received``, ``applied``, ``raw_kept``, ``unchanged``
    (duplicate or stale), ``deferred``, ``unmatched`` (logged), ``refunded``.
    """
    counts: Counter[str] = Counter(received=len(updates))
    if not updates:
        return _counts(counts)
    backend_refunds = getattr(backend_class(account.backend), "refunds_failed", False)
    now = timezone.now()
    refund_reference = f"refund:apply:{uuid.uuid4().hex}"

    with transaction.atomic():
        matched = _match(account, updates)
        # The report that counts per message: highest rank, first among equals.
        best: dict[int, StatusUpdate] = {}
        for update, pk in zip(updates, matched, strict=True):
            if pk is None:
                counts["unmatched"] += 1
                logger.info(
                    "account %s: report for an unknown message (provider id %r, reference %r, "
                    "to %s, status %s); ignored",
                    account.pk,
                    update.provider_ref,
                    update.reference,
                    update.to or "-",
                    update.raw_status or update.status,
                )
                continue
            if pk in best:
                counts["unchanged"] += 1  # one of the two reports changes nothing
                if STATUS_RANK[update.status] <= STATUS_RANK[best[pk].status]:
                    continue
            best[pk] = update

        groups: dict[tuple, list[int]] = defaultdict(list)
        raw_groups: dict[tuple, list[int]] = defaultdict(list)
        campaign_of: dict[int, int] = {}
        credits_of: dict[int, Decimal] = {}
        provider_refs: list[tuple[int, str]] = []
        for chunk in _chunks(sorted(best)):
            # Row locks (PostgreSQL) in pk order on the rows a report may change,
            # so concurrent reports neither double-count nor deadlock; SQLite's
            # IMMEDIATE transaction serialises. Rows being sent or already final
            # are only read: locking them could wait on the dispatcher.
            fields = ("pk", "campaign_id", "status", "credits", "provider_ref")
            rows = list(
                Message.objects.select_for_update()
                .filter(pk__anyof=frozenset(chunk), status__in=UPDATABLE)
                .order_by("pk")
                .values_list(*fields)
            )
            if len(rows) < len(chunk):
                locked = {row[0] for row in rows}
                rest = [pk for pk in chunk if pk not in locked]
                rows += (
                    Message.objects.filter(pk__anyof=frozenset(rest))
                    .order_by()
                    .values_list(*fields)
                )
            for pk, campaign_id, status, credits, provider_ref in rows:
                update = best[pk]
                if status in PENDING:
                    counts["deferred"] += 1
                    continue
                if not provider_ref and update.provider_ref:
                    provider_refs.append((pk, update.provider_ref[:100]))
                target = TARGETS.get(update.status)
                if status in UPDATABLE and update.status == DS.UNKNOWN:
                    # A report we cannot map: the status stays, the provider's
                    # own code and text are kept and the row is flagged.
                    raw_key = (
                        status,
                        update.raw_status[:100],
                        update.error_code[:50],
                        update.error_message,
                    )
                    raw_groups[raw_key].append(pk)
                    continue
                if status not in UPDATABLE or target is None or _rank(target) <= _rank(status):
                    counts["unchanged"] += 1
                    if status in (MS.CANCELLED, MS.SKIPPED) and target is not None:
                        logger.warning(
                            "message %s is %s but the provider reports %s",
                            pk,
                            status,
                            update.raw_status or target,
                        )
                    continue
                refund = (
                    status in CHARGED
                    and credits > 0
                    and (
                        (update.refunded and target in REFUNDABLE)
                        or (backend_refunds and target in REFUNDED_BY_BACKEND)
                    )
                )
                key = (
                    status,
                    target,
                    update.raw_status[:100],
                    update.error_code[:50],
                    redact_text(update.error_message),  # providers may echo secrets
                    refund,
                )
                groups[key].append(pk)
                campaign_of[pk] = campaign_id
                credits_of[pk] = credits

        moves: dict[int, Counter] = defaultdict(Counter)
        refunds: list[int] = []
        for (old, new, raw_status, error_code, raw_error, refund), pks in groups.items():
            fields = {
                "status": new,
                "raw_status": raw_status,
                "error_code": error_code,
                "raw_error": raw_error,
                "status_at": now,
                "report_unmapped": False,
            }
            if refund:
                fields["status_reason"] = f"Refunded by the provider ({refund_reference})."
            for chunk in _chunks(pks):
                # By id alone: the rows are locked (read above FOR UPDATE in
                # ``old``; SQLite's IMMEDIATE transaction) and cannot have
                # moved. ``AND status = old`` let PostgreSQL, with statistics
                # from before the send (every message queued), take it for
                # the selective part and scan an index of every sent message
                # for each chunk instead of looking the ids up by primary key.
                done = Message.objects.filter(pk__anyof=frozenset(chunk)).update(**fields)
                if done != len(chunk):  # pragma: no cover - rows are locked above
                    # A row gone: neither the counters nor the refunds of this
                    # call can be right, so undo the whole call.
                    raise RuntimeError(
                        f"status apply on account {account.pk}: only {done} of {len(chunk)} "
                        f"{old} messages were found; nothing applied, the reports can be "
                        "applied again."
                    )
                for pk in chunk:
                    moves[campaign_of[pk]][(old, new)] += 1
            counts["applied"] += len(pks)
            if refund:
                refunds.extend(pks)
        for (_old, raw_status, error_code, raw_error), pks in raw_groups.items():
            for chunk in _chunks(pks):
                Message.objects.filter(pk__anyof=frozenset(chunk)).update(  # locked, as above
                    raw_status=raw_status,
                    error_code=error_code,
                    raw_error=raw_error,
                    status_at=now,
                    report_unmapped=True,
                )
            counts["raw_kept"] += len(pks)
        counters_move_many(moves_by_campaign=moves)
        if refunds:
            # Exactly once without a key per message: a message is in
            # ``refunds`` only if the guarded UPDATE above (``status=old``, a
            # charged status, rows locked) moved it to a final status in THIS
            # transaction, and the ledger row is written in the same one. A
            # report seen again finds the message final and refunds nothing; a
            # failure rolls back the status changes and the refund together.
            # One ledger row per campaign (ascending pk), under the campaign's
            # own reference so every row of a campaign is found by
            # ``campaign:<id>``; the note names this call's refund reference,
            # which the messages' status reasons give.
            by_campaign: dict[int, list[int]] = defaultdict(list)
            for pk in sorted(refunds):
                by_campaign[campaign_of[pk]].append(pk)
            for campaign_id in sorted(by_campaign):
                pks = by_campaign[campaign_id]
                amount = sum((credits_of[pk] for pk in pks), Decimal(0))
                # ``credits_charged`` is what the campaign costs net of refunds,
                # as ``campaign_resolve_unknown`` keeps it: it always equals
                # minus the ledger amounts under ``campaign:<id>``.
                Campaign.objects.filter(pk=campaign_id).update(
                    credits_charged=F("credits_charged") - amount
                )
                credits_refund_many(
                    account=account,
                    amount=amount,
                    reference=f"campaign:{campaign_id}",
                    count=len(pks),
                    note=(
                        f"Delivery reports ({refund_reference}); messages {_id_ranges(pks)} "
                        "(each one's status reason names this reference)."
                    ),
                )
            counts["refunded"] = len(refunds)
        if provider_refs:
            Message.objects.bulk_update(
                [Message(pk=pk, provider_ref=ref) for pk, ref in provider_refs],
                ["provider_ref"],
                batch_size=CHUNK,
            )
    return _counts(counts)


# --------------------------------------------------------- polling schedule

#: How long a message in flight is left before its status is asked again,
#: by its age since it was sent: often while receipts usually come, then less
#: and less (a receipt may never come, or maps to nothing we know), until the
#: poll gives up on it (``campaigns.tasks.POLL_MAX_AGE``).
POLL_LADDER: tuple[tuple[timedelta, timedelta], ...] = (
    (timedelta(minutes=15), timedelta(minutes=1)),
    (timedelta(hours=1), timedelta(minutes=5)),
    (timedelta(hours=6), timedelta(minutes=15)),
    (timedelta(days=1), timedelta(hours=1)),
)
POLL_LAST_INTERVAL = timedelta(hours=4)


def poll_interval(age: timedelta) -> timedelta:
    """The wait before asking again about a message sent ``age`` ago."""
    for younger_than, interval in POLL_LADDER:
        if age < younger_than:
            return interval
    return POLL_LAST_INTERVAL


def poll_due(messages: QuerySet[Message], *, now: datetime) -> QuerySet[Message]:
    """``messages`` whose status may be asked about now (never asked, or
    their :func:`poll_interval` has passed)."""
    return messages.filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now))


def polls_record(*, asked: Sequence[tuple[int, datetime | None]], now: datetime) -> None:
    """Record that the messages ``asked`` (``(id, sent_at)`` pairs) were just
    polled: each is due again after its :func:`poll_interval`. One UPDATE per
    interval step."""
    by_interval: dict[timedelta, list[int]] = defaultdict(list)
    for pk, sent_at in asked:
        by_interval[poll_interval(now - (sent_at or now))].append(pk)
    for interval, pks in by_interval.items():
        for chunk in _chunks(sorted(pks)):
            Message.objects.filter(pk__in=chunk).update(next_poll_at=now + interval)


def _id_ranges(pks: Sequence[int]) -> str:
    """Sorted ids as compact ranges: ``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    parts: list[str] = []
    start = prev = pks[0]
    for pk in [*pks[1:], None]:
        if pk is not None and pk == prev + 1:
            prev = pk
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if pk is not None:
            start = prev = pk
    return ", ".join(parts)


def _counts(counts: Counter[str]) -> dict[str, int]:
    keys = ("received", "applied", "raw_kept", "unchanged", "deferred", "unmatched", "refunded")
    return {key: counts.get(key, 0) for key in keys}


# ------------------------------------------------------------------ replies

OPT_OUT_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"}
)
OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP"})

_EDGES = re.compile(r"^[\W_]+|[\W_]+$")
_INNER = re.compile(r"[\s\-_.]+")


def keyword_action(body: str) -> str:
    """``"opt_out"``, ``"opt_in"`` or ``""`` for a reply's text.

    The whole reply must be the keyword, in any case, with any spaces or
    punctuation around it ("stop", " Stop. ", "STOP!!"); inner spaces and
    hyphens are ignored ("stop all", "opt-out"). A sentence that merely
    contains the word ("please don't stop") is not a keyword.
    """
    core = _INNER.sub("", _EDGES.sub("", body or "")).upper()
    if core in OPT_OUT_KEYWORDS:
        return "opt_out"
    if core in OPT_IN_KEYWORDS:
        return "opt_in"
    return ""


def inbound_apply(*, account: ProviderAccount, messages: list[InboundSms]) -> list[InboundMessage]:
    """Store replies received on ``account`` and act on keywords.

    Contract:

    - One InboundMessage per (account, provider ref): a reply seen again
      (webhook retried, poll overlapping) returns the stored row and does
      nothing else, also under concurrent deliveries.
    - The number is stored as E.164; the contact with that number and the
      latest message of this account's campaigns that reached it
      (``in_reply_to``, its ``campaign``) are linked — the provider's own
      "in reply to" id wins when given.
    - STOP keywords (:data:`OPT_OUT_KEYWORDS`) opt the number out at once
      (source "keyword", reference ``inbound:<id>``, this account); START/UNSTOP
      opt it back in only if a STOP on this account opted it out
      (:func:`contacts.services.optout_opt_in`). ``action`` records which.
      Replies are handled in the order they were received, so STOP then
      START on one account ends opted in.

    Returns the rows in the order of ``messages``.
    """
    order = sorted(range(len(messages)), key=lambda i: messages[i].received_at)
    rows: dict[int, InboundMessage] = {}
    with transaction.atomic():
        for i in order:
            rows[i] = _inbound_one(account, messages[i])
    return [rows[i] for i in range(len(messages))]


def _inbound_one(account: ProviderAccount, sms: InboundSms) -> InboundMessage:
    ref = (sms.provider_ref or "")[:100]
    if ref:
        seen = InboundMessage.objects.filter(account=account, provider_ref=ref).first()
        if seen is not None:
            return seen
    phone = try_normalize_phone(sms.from_number)
    body = sms.body or ""
    # A sender we cannot read as a number is stored as given, never opted out.
    action = ("opt_out" if sms.opt_out else keyword_action(body)) if phone else ""
    replied = _replied_message(account, sms, phone)
    try:
        with transaction.atomic():
            inbound = InboundMessage.objects.create(
                account=account,
                phone=phone or (sms.from_number or "").strip()[:16],
                to_number=(sms.to_number or "")[:20],
                body=body,
                received_at=sms.received_at,
                provider_ref=ref,
                contact=Contact.objects.filter(phone=phone).first() if phone else None,
                in_reply_to=replied,
                campaign_id=replied.campaign_id if replied is not None else None,
                action=action,
                raw=sms.raw or {},
            )
            if action == "opt_out":
                optout_add(
                    phone=phone,
                    source=OptOut.Source.KEYWORD,
                    reason=f"Replied {body.strip()[:60]!r}",
                    source_reference=f"inbound:{inbound.pk}",
                    account_id=account.pk,
                )
            elif action == "opt_in":
                optout_opt_in(
                    phone=phone, account_id=account.pk, source_reference=f"inbound:{inbound.pk}"
                )
            conversation_note_inbound(inbound=inbound)  # the inbox row, same transaction
    except IntegrityError:
        if not ref:
            raise
        # The same reply stored by a concurrent delivery.
        return InboundMessage.objects.get(account=account, provider_ref=ref)
    if action:
        logger.info("account %s: %s from %s (inbound %s)", account.pk, action, phone, inbound.pk)
    return inbound


def _replied_message(account: ProviderAccount, sms: InboundSms, phone: str | None):
    mine = Message.objects.filter(campaign__account_id=account.pk)
    if sms.in_reply_to_provider_ref:
        found = mine.filter(provider_ref=sms.in_reply_to_provider_ref).first()
        if found is not None:
            return found
    if not phone:
        return None
    return (
        mine.filter(phone=phone, status__in=(MS.SENT, MS.DELIVERED))
        .filter(Q(sent_at__isnull=True) | Q(sent_at__lte=sms.received_at))
        .order_by(F("sent_at").desc(nulls_last=True), "-id")
        .first()
    )
