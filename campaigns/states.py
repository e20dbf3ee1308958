"""The campaign state machine, and the message status groups, in one place.

Campaign states (``Campaign.Status``); P = a person's action, E = the engine's::

    draft ──P send_now / schedule──▶ scheduled ──E start──▶ sending ──E complete──▶ completed
                                     ↺  │  ▲                 │  ▲  │   (nothing left queued)
                 P pause, E auto_pause  │  │ P resume¹       │  │  │
                                        ▼  │                 │  │  └──E fail──▶ failed
                                       paused ◀──────────────┘  │    (the provider refuses
                                         │   P pause,           │     batch after batch)
                                         │   E auto_pause       │
                                         └──────P resume────────┘
    draft, scheduled, sending, paused ──P cancel──▶ cancelled

    ↺  send now / schedule on a scheduled campaign only moves its time.
    ¹  resume goes back to scheduled if it never started and its time is
       still ahead, else to sending.

"Send now" is a schedule for now, so it passes through ``scheduled``. The
three final states (completed, cancelled, failed) are never left.

Every transition, a person's and the engine's, is a row of
:data:`TRANSITIONS`; :func:`campaign_transition` is the one place that writes
``Campaign.status`` (a test reads the source to keep it so; the engine's
modules are allowlisted until they are wired through here).

A completed campaign can still await delivery receipts (messages ``sent``,
no report yet): :func:`status_display` says "Sent — awaiting N receipts"
rather than a bare "Completed", and the counts move as receipts arrive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured, ObjectDoesNotExist, ValidationError
from django.db.models import QuerySet
from django.utils import timezone

from campaigns.models import Campaign, CampaignEvent, Message
from providers.backends import backend_class

C = Campaign.Status
S = Message.Status

# ------------------------------------------------------------ campaign sets

#: States a campaign can still leave (cancel is possible from each).
OPEN = frozenset({C.DRAFT, C.SCHEDULED, C.SENDING, C.PAUSED})
#: States that are never left.
FINAL = frozenset({C.COMPLETED, C.CANCELLED, C.FAILED})
#: States in which the engine may be working on the campaign.
ACTIVE = frozenset({C.SCHEDULED, C.SENDING})
#: States whose content (body, recipients, account) is frozen: what was
#: quoted and reserved is what is sent.
CONTENT_FROZEN = frozenset(set(C.values) - {C.DRAFT})

# ------------------------------------------------------------- message sets

#: Not yet at the provider (the campaign's reservation covers these).
MESSAGE_PENDING = frozenset({S.QUEUED, S.SUBMITTING})
#: Accepted by the provider, no delivery receipt yet.
MESSAGE_AWAITING_RECEIPT = frozenset({S.SENT})
#: The provider took it (or most likely did): charged.
MESSAGE_CHARGED = frozenset({S.SENT, S.UNKNOWN})
#: A later provider report may still change these.
MESSAGE_UPDATABLE = frozenset({S.SENT, S.UNKNOWN})
#: Failed, at the provider or before it.
MESSAGE_FAILED = frozenset({S.UNDELIVERED, S.EXPIRED, S.REJECTED, S.FAILED})
#: Failures worth trying again (the handset was off, the network busy);
#: rejected/failed are refusals (bad number, barred) that would fail again.
MESSAGE_TEMPORARY_FAILURE = frozenset({S.UNDELIVERED, S.EXPIRED})
#: Never sent and never will be.
MESSAGE_NOT_SENT = frozenset({S.SKIPPED, S.CANCELLED})


# --------------------------------------------------------------- the table

PERSON = "person"
ENGINE = "engine"


@dataclass(frozen=True)
class Transition:
    """One named way out of some states into others."""

    action: str
    sources: frozenset[str]
    targets: frozenset[str]
    actor: str  # PERSON or ENGINE
    label: str  # the button or the audit-trail line, for people
    verb: str  # "Cannot <verb> ..."


def _t(action, sources, targets, actor, label, verb) -> Transition:
    return Transition(action, frozenset(sources), frozenset(targets), actor, label, verb)


#: Every campaign transition. Keyed by action (also ``CampaignEvent.action``).
TRANSITIONS: Mapping[str, Transition] = {
    t.action: t
    for t in (
        _t("send_now", {C.DRAFT, C.SCHEDULED}, {C.SCHEDULED}, PERSON, "Sent now", "send"),
        _t("schedule", {C.DRAFT, C.SCHEDULED}, {C.SCHEDULED}, PERSON, "Scheduled", "schedule"),
        _t("pause", {C.SCHEDULED, C.SENDING}, {C.PAUSED}, PERSON, "Paused", "pause"),
        _t("resume", {C.PAUSED}, {C.SCHEDULED, C.SENDING}, PERSON, "Resumed", "resume"),
        _t("cancel", OPEN, {C.CANCELLED}, PERSON, "Cancelled", "cancel"),
        _t("start", {C.SCHEDULED}, {C.SENDING}, ENGINE, "Started sending", "start"),
        _t(
            "auto_pause",
            {C.SCHEDULED, C.SENDING},
            {C.PAUSED},
            ENGINE,
            "Paused by the system",
            "pause",
        ),
        _t("fail", {C.SENDING}, {C.FAILED}, ENGINE, "Failed", "fail"),
        _t("complete", {C.SENDING}, {C.COMPLETED}, ENGINE, "Completed", "complete"),
    )
}

#: The operations a person may start, in the order their buttons appear.
PERSON_ACTIONS = tuple(a for a, t in TRANSITIONS.items() if t.actor == PERSON)

#: Audit-trail actions that are not transitions (the state stays), for people.
EVENT_LABELS: Mapping[str, str] = {
    **{a: t.label for a, t in TRANSITIONS.items()},
    "plan": "Recipients planned",
    "recover": "Batch reconciled with the provider",
    "credit_error": "Credit problem",
    "resolve_sent": "Unknown messages marked sent",
    "resolve_failed": "Unknown messages marked failed",
    "resolve_requeue": "Unknown messages queued again",
    "resend_failed": "Failed messages sent again as a new campaign",
}


def event_label(action: str) -> str:
    """A person's words for an audit-trail action (unknown ones tidied up)."""
    return EVENT_LABELS.get(action) or action.replace("_", " ").capitalize()


class CampaignError(ValidationError):
    """A campaign operation that cannot be done now (the message says why)."""


def allowed(status: str, action: str) -> bool:
    return status in TRANSITIONS[action].sources


def allowed_actions(status: str, *, actor: str = PERSON) -> list[str]:
    """The actions of ``actor`` that :data:`TRANSITIONS` permits from ``status``."""
    return [a for a, t in TRANSITIONS.items() if t.actor == actor and status in t.sources]


def _status_label(status: str) -> str:
    return str(C(status).label).lower()


def source_check(campaign: Campaign, action: str) -> None:
    """Raise :class:`CampaignError` (saying when it is possible) unless
    ``action`` may start from ``campaign.status``."""
    t = TRANSITIONS[action]
    if campaign.status not in t.sources:
        possible = ", ".join(_status_label(s) for s in C.values if s in t.sources)
        raise CampaignError(
            f'Cannot {t.verb} "{campaign.name}": it is {_status_label(campaign.status)} '
            f"(only possible when {possible}).",
            code="state",
        )


def transition_check(campaign: Campaign, action: str, *, to: str | None = None) -> str:
    """The target state of ``action`` from ``campaign.status``; raises
    :class:`CampaignError` (with what is possible instead) when the table
    does not allow it. ``to`` picks among several targets (resume)."""
    t = TRANSITIONS[action]
    source_check(campaign, action)
    if to is None:
        if len(t.targets) != 1:
            raise ValueError(f"{action} has several targets; say which with to=.")
        (to,) = t.targets
    if to not in t.targets:
        raise ValueError(f"{action} cannot lead to {to!r} (only {sorted(t.targets)}).")
    return to


def campaign_transition(
    *,
    campaign: Campaign,
    action: str,
    to: str | None = None,
    user=None,
    detail: str = "",
    fields: Mapping[str, Any] | None = None,
    queryset: QuerySet | None = None,
) -> str:
    """Move ``campaign`` along ``action`` of :data:`TRANSITIONS`; returns the
    state it came from.

    Contract: called inside ``transaction.atomic()`` with the campaign row
    locked (``campaign.status`` is the locked row's). Checks the table (a
    :class:`CampaignError` names the problem; nothing is written), then
    writes the status and ``fields`` in one UPDATE that is itself
    conditional on the old status, and the audit-trail event (who, from,
    to, ``detail``). ``campaign.status`` is updated in memory.
    """
    target = transition_check(campaign, action, to=to)
    from_status = campaign.status
    rows = (queryset if queryset is not None else Campaign.objects).filter(
        pk=campaign.pk, status=from_status
    )
    changed = rows.update(status=target, **dict(fields or {}))
    if changed != 1:
        # Only possible without the row lock the contract asks for.
        raise CampaignError(
            f'"{campaign.name}" changed meanwhile; nothing was done. Reload and try again.',
            code="state",
        )
    CampaignEvent.objects.create(
        campaign_id=campaign.pk,
        action=action,
        from_status=from_status,
        to_status=target,
        user=user if getattr(user, "pk", None) else None,
        detail=detail,
    )
    campaign.status = target
    return from_status


# ----------------------------------------------------------- for people


@dataclass(frozen=True)
class StatusDisplay:
    """What a page says about a campaign's state."""

    label: str  # "Sending", "Sent — awaiting 12 receipts", ...
    tone: str  # css modifier: draft / active / waiting / done / bad
    final: bool  # nothing will change any more (pages stop polling)


def status_display(campaign: Campaign) -> StatusDisplay:
    """The state as people should read it, from the stored counters (no query).

    A campaign whose messages are all at the provider but whose receipts are
    not all in says so; it is only final once nothing can change. Through a
    provider that sends no delivery reports nothing is awaited: its
    messages stay ``sent``, and the page says so and stops polling.
    Reads ``campaign.account`` (select it with the campaign).
    """
    status = campaign.status
    awaiting = campaign.sent_count
    receipts = f"{awaiting:,} receipt{'s' if awaiting != 1 else ''}"
    provider = provider_without_receipts(campaign)
    if provider:
        # No receipt will ever come: "sent" is as far as its messages go.
        awaiting = 0
        if status == C.COMPLETED and campaign.sent_count:
            return StatusDisplay(
                f"Completed — {campaign.sent_count:,} sent, no delivery reports from {provider}",
                "done",
                not campaign.unknown_count,
            )
    if status == C.COMPLETED:
        if awaiting:
            return StatusDisplay(f"Sent — awaiting {receipts}", "waiting", False)
        if campaign.unknown_count:
            return StatusDisplay(
                f"Completed — {campaign.unknown_count:,} need a decision", "bad", True
            )
        return StatusDisplay("Completed", "done", True)
    if status == C.SENDING and campaign.planned and not campaign.queued_count and awaiting:
        return StatusDisplay(f"Sent — awaiting {receipts}", "waiting", False)
    if status in (C.CANCELLED, C.FAILED):
        # Messages handed over before the end still get their receipts.
        label = C(status).label
        if awaiting:
            return StatusDisplay(f"{label} — awaiting {receipts}", "bad", False)
        return StatusDisplay(label, "bad", True)
    if status == C.SCHEDULED and is_due(campaign):
        return StatusDisplay("Starting", "active", False)
    tone = {C.DRAFT: "draft", C.PAUSED: "waiting"}.get(status, "active")
    return StatusDisplay(str(C(status).label), tone, False)


def provider_without_receipts(campaign: Campaign) -> str:
    """The provider's name when ``campaign``'s account never gets delivery
    reports (FullSMS: its messages stay ``sent`` for good), else ""."""
    try:
        account = campaign.account
    except ObjectDoesNotExist:
        return ""
    try:
        cls = backend_class(account.backend)
    except (ImproperlyConfigured, ImportError):
        return ""
    if not cls.delivery_reports_missing():
        return ""
    return cls.label or cls.name


def is_due(campaign: Campaign) -> bool:
    """A scheduled campaign whose time has come (the engine starts it)."""
    return campaign.scheduled_at is None or campaign.scheduled_at <= timezone.now()


def campaign_deletable(campaign: Campaign) -> bool:
    """Only a draft with no history can be deleted: once sent, scheduled or
    cancelled its audit trail and ledger rows must stay."""
    return campaign.status == C.DRAFT and not campaign.events.exists()
