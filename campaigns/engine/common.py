"""Small pieces every engine module shares: references, the audit trail,
credit movements, and the constants that more than one stage reads."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Sum

from campaigns.models import Campaign, CampaignEvent, Message
from providers.services import credits_charge, credits_release, credits_reserve

S = Message.Status
C = Campaign.Status
ZERO = Decimal("0")
CENT = Decimal("0.01")

#: A claim older than this belongs to a worker that is certainly gone: the
#: task timeout kills a worker long before (django-q2 ``timeout`` + margin).
STALE_AFTER = timedelta(seconds=int(settings.Q_CLUSTER.get("timeout", 90)) + 30)
#: Waits up to this long are slept inside the task; longer ones reschedule it.
MAX_INLINE_WAIT = 2.0


def message_reference(pk: int) -> str:
    """Our reference for a message at the provider (agreed with campaigns.reports)."""
    return f"m{pk}"


def campaign_reference(campaign_id: int) -> str:
    """The ledger reference of a campaign's reservation, charges and releases."""
    return f"campaign:{campaign_id}"


def credits_of(messages) -> Decimal:
    """The credits of a queryset of messages, to the cent."""
    total = messages.aggregate(total=Sum("credits"))["total"]
    return (total or ZERO).quantize(CENT)


def event(campaign_id: int, action: str, *, from_status="", to_status="", detail="", user=None):
    """Write one line of the campaign's audit trail."""
    CampaignEvent.objects.create(
        campaign_id=campaign_id,
        action=action,
        from_status=from_status,
        to_status=to_status,
        detail=detail[:5000],
        user=user if getattr(user, "pk", None) else None,
    )


def credit_move(
    kind: str, *, campaign: Campaign, amount: Decimal, key: str | None, user=None
) -> None:
    """Charge/release/reserve ``amount`` for ``campaign`` (no-op for zero)."""
    if amount <= 0:
        return
    account = campaign.account
    reference = campaign_reference(campaign.pk)
    if kind == "charge":
        credits_charge(account=account, amount=amount, reference=reference, idempotency_key=key)
    elif kind == "release":
        credits_release(account=account, amount=amount, reference=reference, idempotency_key=key)
    else:
        credits_reserve(
            account=account, amount=amount, reference=reference, user=user, idempotency_key=key
        )
