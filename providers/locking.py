"""The one place that takes row locks on credit accounts, and the retry of a
credit service that lost a lock conflict anyway (after pretix's
``pretix.base.services.locking.lock_objects``).

Lock order — every transaction that holds more than one of these takes them
in this order, each kind in ascending primary key, so no two of them can wait
on each other in a cycle:

1. campaign rows (``Campaign``, ascending pk; ``campaigns.counters`` updates
   several campaigns' counters in ascending pk);
2. message rows of those campaigns (ascending pk);
3. provider accounts (``ProviderAccount``, ascending pk), through
   :func:`lock_accounts` only;
4. a provider top-up intent (``TopUpIntent``) being settled, after its
   accounts;
5. then rows are only inserted (ledger rows), never locked.

Lock mode: ``SELECT … FOR NO KEY UPDATE`` on PostgreSQL. The credit services
change balances, never keys, and a row locked this way still lets another
transaction take the ``FOR KEY SHARE`` lock of a foreign-key check. That
matters because of PostgreSQL's deferred foreign-key checks: a transaction
that updates a sub-account row twice (charge then release, as the engine's
batch does) re-checks ``ProviderAccount.parent`` at commit with a KEY SHARE
lock on the reseller's row. Under a plain ``FOR UPDATE`` held by a transfer
(which waits for the sub-account) that was a deadlock. SQLite has no row
locks: its writers are serialised by ``BEGIN IMMEDIATE`` (settings), so the
select is a plain read there.

Never hold these locks while waiting on a provider: provider calls go
between short transactions (see ``providers.services.topups``).
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from django.db import DEFAULT_DB_ALIAS, OperationalError, connections

if TYPE_CHECKING:
    from providers.models import ProviderAccount

logger = logging.getLogger("providers.credits")

#: Attempts of a credit service that lost a deadlock or serialization
#: conflict, counting the first (only when it runs its own transaction).
ATTEMPTS = 4

#: SQLSTATEs worth one more try: the transaction was rolled back because of
#: other transactions, not because of what it did.
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001", "55P03"})  # deadlock, serialization, lock


class LockingError(RuntimeError):
    """A lock was requested outside a transaction (it would be released at once)."""


def lock_accounts(account_ids: Iterable[int], *, using: str = DEFAULT_DB_ALIAS) -> dict:
    """Lock the ``ProviderAccount`` rows of ``account_ids`` (ascending pk) and
    return them freshly read, ``{pk: account}``.

    Must run inside ``transaction.atomic``: a lock taken in autocommit mode
    ends with its statement. A missing pk is simply absent from the result.
    """
    from providers.models import ProviderAccount

    connection = connections[using]
    if not connection.in_atomic_block:
        raise LockingError(
            "lock_accounts() runs only inside transaction.atomic(): outside one the lock "
            "would be released before the caller used it."
        )
    ids = sorted({int(pk) for pk in account_ids})
    queryset = ProviderAccount.objects.using(using).filter(pk__in=ids).order_by("pk")
    if connection.vendor == "postgresql":
        queryset = queryset.select_for_update(no_key=True)
    elif connection.features.has_select_for_update:
        queryset = queryset.select_for_update()
    return {account.pk: account for account in queryset}


def lock_account(account_id: int, *, using: str = DEFAULT_DB_ALIAS) -> ProviderAccount:
    """:func:`lock_accounts` for one account (``DoesNotExist`` when it is gone)."""
    from providers.models import ProviderAccount

    found = lock_accounts([account_id], using=using)
    if account_id not in found:
        raise ProviderAccount.DoesNotExist(f"No provider account #{account_id}.")
    return found[account_id]


# -------------------------------------------------------------------- retry


def is_lock_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` is a deadlock, serialization failure or lock timeout:
    the database rolled the transaction back and the same work may succeed."""
    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    if sqlstate in _RETRYABLE_SQLSTATES:
        return True
    # SQLite: a writer that waited the whole busy timeout.
    return "database is locked" in str(exc)


class _Stats:
    """How many conflicts were retried and how many gave up (benchmarks read it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.retried = 0
        self.gave_up = 0

    def add(self, *, retried: int = 0, gave_up: int = 0) -> None:
        with self._lock:
            self.retried += retried
            self.gave_up += gave_up

    def reset(self) -> None:
        with self._lock:
            self.retried = self.gave_up = 0


retry_stats = _Stats()

P = ParamSpec("P")
R = TypeVar("R")


def retry_on_conflict(
    busy_error: Callable[[BaseException], Exception],
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a service so that a lock conflict is retried, then refused.

    When the service runs its own transaction (no ``atomic`` block around the
    call), a deadlock or serialization failure — also one raised at commit by
    a deferred foreign-key check — rolled everything back, so the service is
    run again, up to :data:`ATTEMPTS` times with a short random pause. When
    the caller holds a transaction, the conflict happened inside the
    service's savepoint (rolled back, the caller's transaction is intact) and
    is not retried: the caller's own locks are likely part of the cycle.
    Either way a conflict that remains becomes ``busy_error(exc)`` (a clear
    refusal), never a raw ``OperationalError``.
    """

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            attempts = 1 if connections[DEFAULT_DB_ALIAS].in_atomic_block else ATTEMPTS
            for attempt in range(1, attempts + 1):
                try:
                    return func(*args, **kwargs)
                except OperationalError as exc:
                    if not is_lock_conflict(exc):
                        raise
                    if attempt == attempts:
                        retry_stats.add(gave_up=1)
                        logger.warning(
                            "%s gave up after %d attempt(s): %s", func.__name__, attempt, exc
                        )
                        raise busy_error(exc) from exc
                    retry_stats.add(retried=1)
                    logger.info("%s retried after a lock conflict: %s", func.__name__, exc)
                    time.sleep(random.uniform(0.01, 0.05) * attempt)
            raise AssertionError("unreachable")  # pragma: no cover

        return wrapper

    return decorate
