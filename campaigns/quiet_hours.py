"""Quiet hours: an account's optional send window, in each recipient's local time.

A recipient's time zone comes from the number (phonenumbers' time zone data:
a New York landline is ``America/New_York``); a number whose country spans
several zones (an Australian or US mobile) uses the account's ``time_zone``.
The zone is worked out once, when the campaign is planned, and stored on the
message; dispatch then claims only messages whose zone is inside the window
now. Messages outside it wait for the window to open; they are never dropped.

A window ``start``-``end`` is half open (``start <= local < end``); when
``end`` is before ``start`` it runs over midnight (22:00-06:00). Equal start
and end, or either missing, means no window (send at any time).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from django.core.exceptions import ValidationError
from phonenumbers import timezone as phone_timezone

UNKNOWN_ZONE = "Etc/Unknown"


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """The ZoneInfo for an IANA name; a clear ValidationError for a bad one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            f"{name!r} is not a time zone; use an IANA name such as 'Australia/Sydney'.",
            code="time_zone",
        ) from None


def recipient_time_zone(phone: str, *, default: str) -> str:
    """IANA zone of an E.164 number, or ``default`` when the number's country
    (or its number range) spans several zones or is unknown."""
    try:
        parsed = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return default
    zones = [z for z in phone_timezone.time_zones_for_number(parsed) if z != UNKNOWN_ZONE]
    return zones[0] if len(zones) == 1 else default


def has_window(account) -> bool:
    """Whether ``account`` restricts sending to a daily window."""
    start, end = account.send_window_start, account.send_window_end
    return start is not None and end is not None and start != end


def _local_time_in(start: time, end: time, local: time) -> bool:
    if start < end:
        return start <= local < end
    return local >= start or local < end  # over midnight


def window_open(*, start: time | None, end: time | None, tz: str, at: datetime) -> bool:
    """Whether the instant ``at`` (aware) is inside the window in zone ``tz``."""
    if start is None or end is None or start == end:
        return True
    local = at.astimezone(zone(tz)).time().replace(tzinfo=None)
    return _local_time_in(start, end, local)


def next_window_open(*, start: time | None, end: time | None, tz: str, after: datetime) -> datetime:
    """The first instant at or after ``after`` when the window is open in ``tz``.

    Works on DST change days: the local opening time is converted with the
    zone's offset *of that day*; an opening time that does not exist that day
    (inside a spring-forward gap) opens at the first instant after the gap.
    """
    if window_open(start=start, end=end, tz=tz, at=after):
        return after
    zi = zone(tz)
    local_after = after.astimezone(zi)
    for days in range(0, 3):
        day = local_after.date() + timedelta(days=days)
        naive = datetime.combine(day, start)
        # fold=0 reads an ambiguous time as its first occurrence; a time inside
        # a gap maps past the gap once round-tripped through UTC.
        candidate = naive.replace(tzinfo=zi).astimezone(UTC)
        if candidate.astimezone(zi).replace(tzinfo=None) != naive:
            # Inside a gap: the opening is the end of the gap, found by walking
            # forward from the UTC instant of the naive time read before it.
            candidate = _end_of_gap(naive, zi)
        if candidate >= after and window_open(start=start, end=end, tz=tz, at=candidate):
            return candidate
    raise AssertionError(f"No opening of {start}-{end} in {tz} within 3 days of {after}.")


def _end_of_gap(naive: datetime, zi: ZoneInfo) -> datetime:
    """First UTC instant whose local time in ``zi`` is after ``naive`` (gap end)."""
    probe = naive.replace(tzinfo=zi, fold=1).astimezone(UTC) - timedelta(hours=3)
    while probe.astimezone(zi).replace(tzinfo=None) < naive:
        probe += timedelta(minutes=1)
    return probe.replace(second=0, microsecond=0)


def open_zones(*, account, zones: Iterable[str], at: datetime) -> set[str]:
    """The subset of ``zones`` in which ``account``'s window is open at ``at``."""
    start, end = account.send_window_start, account.send_window_end
    return {tz for tz in zones if window_open(start=start, end=end, tz=tz, at=at)}


def earliest_opening(*, account, zones: Iterable[str], after: datetime) -> datetime | None:
    """When the window next opens in the first of ``zones`` to open (None: no zones)."""
    start, end = account.send_window_start, account.send_window_end
    openings = [next_window_open(start=start, end=end, tz=tz, after=after) for tz in set(zones)]
    return min(openings) if openings else None
