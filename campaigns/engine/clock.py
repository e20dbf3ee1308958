"""The engine's one clock.

Every engine module reads the time through :func:`now` (wall clock, for
what is stored) and :func:`monotonic` (for time slices and deadlines),
looked up on this module at call time, so tests drive the whole engine with
one fake clock by patching ``campaigns.engine.clock.now`` and ``.monotonic``.
"""

from __future__ import annotations

import time
from datetime import datetime

from django.utils import timezone


def now() -> datetime:
    return timezone.now()


def monotonic() -> float:
    return time.monotonic()
