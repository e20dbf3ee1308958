"""The simulator's state in the database, behind the small cache-like API the
simulator uses (``get``, ``set``, ``add``, ``get_many``, ``set_many``,
``delete_many``), so nothing is ever evicted.

Values must be JSON (numbers, strings, lists, dicts). Each entry expires
``timeout`` seconds after it was last written, like the cache it replaces;
an expired entry reads as missing and is purged on later writes. Every call
is its own short transaction: the simulator is called outside the engine's
row locks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from providers.models import SimulatorState

DEFAULT_TIMEOUT = 60 * 60 * 24 * 30


class SimulatorStore:
    """Cache-shaped access to :class:`SimulatorState` rows."""

    @staticmethod
    def _expiry(timeout: float | None) -> datetime:
        return timezone.now() + timedelta(seconds=timeout or DEFAULT_TIMEOUT)

    @staticmethod
    def _live():
        return SimulatorState.objects.filter(expires_at__gt=timezone.now())

    def get(self, key: str, default: Any = None) -> Any:
        row = self._live().filter(key=key).values_list("value", flat=True).first()
        return default if row is None else row

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(keys)
        found: dict[str, Any] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            found.update(self._live().filter(key__in=chunk).values_list("key", "value"))
        return found

    def set(self, key: str, value: Any, timeout: float | None = None) -> None:
        self.set_many({key: value}, timeout)

    def set_many(self, mapping: Mapping[str, Any], timeout: float | None = None) -> list:
        if not mapping:
            return []
        expires_at = self._expiry(timeout)
        SimulatorState.objects.bulk_create(
            [SimulatorState(key=k, value=v, expires_at=expires_at) for k, v in mapping.items()],
            update_conflicts=True,
            unique_fields=["key"],
            update_fields=["value", "expires_at"],
            batch_size=500,
        )
        SimulatorState.objects.filter(expires_at__lte=timezone.now()).delete()
        return []

    def add(self, key: str, value: Any, timeout: float | None = None) -> bool:
        """Store ``value`` unless ``key`` holds a live value; True if stored.
        Atomic: of two concurrent adds of one key, exactly one wins."""
        SimulatorState.objects.filter(key=key, expires_at__lte=timezone.now()).delete()
        try:
            with transaction.atomic():
                SimulatorState.objects.create(
                    key=key, value=value, expires_at=self._expiry(timeout)
                )
        except IntegrityError:
            return False
        return True

    def delete_many(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        for start in range(0, len(keys), 500):
            SimulatorState.objects.filter(key__in=keys[start : start + 500]).delete()

    def delete(self, key: str) -> None:
        self.delete_many([key])
