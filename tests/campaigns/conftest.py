"""Fixtures of the campaign engine tests (see engine_helpers)."""

from tests.campaigns.engine_helpers import (  # noqa: F401
    account,
    clock,
    enqueue_calls,
    enqueued,
    sending,
)
