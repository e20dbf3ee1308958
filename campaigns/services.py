"""Campaign state changes: send now, schedule, pause, resume, cancel.

Each service locks the campaign row (``select_for_update``) and moves it
with :func:`campaigns.states.campaign_transition`, which checks the state it
comes from against the one table of transitions, changes it and writes the
:class:`~campaigns.models.CampaignEvent` (who, when, from, to, what); the
service then enqueues the dispatch task after commit. A refusal raises
:class:`CampaignError` with a message for the user; nothing is changed.

Money: sending or scheduling reserves the confirmed quote's credits under
``campaign:<id>`` (idempotency key ``reserve:campaign:<id>``, so a double
click reserves once; the second click is refused by the state check
anyway). The dispatch engine later charges, releases or tops up that
reservation to what was really planned and sent (see campaigns.dispatch).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, F
from django.utils import timezone

from campaigns.counters import counters_move
from campaigns.dispatch import (
    campaign_reference,
    credits_of,
    enqueue_dispatch,
    reservation_reconcile,
)
from campaigns.models import Campaign, CampaignEvent, Message
from campaigns.states import (
    FINAL,
    MESSAGE_FAILED,
    MESSAGE_TEMPORARY_FAILURE,
    PERSON_ACTIONS,
    TRANSITIONS,
    CampaignError,
    allowed_actions,
    campaign_transition,
    source_check,
)
from providers.services import CreditError, credits_refund, credits_release, credits_reserve

C = Campaign.Status
S = Message.Status
ZERO = Decimal("0")

#: Operation -> the campaign states it may start from (from campaigns.states).
ALLOWED_FROM: dict[str, frozenset[str]] = {a: TRANSITIONS[a].sources for a in PERSON_ACTIONS}

__all__ = ["ALLOWED_FROM", "CampaignError", "allowed_operations"]


def allowed_operations(campaign: Campaign) -> list[str]:
    """The operations a person may start from the campaign's state."""
    return allowed_actions(campaign.status)


def _lock(campaign: Campaign) -> Campaign:
    return (
        Campaign.objects.select_for_update(of=("self",))
        .select_related("account", "template")
        .get(pk=campaign.pk)
    )


def _check(campaign: Campaign, operation: str) -> None:
    source_check(campaign, operation)


def _event(campaign: Campaign, action: str, *, from_status: str, to_status: str, user, detail=""):
    CampaignEvent.objects.create(
        campaign=campaign,
        action=action,
        from_status=from_status,
        to_status=to_status,
        user=user if getattr(user, "pk", None) else None,
        detail=detail,
    )


def _quote_for_sending(campaign: Campaign, confirmed_quote):
    """A fresh quote without problems, matching what the user confirmed."""
    from campaigns.quote import campaign_quote

    quote = campaign_quote(campaign=campaign)
    if quote.problems:
        raise CampaignError(
            f'"{campaign.name}" cannot be sent yet: ' + " ".join(quote.problems), code="quote"
        )
    if confirmed_quote is not None:
        confirmed = (
            confirmed_quote if isinstance(confirmed_quote, Mapping) else confirmed_quote.as_dict()
        )
        seen = (int(confirmed.get("recipients", -1)), Decimal(str(confirmed["credits_needed"])))
        now = (quote.recipients, quote.credits_needed)
        if seen != now:
            raise CampaignError(
                f'The quote of "{campaign.name}" changed since you confirmed it '
                f"({seen[0]} recipients for {seen[1]} credits, now {now[0]} for {now[1]}). "
                "Review the new quote and confirm again.",
                code="quote_changed",
            )
    return quote


def _reserve_and_schedule(
    campaign: Campaign, *, user, when: datetime, confirmed_quote, action: str, time_zone: str = ""
) -> Campaign:
    # Quote outside the lock (it reads every recipient), then check again
    # under the lock that nobody sent or scheduled it meanwhile.
    _check(campaign, action)
    quote = _quote_for_sending(campaign, confirmed_quote) if campaign.status == C.DRAFT else None
    with transaction.atomic():
        locked = _lock(campaign)
        if locked.status != campaign.status:
            # A second click (or another user) got there first.
            raise CampaignError(
                f'"{locked.name}" changed meanwhile: it is '
                f"{locked.get_status_display().lower()} now. Nothing was done.",
                code="state",
            )
        _check(locked, action)
        from_status = locked.status
        fields: dict = {
            "scheduled_at": when,
            "schedule_time_zone": time_zone,
            "status_reason": "",
        }
        if from_status == C.DRAFT:
            account = locked.account
            if quote.credits_needed > 0:
                try:
                    credits_reserve(
                        account=account,
                        amount=quote.credits_needed,
                        reference=campaign_reference(locked.pk),
                        user=user,
                        idempotency_key=f"reserve:campaign:{locked.pk}",
                    )
                except CreditError as exc:
                    raise CampaignError(
                        f'"{locked.name}" needs {quote.credits_needed} credits: '
                        + " ".join(exc.messages),
                        code="credit",
                    ) from None
            fields.update(confirmed_quote=quote.as_dict(), credits_reserved=quote.credits_needed)
            detail = (
                f"{quote.recipients} recipients, {quote.credits_needed} credits reserved, "
                f"{'now' if when <= timezone.now() else when.isoformat()}."
            )
        else:
            detail = f"Rescheduled to {when.isoformat()}{f' ({time_zone})' if time_zone else ''}."
        campaign_transition(campaign=locked, action=action, user=user, detail=detail, fields=fields)
        enqueue_dispatch(locked.pk, at=when)
    campaign.refresh_from_db()
    return campaign


def campaign_send_now(*, campaign: Campaign, user, confirmed_quote=None) -> Campaign:
    """Draft (or scheduled) → scheduled for now; the dispatch task starts it.

    A draft is quoted again: any problem refuses, and if ``confirmed_quote``
    (the quote the user saw, an ``as_dict()`` or CampaignQuote) no longer
    matches on recipients and credits, the user must confirm again. Its
    credits are reserved; a short balance refuses with the numbers.
    """
    return _reserve_and_schedule(
        campaign, user=user, when=timezone.now(), confirmed_quote=confirmed_quote, action="send_now"
    )


def campaign_schedule(
    *, campaign: Campaign, user, when: datetime, confirmed_quote=None, time_zone: str = ""
) -> Campaign:
    """Draft → scheduled at ``when`` (reserving like send now), or move the
    time of a campaign already scheduled. ``when`` must be in the future.
    ``time_zone`` (IANA name) is the zone the person picked: pages show the
    time in it."""
    if timezone.is_naive(when):
        raise CampaignError("The schedule time needs a time zone (an aware datetime).", code="when")
    if when <= timezone.now() + timedelta(seconds=30):
        raise CampaignError(
            f"The schedule time {when:%Y-%m-%d %H:%M %Z} is not in the future: pick a later "
            "time or use Send now.",
            code="when",
        )
    if time_zone:
        from campaigns.quiet_hours import zone

        try:
            zone(time_zone)
        except ValidationError as exc:
            raise CampaignError(exc.messages[0], code="time_zone") from None
    return _reserve_and_schedule(
        campaign,
        user=user,
        when=when,
        confirmed_quote=confirmed_quote,
        action="schedule",
        time_zone=time_zone,
    )


def campaign_pause(*, campaign: Campaign, user, reason: str = "") -> Campaign:
    """Scheduled/sending → paused: no new batch is claimed. A batch already
    at the provider finishes and is recorded. Queued messages stay queued."""
    with transaction.atomic():
        locked = _lock(campaign)
        _check(locked, "pause")
        who = getattr(user, "get_username", lambda: "")() or "the system"
        text = reason or f"Paused by {who}."
        campaign_transition(
            campaign=locked,
            action="pause",
            user=user,
            detail=text,
            fields={"status_reason": text[:500]},
        )
    campaign.refresh_from_db()
    return campaign


def campaign_resume(*, campaign: Campaign, user) -> Campaign:
    """Paused → sending (or scheduled, if it never started and its time is
    still ahead); dispatch carries on from the first unsent message.

    If the campaign was paused because its reservation fell short, the
    difference is reserved now; still short refuses with the numbers.
    """
    with transaction.atomic():
        locked = _lock(campaign)
        _check(locked, "resume")
        now = timezone.now()
        if locked.planned:
            needed = credits_of(
                Message.objects.filter(campaign_id=locked.pk, status__in=[S.QUEUED, S.SUBMITTING])
            )
            shortfall = reservation_reconcile(campaign=locked, target=needed, user=user)
            if shortfall:
                raise CampaignError(f'Cannot resume "{locked.name}": {shortfall}', code="credit")
        future = locked.scheduled_at is not None and locked.scheduled_at > now
        to_status = C.SCHEDULED if locked.started_at is None and future else C.SENDING
        campaign_transition(
            campaign=locked,
            action="resume",
            to=to_status,
            user=user,
            fields={"status_reason": "", "consecutive_failures": 0},
        )
        enqueue_dispatch(locked.pk, at=locked.scheduled_at if to_status == C.SCHEDULED else None)
    campaign.refresh_from_db()
    return campaign


def campaign_cancel(*, campaign: Campaign, user, reason: str = "") -> Campaign:
    """Any open state → cancelled. Every queued message is cancelled and its
    credits released (the whole reservation when nothing was planned yet).
    A batch already at the provider is recorded and charged as usual."""
    now = timezone.now()
    with transaction.atomic():
        locked = _lock(campaign)
        _check(locked, "cancel")
        queued = Message.objects.filter(campaign_id=locked.pk, status=S.QUEUED)
        amount = credits_of(queued)
        n = queued.update(status=S.CANCELLED, status_reason="Campaign cancelled.", status_at=now)
        counters_move(campaign_id=locked.pk, moves={(S.QUEUED, S.CANCELLED): n})
        if not locked.planned:
            # Planning may be under way: everything reserved goes back, and
            # what the planner still adds is cancelled without credits.
            amount = locked.credits_reserved
        if amount > 0:
            credits_release(
                account=locked.account,
                amount=amount,
                reference=campaign_reference(locked.pk),
                idempotency_key=f"release:cancel:campaign:{locked.pk}",
            )
        text = (
            reason or f"Cancelled by {getattr(user, 'get_username', lambda: '')() or 'the system'}."
        )
        campaign_transition(
            campaign=locked,
            action="cancel",
            user=user,
            detail=f"{n} queued message(s) cancelled, {amount} credits released. {text}",
            fields={
                "status_reason": text[:500],
                "finished_at": now,
                "credits_reserved": F("credits_reserved") - amount,
                "next_dispatch_at": None,
            },
        )
    campaign.refresh_from_db()
    return campaign


def cancel_impact(campaign: Campaign) -> dict:
    """What cancelling ``campaign`` now would do, for its confirmation page."""
    planned = campaign.planned
    recipients = int((campaign.confirmed_quote or {}).get("recipients") or 0)
    return {
        "queued": campaign.queued_count if planned else recipients,
        "planned": planned,
        "release": campaign.credits_reserved,
        "at_provider": campaign.sent_count,
        "delivered": campaign.delivered_count,
        "charged": campaign.credits_charged,
        "sending": campaign.status == C.SENDING,
    }


def resend_preview(campaign: Campaign) -> dict:
    """Who a resend to the temporary failures of ``campaign`` would reach."""
    counts = dict(
        Message.objects.filter(campaign_id=campaign.pk, status__in=list(MESSAGE_FAILED))
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    temporary = sum(counts.get(s, 0) for s in MESSAGE_TEMPORARY_FAILURE)
    return {
        "temporary": temporary,
        "by_status": {S(s).label: n for s, n in counts.items() if s in MESSAGE_TEMPORARY_FAILURE},
        "refused": sum(n for s, n in counts.items() if s not in MESSAGE_TEMPORARY_FAILURE),
    }


def campaign_resend_failed(*, campaign: Campaign, user) -> Campaign:
    """A new draft campaign to the recipients of ``campaign`` whose message
    failed temporarily (undelivered, expired), with the same account, sender
    and body. Refusals (rejected, failed) are left out: they would fail
    again. Nothing is sent or reserved: the draft goes through the usual
    quote and confirmation (which also drops numbers opted out meanwhile).
    Only a campaign in a final state can be resent from."""
    if campaign.status not in FINAL:
        raise CampaignError(
            f'"{campaign.name}" is {campaign.get_status_display().lower()}: wait until it has '
            "finished (or cancel it) before sending again to its failures.",
            code="state",
        )
    phones = list(
        Message.objects.filter(
            campaign_id=campaign.pk, status__in=list(MESSAGE_TEMPORARY_FAILURE)
        ).values_list("phone", flat=True)
    )
    if not phones:
        raise CampaignError(
            f'"{campaign.name}" has no temporary failures (undelivered or expired) to send '
            "again to.",
            code="empty",
        )
    with transaction.atomic():
        new = Campaign.objects.create(
            name=f"{campaign.name} — again to {len(phones):,} temporary failures"[:200],
            account=campaign.account,
            sender=campaign.sender,
            template=campaign.template,
            body=campaign.body,
            extra_numbers="\n".join(phones),
            created_by=user if getattr(user, "pk", None) else None,
        )
        _event(
            campaign,
            "resend_failed",
            from_status=campaign.status,
            to_status=campaign.status,
            user=user,
            detail=f"Draft #{new.pk} created for {len(phones)} temporary failure(s).",
        )
    return new


RESOLUTIONS = {"sent": S.SENT, "failed": S.FAILED, "requeue": S.QUEUED}


def messages_resolve_unknown(
    *, campaign: Campaign, user, outcome: str, message_ids: Iterable[int] | None = None
) -> int:
    """A person's decision on messages left ``unknown`` after a crash.

    Unknown messages were charged (the provider most likely took them).
    ``outcome``: "sent" (confirmed: nothing more to pay), "failed" (they never
    went out: their credits are refunded) or "requeue" (send them again, only
    while the campaign is open; refunded and reserved again, so a short
    balance refuses; the risk of a duplicate is the person's call). Returns
    how many messages changed.
    """
    if outcome not in RESOLUTIONS:
        raise CampaignError(
            f"Unknown decision {outcome!r}; use one of {', '.join(RESOLUTIONS)}.", code="outcome"
        )
    target = RESOLUTIONS[outcome]
    now = timezone.now()
    with transaction.atomic():
        locked = _lock(campaign)
        if target == S.QUEUED and locked.status not in (C.SENDING, C.PAUSED, C.SCHEDULED):
            raise CampaignError(
                f'"{locked.name}" is {locked.get_status_display().lower()}: messages can only '
                "be sent again while it is sending, scheduled or paused.",
                code="state",
            )
        rows = Message.objects.select_for_update().filter(campaign_id=locked.pk, status=S.UNKNOWN)
        if message_ids is not None:
            rows = rows.filter(pk__in=list(message_ids))
        ids_credits = dict(rows.values_list("id", "credits"))
        if not ids_credits:
            return 0
        amount = sum(ids_credits.values(), ZERO)
        who = getattr(user, "get_username", lambda: "")() or "staff"
        fields: dict = {
            "status": target,
            "status_at": now,
            "status_reason": f"Marked {outcome} by {who}.",
        }
        if target == S.QUEUED:
            fields.update(claim_token=None, claimed_at=None, next_attempt_at=None)
        Message.objects.filter(pk__in=list(ids_credits)).update(**fields)
        counters_move(campaign_id=locked.pk, moves={(S.UNKNOWN, target): len(ids_credits)})
        reference = campaign_reference(locked.pk)
        update: dict = {}
        if target != S.SENT and amount:
            # The row locks and the ``unknown`` check make each of these happen once.
            credits_refund(account=locked.account, amount=amount, reference=reference)
            update["credits_charged"] = F("credits_charged") - amount
        if target == S.QUEUED and amount:
            try:
                credits_reserve(
                    account=locked.account, amount=amount, reference=reference, user=user
                )
            except CreditError as exc:
                raise CampaignError(
                    f"Cannot send {len(ids_credits)} message(s) again: " + " ".join(exc.messages),
                    code="credit",
                ) from None
            update["credits_reserved"] = F("credits_reserved") + amount
        if update:
            Campaign.objects.filter(pk=locked.pk).update(**update)
        _event(
            locked,
            f"resolve_{outcome}",
            from_status=locked.status,
            to_status=locked.status,
            user=user,
            detail=f"{len(ids_credits)} unknown message(s) marked {outcome} ({amount} credits).",
        )
        if target == S.QUEUED and locked.status == C.SENDING:
            enqueue_dispatch(locked.pk)
    return len(ids_credits)
