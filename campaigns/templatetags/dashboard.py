"""``{% dashboard_panel %}``: the dashboard on the admin index."""

from __future__ import annotations

from django import template
from django.conf import settings
from django.utils.formats import date_format, number_format

from campaigns.dashboard import Dashboard, dashboard_figures

register = template.Library()

#: SVG chart geometry (viewBox units; the SVG scales to its container).
WIDTH, HEIGHT, TOP, BOTTOM, LEFT = 600, 180, 10, 24, 44
SERIES = (("sent", "Sent"), ("delivered", "Delivered"), ("failed", "Failed"))


#: Seconds between two refreshes of the panel in an open page
#: (``settings.DASHBOARD_REFRESH_SECONDS`` overrides it).
REFRESH_SECONDS = 30


@register.inclusion_tag("admin/dashboard/panel.html", takes_context=True)
def dashboard_panel(context) -> dict:
    return panel_context(context["request"])


def panel_context(request) -> dict:
    """What the panel template draws, for ``request.user``."""
    figures = dashboard_figures(user=request.user)
    return {
        "d": figures,
        "chart": chart(figures),
        "request": request,
        "refresh_seconds": getattr(settings, "DASHBOARD_REFRESH_SECONDS", REFRESH_SECONDS),
    }


def chart(figures: Dashboard) -> dict:
    """Bars for the 30-day chart, computed here so the template only draws."""
    peak = max([max(d.sent, d.delivered, d.failed) for d in figures.days] + [0])
    scale = (HEIGHT - TOP - BOTTOM) / peak if peak else 0
    slot = (WIDTH - LEFT) / len(figures.days)
    bar = slot / (len(SERIES) + 1)
    bars = []
    for i, day in enumerate(figures.days):
        label = date_format(day.day, "j M")
        for j, (attr, name) in enumerate(SERIES):
            value = getattr(day, attr)
            height = value * scale
            bars.append(
                {
                    "x": round(LEFT + i * slot + j * bar, 1),
                    "y": round(HEIGHT - BOTTOM - height, 1),
                    "w": round(bar, 1),
                    "h": round(height, 1),
                    "series": attr,
                    "title": f"{label}: {number_format(value, force_grouping=True)} {name.lower()}",
                }
            )
    last = len(figures.days) - 1
    ticks = [
        {
            "x": round(LEFT + i * slot + (slot if i == last else slot / 2), 1),
            "label": date_format(figures.days[i].day, "j M"),
            "anchor": "end" if i == last else "middle",
        }
        for i in (0, last // 2, last)
    ]
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "baseline": HEIGHT - BOTTOM,
        "left": LEFT,
        "top": TOP,
        "peak": peak,
        "bars": bars,
        "ticks": ticks,
        "label_y": HEIGHT - 6,
        "empty": peak == 0,
        "series": SERIES,
    }


@register.filter
def thousands(value) -> str:
    """``12345`` → ``12,345`` (credits keep their two decimals)."""
    if value is None or value == "":
        return ""
    return number_format(value, force_grouping=True)


@register.filter
def percent(value) -> str:
    """A 0..1 ratio as a whole percentage, ``—`` when there is none."""
    return "—" if value is None else f"{value * 100:.0f} %"
