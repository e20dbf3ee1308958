"""The audit trail, read from the records each part already keeps.

One timeline of who did what and when, merged newest first from:

- the admin's ``LogEntry`` (additions, changes and deletions made in the
  admin, credential changes included, and one entry per import);
- ``CampaignEvent`` (send, schedule, pause, resume, cancel, engine moves);
- the credit ledger's person-made movements (top-ups, transfers,
  adjustments, provider syncs; not the engine's per-message reserve/charge);
- ``OptOutEvent`` (every opt-out, START and removal).

Nothing is copied: the page reads the sources, filtered by user, source and
an object text, and pages backwards in time with a ``before`` cursor.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.db.models import Q, QuerySet
from django.urls import NoReverseMatch, reverse

from campaigns.models import CampaignEvent
from contacts.models import OptOutEvent
from providers.models import CreditTransaction

#: Ledger kinds a person (or a provider sync) causes; the others are the
#: engine's bookkeeping per message and would drown the page.
AUDITED_LEDGER_KINDS = [
    CreditTransaction.Kind.TOP_UP,
    CreditTransaction.Kind.TRANSFER_OUT,
    CreditTransaction.Kind.TRANSFER_IN,
    CreditTransaction.Kind.ADJUSTMENT,
    CreditTransaction.Kind.PROVIDER_SYNC,
]

SOURCES = {
    "admin": "Admin changes and imports",
    "campaign": "Campaigns",
    "credits": "Credits",
    "optout": "Opt-outs",
}

_ADMIN_VERBS = {ADDITION: "Added", CHANGE: "Changed", DELETION: "Deleted"}


@dataclass(frozen=True)
class AuditEntry:
    when: datetime
    user: str
    source: str
    action: str
    target: str
    detail: str
    url: str = ""


def _admin_url(name: str, pk) -> str:
    try:
        return reverse(name, args=[pk])
    except NoReverseMatch:
        return ""


def _recent(qs: QuerySet, field: str, before: datetime | None, limit: int) -> QuerySet:
    if before is not None:
        qs = qs.filter(**{f"{field}__lt": before})
    return qs.order_by(f"-{field}", "-pk")[:limit]


def _username(user) -> str:
    return user.get_username() if user is not None else "system"


def _admin_entries(user_id, text, before, limit) -> Iterator[AuditEntry]:
    qs = LogEntry.objects.select_related("user", "content_type")
    if user_id:
        qs = qs.filter(user_id=user_id)
    if text:
        qs = qs.filter(Q(object_repr__icontains=text) | Q(change_message__icontains=text))
    for e in _recent(qs, "action_time", before, limit):
        model = e.content_type.name if e.content_type else "object"
        yield AuditEntry(
            when=e.action_time,
            user=_username(e.user),
            source="admin",
            action=f"{_ADMIN_VERBS.get(e.action_flag, 'Did')} {model}",
            target=e.object_repr,
            detail=e.get_change_message(),
            url=e.get_admin_url() if e.object_id and not e.is_deletion() else "",
        )


def _campaign_entries(user_id, text, before, limit) -> Iterator[AuditEntry]:
    qs = CampaignEvent.objects.select_related("user", "campaign")
    if user_id:
        qs = qs.filter(user_id=user_id)
    if text:
        qs = qs.filter(Q(campaign__name__icontains=text) | Q(detail__icontains=text))
    for e in _recent(qs, "created_at", before, limit):
        moved = f" ({e.from_status} → {e.to_status})" if e.from_status or e.to_status else ""
        yield AuditEntry(
            when=e.created_at,
            user=_username(e.user),
            source="campaign",
            action=f"{e.action}{moved}",
            target=f"Campaign {e.campaign.name}",
            detail=e.detail,
            url=_admin_url("admin:campaigns_campaign_change", e.campaign_id),
        )


def _credit_entries(user_id, text, before, limit) -> Iterator[AuditEntry]:
    qs = CreditTransaction.objects.filter(kind__in=AUDITED_LEDGER_KINDS).select_related(
        "created_by", "account"
    )
    if user_id:
        qs = qs.filter(created_by_id=user_id)
    if text:
        qs = qs.filter(
            Q(account__name__icontains=text)
            | Q(reference__icontains=text)
            | Q(note__icontains=text)
        )
    for row in _recent(qs, "created_at", before, limit):
        yield AuditEntry(
            when=row.created_at,
            user=_username(row.created_by),
            source="credits",
            action=f"{row.get_kind_display()} {row.amount:+}",
            target=f"Account {row.account.name}",
            detail=" — ".join(p for p in (row.reference, row.note) if p),
            url=_admin_url("admin:providers_credittransaction_change", row.pk),
        )


def _optout_entries(user_id, text, before, limit) -> Iterator[AuditEntry]:
    qs = OptOutEvent.objects.select_related("created_by")
    if user_id:
        qs = qs.filter(created_by_id=user_id)
    if text:
        qs = qs.filter(
            Q(phone__icontains=text) | Q(reason__icontains=text) | Q(source_reference=text)
        )
    for e in _recent(qs, "created_at", before, limit):
        yield AuditEntry(
            when=e.created_at,
            user=_username(e.created_by),
            source="optout",
            action=f"{e.get_action_display()}: {e.get_outcome_display()}",
            target=e.phone,
            detail=" — ".join(p for p in (e.reason, e.source_reference) if p),
            url=_admin_url("admin:contacts_optoutevent_change", e.pk),
        )


_READERS = {
    "admin": _admin_entries,
    "campaign": _campaign_entries,
    "credits": _credit_entries,
    "optout": _optout_entries,
}


def audit_entries(
    *,
    user_id: int | None = None,
    source: str = "",
    text: str = "",
    before: datetime | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """The ``limit`` newest entries older than ``before``, newest first,
    by ``user_id`` (None: anyone), from ``source`` (a :data:`SOURCES` key;
    empty: all) and whose object or detail contains ``text``."""
    readers = [_READERS[source]] if source in _READERS else list(_READERS.values())
    streams = [list(read(user_id, text.strip(), before, limit)) for read in readers]
    merged = heapq.merge(*streams, key=lambda entry: entry.when, reverse=True)
    return [entry for _, entry in zip(range(limit), merged, strict=False)]
