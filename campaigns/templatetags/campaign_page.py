"""Filters of the campaign pages: one number format (thousands separators)
and one date format, so every figure reads the same everywhere."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django import template

from campaigns.campaign_page import format_when

register = template.Library()


@register.filter
def num(value) -> str:
    """``12345`` → ``12,345``; decimals keep two places: ``10000.5`` → ``10,000.50``."""
    if value is None or value == "":
        return "—"
    if isinstance(value, Decimal | float) and value != int(value):
        return f"{Decimal(str(value)):,.2f}"
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


@register.filter
def credits(value) -> str:
    """Credits always with two places: ``10000`` → ``10,000.00``."""
    if value is None or value == "":
        return "—"
    return f"{Decimal(str(value)):,.2f}"


@register.filter
def when(value: datetime | None, zone: str = "") -> str:
    """``3 Dec 2026, 18:30`` in the current zone, or in ``zone`` with its name."""
    if not value:
        return "—"
    return format_when(value, zone=zone or None, with_zone=bool(zone))


@register.filter
def per_minute(value: float | None) -> str:
    if not value:
        return "—"
    if value >= 10:
        return f"{value:,.0f} messages/min"
    return f"{value:.1f} messages/min"
