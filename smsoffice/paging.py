"""Bounded pagination for admin lists of millions of rows.

Django's paginator counts every matching row (``COUNT(*)``) and lets people
jump to the last page (an ``OFFSET`` of the whole table). Both grow with the
table. :class:`BoundedPaginator` counts at most ``limit + 1`` rows, so the
count, and the deepest page that can be reached, cost the same at a thousand
rows and at a million. The page then says "more than N" and asks for a
filter or a search, which the indexes answer at once.
"""

from __future__ import annotations

from django.core.paginator import Paginator
from django.utils.functional import cached_property

#: Rows reachable by paging; beyond this, filter or search.
DEFAULT_LIMIT = 10_000


class BoundedPaginator(Paginator):
    """A paginator that counts and pages through at most ``limit`` rows.

    ``count`` is ``min(rows, limit)``; ``truncated`` tells whether rows were
    left out, so the page can say "more than ``limit``" instead of a wrong
    total.
    """

    limit = DEFAULT_LIMIT

    @cached_property
    def _bounded_count(self) -> int:
        # SELECT COUNT(*) FROM (SELECT ... LIMIT n): stops after n rows.
        return self.object_list[: self.limit + 1].count()

    @cached_property
    def count(self) -> int:
        return min(self._bounded_count, self.limit)

    @cached_property
    def truncated(self) -> bool:
        return self._bounded_count > self.limit


def bounded_paginator(limit: int) -> type[BoundedPaginator]:
    """A :class:`BoundedPaginator` subclass with its own ``limit``."""
    return type(f"BoundedPaginator{limit}", (BoundedPaginator,), {"limit": limit})
