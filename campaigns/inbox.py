"""The inbox: one Conversation per (account, phone), kept by these services.

Contract: every change to a Conversation goes through a function here, inside
the caller's transaction (``inbound_apply`` calls :func:`conversation_note_inbound`
for each new reply), so the inbox and the message tables never disagree.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from campaigns.models import Campaign, Conversation, InboundMessage
from campaigns.states import CampaignError
from contacts.models import OptOut
from contacts.services import optout_add, optout_remove

#: Longest reason kept with an opt-out (``OptOutEvent.reason``).
REASON_MAX = 200


def conversation_note_inbound(*, inbound: InboundMessage) -> Conversation:
    """A new reply arrived: the conversation moves to the top, unread and not
    handled. Call it once per stored reply (a retried webhook is not new)."""
    with transaction.atomic():
        conversation, created = Conversation.objects.select_for_update().get_or_create(
            account_id=inbound.account_id,
            phone=inbound.phone,
            defaults={"last_activity_at": inbound.received_at},
        )
        newest = (
            conversation.last_inbound_at is None
            or inbound.received_at >= conversation.last_inbound_at
        )
        updates: dict = {"unread_count": F("unread_count") + 1, "handled": False}
        if newest:
            updates.update(
                last_inbound_at=inbound.received_at,
                last_inbound_text=inbound.body[:500],
                last_inbound_action=inbound.action,
                last_campaign_id=inbound.campaign_id or conversation.last_campaign_id,
            )
        if created or inbound.received_at > conversation.last_activity_at:
            updates["last_activity_at"] = inbound.received_at
        Conversation.objects.filter(pk=conversation.pk).update(**updates, handled_at=None)
        conversation.refresh_from_db()
    return conversation


def conversation_note_outbound(*, account_id: int, phone: str, when=None) -> Conversation:
    """We answered from the thread: the conversation moves to the top."""
    when = when or timezone.now()
    with transaction.atomic():
        conversation, _ = Conversation.objects.select_for_update().get_or_create(
            account_id=account_id, phone=phone, defaults={"last_activity_at": when}
        )
        if when > conversation.last_activity_at:
            conversation.last_activity_at = when
            conversation.save(update_fields=["last_activity_at"])
    return conversation


def conversation_mark_read(*, conversation: Conversation, user) -> Conversation:
    """Someone opened the thread: nothing left unread."""
    Conversation.objects.filter(pk=conversation.pk).update(unread_count=0)
    conversation.unread_count = 0
    return conversation


def conversation_mark_handled(*, conversation: Conversation, user, handled: bool = True):
    """Handled (or back to open): records who and when; handled also means read."""
    fields = {
        "handled": handled,
        "handled_at": timezone.now() if handled else None,
        "handled_by": user if handled else None,
    }
    if handled:
        fields["unread_count"] = 0
    with transaction.atomic():
        Conversation.objects.filter(pk=conversation.pk).update(**fields)
    conversation.refresh_from_db()
    return conversation


def conversation_reply(*, conversation: Conversation, user, body: str) -> Campaign:
    """Answer a conversation: one SMS to its number through its account.

    The reply is a one-recipient campaign of kind "reply" sent with
    :func:`campaigns.services.campaign_send_now`, so it is measured, quoted,
    reserved, charged and recorded like any other message. Refused (a
    :class:`CampaignError` saying why, nothing written) for an empty text or
    an opted-out number.
    """
    from campaigns.services import campaign_send_now  # services import this module's peers

    text = (body or "").strip()
    if not text:
        raise CampaignError("The reply is empty: type the text to send.", code="body")
    if OptOut.objects.filter(phone=conversation.phone).exists():
        raise CampaignError(
            f"{conversation.phone} has opted out: no message can be sent to it. "
            "Opt the number back in first if they asked for messages again.",
            code="opted_out",
        )
    with transaction.atomic():
        campaign = Campaign.objects.create(
            name=f"Reply to {conversation.phone}"[:200],
            kind=Campaign.Kind.REPLY,
            account_id=conversation.account_id,
            body=text,
            extra_numbers=conversation.phone,
            created_by=user,
        )
        campaign = campaign_send_now(campaign=campaign, user=user)
        conversation_note_outbound(account_id=conversation.account_id, phone=conversation.phone)
        conversation_mark_handled(conversation=conversation, user=user)
    return campaign


def _reason(reason: str, *, what: str) -> str:
    text = " ".join((reason or "").split())
    if not text:
        raise CampaignError(
            f"Say why the number is {what}: type a reason (e.g. 'asked by phone').",
            code="reason",
        )
    if len(text) > REASON_MAX:
        raise CampaignError(
            f"The reason is {len(text)} characters long: keep it under {REASON_MAX}.",
            code="reason",
        )
    return text


def conversation_reference(conversation: Conversation) -> str:
    """How opt-out history entries made from a thread point back to it."""
    return f"conversation:{conversation.pk}"


def conversation_opt_out(*, conversation: Conversation, user, reason: str) -> OptOut:
    """Staff opt the conversation's number out from its thread.

    Goes through :func:`contacts.services.optout_add` (source "entered by
    staff"), so the history records who, why, and this conversation as the
    reference. A number already opted out keeps its first record; the
    request is recorded in the history all the same. ``reason`` is required.
    """
    text = _reason(reason, what="opted out")
    return optout_add(
        phone=conversation.phone,
        source=OptOut.Source.MANUAL,
        reason=text,
        source_reference=conversation_reference(conversation),
        user=user,
        account_id=conversation.account_id,
    )


def conversation_opt_in(*, conversation: Conversation, user, reason: str) -> bool:
    """Staff opt the conversation's number back in from its thread.

    Goes through :func:`contacts.services.optout_remove`: the opt-out goes,
    the history keeps what it was, who lifted it, why, and this
    conversation. An opt-out is a property of the number across every
    account, so someone who sees only some accounts (a reseller) may lift
    only an opt-out that came from one of them (a STOP or a staff entry on
    that account); otherwise a :class:`CampaignError` says why and nothing
    changes. Returns False when the number was not opted out.
    """
    from campaigns.inbox_access import inbox_accounts, sees_every_account

    text = _reason(reason, what="opted back in")
    optout = OptOut.objects.filter(phone=conversation.phone).first()
    if optout is None:
        return False
    if not sees_every_account(user):
        own = optout.source_account_id is not None and (
            inbox_accounts(user).filter(pk=optout.source_account_id).exists()
        )
        if not own:
            raise CampaignError(
                f"{conversation.phone} was opted out outside your accounts "
                f"({optout.get_source_display().lower()}): only staff who see every "
                "account can opt it back in.",
                code="opt_in_forbidden",
            )
    return optout_remove(
        phone=conversation.phone,
        user=user,
        reason=text,
        source_reference=conversation_reference(conversation),
    )
