"""What the campaign page shows: reads only, no state change.

Two parts with different costs:

* :func:`campaign_live` — the top of the page (state, progress, funnel,
  rate, ETA, next batch, stall, last provider error). Built from the
  campaign row's counters plus a handful of index lookups, so it answers in
  milliseconds whatever the number of messages; the page polls it.
* :func:`campaign_report` — the delivery report (chart over time, failures
  by provider reason, per-country counts and cost, credits). It aggregates
  the campaign's messages (a few seconds per million rows on SQLite), so on
  a large campaign it is cached, for longer the longer it takes to build,
  and says how old it is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

import phonenumbers
from django.core.cache import cache
from django.db.models import Count, FloatField, Func, IntegerField, Q, Sum, Value
from django.db.models.functions import Cast, Substr
from django.utils import timezone
from phonenumbers import geocoder

from campaigns import quiet_hours
from campaigns.models import Campaign, Message
from campaigns.states import (
    ACTIVE,
    MESSAGE_FAILED,
    StatusDisplay,
    provider_without_receipts,
    status_display,
)
from providers.models import CreditTransaction

C = Campaign.Status
S = Message.Status
ZERO = Decimal("0")

#: A sending campaign nobody has dispatched for this long is stalled (the
#: engine's lease lasts 100 s and is renewed before every batch).
STALL_AFTER = timedelta(minutes=2)
#: Campaigns with more messages than this get a cached report.
REPORT_CACHE_ABOVE = 20_000
REPORT_CACHE_SECONDS = 30
CHART_BINS = 40
#: How campaigns.reports marks a message whose credits the provider refunded.
PROVIDER_REFUND_REASON = "Refunded by the provider ("


# --------------------------------------------------------------- live part


@dataclass
class Funnel:
    planned: int
    submitted: int  # the provider took it or refused it (left our queue)
    delivered: int
    failed: int
    awaiting: int  # at the provider, no receipt yet
    unknown: int  # fate unknown after a crash: a person decides
    skipped: int
    cancelled: int
    waiting: int  # still queued here
    #: The provider sends delivery reports; when not, ``awaiting`` messages
    #: stay "sent" for good and are not called awaiting anything.
    reports: bool = True

    @property
    def awaiting_label(self) -> str:
        return "awaiting receipt" if self.reports else "sent, no delivery reports"

    @property
    def handled(self) -> int:
        """Left our queue, whatever became of it."""
        return self.planned - self.waiting

    def percent(self, n: int) -> float:
        return round(100 * n / self.planned, 1) if self.planned else 0.0


@dataclass
class Live:
    campaign: Campaign
    status: StatusDisplay
    funnel: Funnel
    percent_done: int  # of the plan, left our queue (bar width)
    bar: list[dict]  # segments: css, label, x and width (%), n
    rate_per_minute: float | None
    eta: datetime | None
    next_batch_at: datetime | None
    next_batch_why: str
    stall: str  # empty unless stalled: what is wrong and what to do
    last_error: dict | None
    scheduled_for: str
    now: datetime = field(default_factory=timezone.now)

    @property
    def poll(self) -> bool:
        """Whether the page should keep asking for updates."""
        return not self.status.final


def _funnel(c: Campaign) -> Funnel:
    planned = c.recipients_total
    if not c.planned and c.confirmed_quote:
        planned = max(planned, int(c.confirmed_quote.get("recipients") or 0))
    waiting = c.queued_count if c.planned else planned - c.recipients_total + c.queued_count
    submitted = c.sent_count + c.delivered_count + c.failed_count + c.unknown_count
    return Funnel(
        planned=planned,
        submitted=submitted,
        delivered=c.delivered_count,
        failed=c.failed_count,
        awaiting=c.sent_count,
        unknown=c.unknown_count,
        skipped=c.skipped_count,
        cancelled=c.cancelled_count,
        waiting=max(0, waiting),
        reports=not provider_without_receipts(c),
    )


def _bar(f: Funnel) -> list[dict]:
    """The segments of the progress bar, left to right (x and width in %)."""
    parts = [
        ("delivered", "delivered", f.delivered),
        ("failed", "failed", f.failed),
        ("awaiting", f.awaiting_label, f.awaiting),
        ("unknown", "unknown", f.unknown),
        ("skipped", "skipped (opted out)", f.skipped),
        ("cancelled", "cancelled", f.cancelled),
    ]
    segments, x = [], 0.0
    for css, label, n in parts:
        if n:
            width = f.percent(n)
            segments.append({"css": css, "label": label, "x": x, "width": width, "n": n})
            x = round(x + width, 1)
    return segments


def _rate(c: Campaign, f: Funnel, now: datetime) -> float | None:
    """Messages per minute since the campaign started (None before)."""
    if c.started_at is None:
        return None
    end = c.finished_at or now
    minutes = (end - c.started_at).total_seconds() / 60
    handled = f.submitted + f.skipped
    if minutes <= 0 or not handled:
        return None
    return handled / minutes


def _eta(c: Campaign, f: Funnel, rate: float | None, now: datetime) -> datetime | None:
    if c.status != C.SENDING or not f.waiting:
        return None
    per_minute = rate
    limit = c.account.messages_per_second
    if limit:
        per_minute = min(per_minute or limit * 60, limit * 60)
    if not per_minute:
        return None
    start = max(now, c.next_dispatch_at or now)
    return start + timedelta(minutes=f.waiting / per_minute)


def _next_batch(c: Campaign, now: datetime) -> tuple[datetime | None, str]:
    """When the engine sends next, and why it waits (quiet hours, rate limit, retry)."""
    if c.status == C.SCHEDULED and c.scheduled_at and c.scheduled_at > now:
        return c.scheduled_at, "its scheduled time"
    if c.status != C.SENDING or not c.next_dispatch_at or c.next_dispatch_at <= now:
        return None, ""
    account = c.account
    if quiet_hours.has_window(account):
        zones = {z or account.time_zone for z in (c.time_zones or [""])}
        if not quiet_hours.open_zones(account=account, zones=zones, at=now):
            start = account.send_window_start.strftime("%H:%M")
            end = account.send_window_end.strftime("%H:%M")
            return (
                c.next_dispatch_at,
                f"quiet hours (sends only from {start} to {end}, recipients' time)",
            )
    if c.next_dispatch_at - now > timedelta(seconds=20):
        return c.next_dispatch_at, "retrying messages the provider refused for now"
    return c.next_dispatch_at, "the account's rate limit"


def _stall(c: Campaign, f: Funnel, now: datetime) -> str:
    """A campaign the engine should be working on but is not, with the cause."""
    if c.status == C.SCHEDULED and c.scheduled_at and c.scheduled_at < now - STALL_AFTER:
        return (
            f"Due since {format_when(c.scheduled_at)} but not started: no worker is running. "
            "Start one (manage.py qcluster); it will start at once."
        )
    if c.status != C.SENDING:
        return ""
    lease = c.dispatch_lease_until
    if lease is not None and lease > now - STALL_AFTER:
        return ""  # a worker has it, or had it moments ago
    if c.next_dispatch_at and c.next_dispatch_at > now - timedelta(minutes=1):
        return ""  # waiting on purpose (see next batch)
    since = lease or c.started_at
    if since is not None and since > now - STALL_AFTER:
        return ""
    when = format_when(since) if since else "its start"
    if not c.planned:
        return (
            f"Stalled: recipients were never planned (no dispatch since {when}): "
            "the planning run failed or no worker is running. Check the worker; "
            "the recovery task restarts it."
        )
    if not f.waiting:
        return ""
    return (
        f"Stalled: {f.waiting:,} messages wait but no worker has sent a batch since {when}. "
        "Check that a worker (manage.py qcluster) is running; the recovery task restarts it."
    )


def _last_error(c: Campaign) -> dict | None:
    """The newest provider error on the campaign's messages: one backward
    index walk per failed status (campaign, status, id), never a scan."""
    rows = []
    for status in (*sorted(MESSAGE_FAILED), S.UNKNOWN):
        row = (
            Message.objects.filter(campaign_id=c.pk, status=status)
            .exclude(raw_error="", error_code="")
            .order_by("-id")
            .values(
                "id", "phone", "status", "error_code", "raw_error", "status_reason", "status_at"
            )
            .first()
        )
        if row:
            rows.append(row)
    if not rows:
        return None
    newest = max(rows, key=lambda r: (r["status_at"] or c.created_at, r["id"]))
    newest["status_label"] = S(newest["status"]).label
    return newest


def scheduled_for(c: Campaign) -> str:
    """The schedule in the zone it was set in (the account's zone otherwise)."""
    if not c.scheduled_at or c.status not in (C.SCHEDULED, C.PAUSED) or c.started_at:
        return ""
    zone = c.schedule_time_zone or c.account.time_zone or timezone.get_default_timezone_name()
    return format_when(c.scheduled_at, zone=zone, with_zone=True)


def campaign_live(campaign: Campaign, *, now: datetime | None = None) -> Live:
    """The top of the campaign page; ``campaign`` with its account loaded."""
    now = now or timezone.now()
    f = _funnel(campaign)
    rate = _rate(campaign, f, now)
    next_at, why = _next_batch(campaign, now)
    return Live(
        campaign=campaign,
        status=status_display(campaign),
        funnel=f,
        percent_done=int(f.percent(f.handled)) if f.planned else 0,
        bar=_bar(f),
        rate_per_minute=rate,
        eta=_eta(campaign, f, rate, now),
        next_batch_at=next_at,
        next_batch_why=why,
        stall=_stall(campaign, f, now) if campaign.status in ACTIVE else "",
        last_error=_last_error(campaign) if campaign.status != C.DRAFT else None,
        scheduled_for=scheduled_for(campaign),
        now=now,
    )


# ---------------------------------------------------------------- report


@dataclass
class Chart:
    """A cumulative chart of submitted / delivered / failed over time, as SVG paths."""

    width: int
    height: int
    series: list[dict]  # {"css", "label", "points", "total"}
    start: datetime | None
    end: datetime | None
    max_count: int
    start_label: str = ""
    end_label: str = ""


@dataclass
class Report:
    chart: Chart | None
    failures: list[dict]
    countries: list[dict]
    credits: dict
    built_at: datetime
    cached: bool = False
    build_seconds: float = 0.0

    @property
    def refresh_seconds(self) -> int:
        """How often the page asks again (about as often as it can change)."""
        return report_ttl(self) if self.build_seconds else 5


class EpochSeconds(Func):
    """Seconds since 1970 of a datetime column, computed by the database's
    own C functions (Django's ``Trunc`` calls back into Python per row on
    SQLite: seconds per million rows)."""

    output_field = FloatField()

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql(
            compiler,
            connection,
            template="((julianday(%(expressions)s) - 2440587.5) * 86400.0)",
            **extra,
        )

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(
            compiler, connection, template="EXTRACT(EPOCH FROM %(expressions)s)", **extra
        )


def _bins(queryset, column: str, *, start: datetime, span: float, extra: tuple[str, ...] = ()):
    """Counts of ``queryset`` per chart bin of ``column`` (and ``extra`` fields)."""
    bin_ = Cast(
        (EpochSeconds(column) - Value(start.timestamp())) * Value(CHART_BINS / span),
        IntegerField(),
    )
    return (
        queryset.annotate(bin=bin_)
        .values("bin", *extra)
        .annotate(n=Count("id"))
        .values_list("bin", *extra, "n")
        .order_by()
    )


def _chart(c: Campaign, now: datetime) -> Chart | None:
    start = c.started_at
    if start is None:
        return None
    messages = Message.objects.filter(campaign_id=c.pk)
    end = max(start + timedelta(seconds=10), c.finished_at or start)
    if c.status in ACTIVE or c.sent_count:
        end = max(end, now)  # still moving: the chart runs to now
    span = (end - start).total_seconds()
    bins = CHART_BINS

    def index(b) -> int:
        return min(bins - 1, max(0, int(b or 0)))

    counts = {"submitted": [0] * bins, "delivered": [0] * bins, "failed": [0] * bins}
    for b, n in _bins(messages.filter(sent_at__isnull=False), "sent_at", start=start, span=span):
        counts["submitted"][index(b)] += n
    outcomes = messages.filter(status__in=[S.DELIVERED, *MESSAGE_FAILED], status_at__isnull=False)
    for b, status, n in _bins(outcomes, "status_at", start=start, span=span, extra=("status",)):
        counts["delivered" if status == S.DELIVERED else "failed"][index(b)] += n
    width, height = 600, 180
    cumulative = {}
    for key, values in counts.items():
        total, points = 0, []
        for v in values:
            total += v
            points.append(total)
        cumulative[key] = points
    top = max(max(p[-1] for p in cumulative.values()), 1)
    series = []
    for key, label in (
        ("submitted", "handed to the provider"),
        ("delivered", "delivered"),
        ("failed", "failed"),
    ):
        pts = [(0.0, float(height))]
        for i, v in enumerate(cumulative[key]):
            x = round((i + 1) / bins * width, 1)
            y = round(height - v / top * height, 1)
            pts.append((x, y))
        series.append(
            {
                "css": key,
                "label": label,
                "points": " ".join(f"{x},{y}" for x, y in pts),
                "total": cumulative[key][-1],
            }
        )
    chart = Chart(width, height, series, start, end, top)
    chart.start_label = format_when(start)
    same_day = timezone.localtime(start).date() == timezone.localtime(end).date()
    chart.end_label = f"{timezone.localtime(end):%H:%M:%S}" if same_day else format_when(end)
    if same_day and end - start < timedelta(hours=1):
        chart.start_label += f":{timezone.localtime(start):%S}"
    return chart


def _failures(c: Campaign) -> list[dict]:
    """Failures grouped by the provider's own words (code and text), biggest first."""
    rows = (
        Message.objects.filter(campaign_id=c.pk, status__in=list(MESSAGE_FAILED))
        .values("status", "error_code", "raw_error")
        .annotate(n=Count("id"))
        .order_by("-n")[:12]
    )
    return [
        {
            "status": S(r["status"]).label,
            "code": r["error_code"],
            "reason": r["raw_error"] or "(the provider gave no reason)",
            "n": r["n"],
        }
        for r in rows
    ]


@lru_cache(maxsize=512)
def _country(prefix: str) -> tuple[str, str]:
    """("+61", "Australia") for the first characters of an E.164 number."""
    digits = prefix.lstrip("+")
    for size in (1, 2, 3):
        code = int(digits[:size]) if digits[:size].isdigit() else 0
        region = phonenumbers.region_code_for_country_code(code)
        if region != "ZZ":
            example = phonenumbers.example_number(region)
            name = geocoder.country_name_for_number(example, "en") if example else ""
            return f"+{code}", name or region
    return prefix, "Unknown"


def _countries(c: Campaign) -> list[dict]:
    handed = ~Q(status__in=[S.QUEUED, S.SUBMITTING, S.SKIPPED, S.CANCELLED])
    rows = (
        Message.objects.filter(campaign_id=c.pk)
        .annotate(prefix=Substr("phone", 1, 4))
        .values("prefix")
        .annotate(
            n=Count("id"),
            delivered=Count("id", filter=Q(status=S.DELIVERED)),
            failed=Count("id", filter=Q(status__in=list(MESSAGE_FAILED))),
            credits=Sum("credits", filter=handed),
        )
    )
    merged: dict[str, dict] = {}
    for r in rows:
        code, name = _country(r["prefix"])
        m = merged.setdefault(
            code,
            {"code": code, "name": name, "n": 0, "delivered": 0, "failed": 0, "credits": ZERO},
        )
        m["n"] += r["n"]
        m["delivered"] += r["delivered"]
        m["failed"] += r["failed"]
        m["credits"] += r["credits"] or ZERO
    return sorted(merged.values(), key=lambda m: -m["n"])


def campaign_credits(c: Campaign) -> dict:
    """Reserved / charged / released / refunded / net of the campaign, from the ledger."""
    K = CreditTransaction.Kind
    sums = CreditTransaction.objects.filter(
        account_id=c.account_id, reference=f"campaign:{c.pk}"
    ).aggregate(
        reserved=Sum("reserved_change", filter=Q(kind=K.RESERVE)),
        charged=Sum("amount", filter=Q(kind=K.CHARGE)),
        released=Sum("reserved_change", filter=Q(kind=K.RELEASE)),
        refunded=Sum("amount", filter=Q(kind=K.REFUND)),
    )
    reserved = sums["reserved"] or ZERO
    charged = -(sums["charged"] or ZERO)
    released = -(sums["released"] or ZERO)
    # Provider refunds are ledger rows under the campaign's reference too
    # (campaigns.reports writes one per campaign and report batch).
    refunded = sums["refunded"] or ZERO
    return {
        "reserved": reserved,
        "charged": charged,
        "released": released,
        "refunded": refunded,
        "net": charged - refunded,
        "still_reserved": c.credits_reserved,
    }


def _build_report(c: Campaign, now: datetime) -> Report:
    return Report(
        chart=_chart(c, now),
        failures=_failures(c),
        countries=_countries(c),
        credits=campaign_credits(c),
        built_at=now,
    )


def campaign_report(campaign: Campaign, *, now: datetime | None = None) -> Report:
    """The delivery report; on large campaigns cached (``cached`` says so and
    ``built_at`` says when) for :func:`report_ttl` of its own build time."""
    now = now or timezone.now()
    if campaign.recipients_total <= REPORT_CACHE_ABOVE:
        return _build_report(campaign, now)
    # Once nothing can change, the last report before that is stale: rebuild once.
    key = f"campaign-report:{campaign.pk}:{status_display(campaign).final}"
    report = cache.get(key)
    if report is not None:
        report.cached = True
        return report
    started = time.monotonic()
    report = _build_report(campaign, now)
    report.build_seconds = time.monotonic() - started
    cache.set(key, report, report_ttl(report))
    return report


def report_ttl(report: Report) -> int:
    """How long a report stays cached: a report that takes long to build is
    rebuilt seldom, so polling pages never keep a worker busy with it."""
    return max(REPORT_CACHE_SECONDS, int(20 * report.build_seconds))


# ------------------------------------------------------------- formatting


def format_when(value: datetime | None, *, zone: str | None = None, with_zone: bool = False) -> str:
    """The one date format of the campaign pages: ``3 Dec 2026, 18:30`` (+ zone)."""
    if value is None:
        return ""
    tz = ZoneInfo(zone) if zone else timezone.get_current_timezone()
    local = value.astimezone(tz)
    text = f"{local.day} {local:%b %Y, %H:%M}"
    if with_zone:
        abbreviation, name = local.strftime("%Z"), getattr(tz, "key", "")
        text += f" {abbreviation}" + (f" ({name})" if name and name != abbreviation else "")
    return text
