"""The figures of the staff dashboard (the admin index): "how are we doing".

Everything is scoped to the accounts whose activity the user may see
(:func:`campaigns.inbox_access.inbox_accounts`: house staff, operators
included, see every account, as on the campaign and message pages; a
reseller gets the dashboard of its own accounts and sub-accounts). Every
query reads a bounded number of rows — daily rows (:mod:`campaigns.daily`),
campaign counters, ledger rows of one month, accounts — never the messages
table, so the page costs the same with a million messages as with ten.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import F, Q, QuerySet, Sum
from django.utils import timezone

from campaigns.inbox_access import inbox_accounts
from campaigns.models import Campaign, CampaignDay, InboundMessage
from providers.models import CreditTransaction, ProviderAccount

C = Campaign.Status
ZERO = Decimal("0")

#: Days in the chart.
CHART_DAYS = 30
#: Campaign states shown under "Sending now".
ACTIVE = (C.SENDING, C.PAUSED)


@dataclass(frozen=True)
class Activity:
    """Messages handed to the provider, delivered and failed, and credits spent."""

    sent: int = 0
    delivered: int = 0
    failed: int = 0
    credits: Decimal = ZERO

    @property
    def delivery_rate(self) -> float | None:
        """Delivered out of those with a final outcome (None before any)."""
        final = self.delivered + self.failed
        return self.delivered / final if final else None


@dataclass(frozen=True)
class Day:
    day: date
    sent: int
    delivered: int
    failed: int


@dataclass(frozen=True)
class CampaignProgress:
    campaign: Campaign
    handled: int
    total: int

    @property
    def percent(self) -> int:
        return int(self.handled * 100 / self.total) if self.total else 0


@dataclass
class Dashboard:
    today: Activity
    month: Activity
    days: list[Day]
    active: list[CampaignProgress]
    scheduled: list[Campaign]
    low_balance: list[ProviderAccount]
    replies_24h: int
    failed_tasks_24h: int | None  # None: not shown to this user
    generated_at: datetime
    notes: list[str] = field(default_factory=list)


def dashboard_figures(*, user, now: datetime | None = None) -> Dashboard:
    """The dashboard for ``user``, as of ``now`` (default: now)."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    month_start = today.replace(day=1)
    accounts = inbox_accounts(user)
    account_ids = list(accounts.values_list("pk", flat=True))
    campaigns = Campaign.objects.filter(account_id__in=account_ids)

    first_day = min(today - timedelta(days=CHART_DAYS - 1), month_start)
    per_day = {
        row["day"]: row
        for row in CampaignDay.objects.filter(
            campaign__account_id__in=account_ids, day__gte=first_day, day__lte=today
        )
        .values("day")
        .annotate(s=Sum("sent"), d=Sum("delivered"), f=Sum("failed"))
        .order_by()
    }
    days = []
    for offset in range(CHART_DAYS - 1, -1, -1):
        day = today - timedelta(days=offset)
        row = per_day.get(day, {})
        days.append(Day(day, row.get("s") or 0, row.get("d") or 0, row.get("f") or 0))

    def activity(since: date) -> Activity:
        rows = [r for d, r in per_day.items() if d >= since]
        return Activity(
            sent=sum(r["s"] or 0 for r in rows),
            delivered=sum(r["d"] or 0 for r in rows),
            failed=sum(r["f"] or 0 for r in rows),
            credits=_credits_spent(account_ids, since=_day_start(since)),
        )

    active = [
        CampaignProgress(
            campaign=c,
            handled=c.recipients_total - c.queued_count,
            total=c.recipients_total,
        )
        for c in campaigns.filter(status__in=ACTIVE)
        .select_related("account")
        .order_by("-started_at", "-pk")[:10]
    ]
    scheduled = list(
        campaigns.filter(status=C.SCHEDULED)
        .select_related("account")
        .order_by("scheduled_at", "pk")[:5]
    )
    low_balance = list(
        accounts.filter(low_balance_threshold__gt=0)
        .filter(Q(balance__lt=F("reserved") + F("low_balance_threshold")))
        .order_by("name")[:20]
    )
    replies = InboundMessage.objects.filter(
        account_id__in=account_ids, received_at__gte=now - timedelta(hours=24)
    ).count()
    return Dashboard(
        today=activity(today),
        month=activity(month_start),
        days=days,
        active=active,
        scheduled=scheduled,
        low_balance=low_balance,
        replies_24h=replies,
        failed_tasks_24h=_failed_tasks(user, since=now - timedelta(hours=24)),
        generated_at=now,
    )


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, datetime.min.time()))


def _credits_spent(account_ids: list[int], *, since: datetime) -> Decimal:
    """Charged minus refunded since ``since``: what sending really cost."""
    rows: QuerySet = CreditTransaction.objects.filter(
        account_id__in=account_ids,
        created_at__gte=since,
        kind__in=[CreditTransaction.Kind.CHARGE, CreditTransaction.Kind.REFUND],
    )
    total = rows.aggregate(t=Sum("amount"))["t"] or ZERO
    return -total


def _failed_tasks(user, *, since: datetime) -> int | None:
    """Background tasks that failed recently; only for users who can see them."""
    if not (user.is_superuser or user.has_perm("django_q.view_failure")):
        return None
    from django_q.models import Failure

    return Failure.objects.filter(stopped__gte=since).count()
