"""Compatibility re-export: the engine now lives in :mod:`campaigns.engine`.

Kept so code written against ``campaigns.dispatch`` keeps importing; new code
imports from ``campaigns.engine``. Patch engine internals (the clock, the
enqueue hook) on their own modules (``campaigns.engine.clock``,
``campaigns.engine.enqueue``), not here.
"""

from campaigns.engine import *  # noqa: F403
from campaigns.engine import __all__  # noqa: F401
