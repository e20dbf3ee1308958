"""providers.locking: one place, one order, one mode; conflicts retried at the
service boundary and otherwise refused clearly."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import OperationalError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from providers.locking import LockingError, lock_accounts, retry_on_conflict, retry_stats
from providers.services import CreditError, credits_reserve
from providers.services.errors import busy_error
from tests.providers.test_credits import sms_test_backends  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.django_db


class _Deadlock(Exception):
    sqlstate = "40P01"


def _deadlock() -> OperationalError:
    try:
        raise OperationalError("deadlock detected") from _Deadlock()
    except OperationalError as exc:
        return exc


@pytest.mark.django_db(transaction=True)
def test_lock_accounts_refuses_to_run_outside_a_transaction(make_account):
    account = make_account(backend="ledgertest")
    with pytest.raises(LockingError, match=r"only inside transaction\.atomic"):
        lock_accounts([account.pk])


def test_lock_accounts_returns_fresh_rows_in_ascending_pk(make_account):
    a, b, c = (make_account(backend="ledgertest", balance=n) for n in (1, 2, 3))
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        locked = lock_accounts([c.pk, a.pk, c.pk, b.pk])
    assert list(locked) == [a.pk, b.pk, c.pk]
    assert locked[c.pk].balance == Decimal("3")
    sql = queries.captured_queries[-1]["sql"]
    assert "ORDER BY" in sql
    if connection.vendor == "postgresql":
        assert "FOR NO KEY UPDATE" in sql


def test_a_conflict_in_its_own_transaction_is_retried_then_succeeds(monkeypatch):
    monkeypatch.setattr("providers.locking.time.sleep", lambda s: None)
    calls = []

    @retry_on_conflict(busy_error)
    def service():
        calls.append(1)
        if len(calls) < 3:
            raise _deadlock()
        return "done"

    retry_stats.reset()
    # pytest-django wraps the test in a transaction; the retry only happens at
    # the outermost level, so pretend we are there.
    monkeypatch.setattr(connections["default"], "in_atomic_block", False)
    assert service() == "done"
    assert len(calls) == 3
    assert retry_stats.retried == 2


def test_a_conflict_that_stays_becomes_a_clear_refusal(monkeypatch):
    monkeypatch.setattr("providers.locking.time.sleep", lambda s: None)
    monkeypatch.setattr(connections["default"], "in_atomic_block", False)

    @retry_on_conflict(busy_error)
    def service():
        raise _deadlock()

    with pytest.raises(CreditError, match=r"nothing was written\. Try again") as exc:
        service()
    assert exc.value.code == "busy"


def test_inside_a_callers_transaction_a_conflict_is_refused_without_retry(
    make_account, monkeypatch
):
    """The caller's transaction survives (the service's savepoint rolled
    back) and gets a CreditError it already handles, not an OperationalError."""
    account = make_account(backend="ledgertest", balance=10)
    calls = []

    def conflicting_lock(ids, **kw):
        calls.append(1)
        raise _deadlock()

    monkeypatch.setattr("providers.services.movements.lock_account", conflicting_lock)
    with transaction.atomic():
        with pytest.raises(CreditError) as exc:
            credits_reserve(account=account, amount=1, reference="campaign:1")
        assert exc.value.code == "busy"
        account.refresh_from_db()  # the outer transaction is still usable
    assert len(calls) == 1


def test_other_operational_errors_are_not_swallowed(monkeypatch):
    @retry_on_conflict(busy_error)
    def service():
        raise OperationalError("no such table: x")

    with pytest.raises(OperationalError, match="no such table"):
        service()
