"""The engine's one clock.

Every engine module reads the time through :func:`now` (looked up on this
module at call time), so tests drive the whole engine with one fake clock by
patching ``campaigns.engine.clock.now``.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone


def now() -> datetime:
    return timezone.now()
