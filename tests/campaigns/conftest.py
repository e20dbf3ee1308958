"""Fixtures of the campaign engine tests (see engine_helpers)."""

from tests.campaigns.engine_helpers import clock, enqueue_calls, enqueued  # noqa: F401
