"""Shared fixtures. Every test runs against the configured database
(SQLite by default, PostgreSQL in CI's second pass)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model

from smsoffice.roles import OPERATORS, RESELLERS, ensure_roles


@pytest.fixture(autouse=True, scope="session")
def _plain_static_storage():
    # The manifest storage needs `collectstatic`; tests render admin pages without it.
    django_settings.STORAGES = {
        **django_settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _isolated_cache(request):
    # The rate limiter and token caches live in the cache; start each test empty.
    # Without a database the DB cache cannot be reached (nor used by the test).
    marker = request.node.get_closest_marker("django_db")
    if "transactional_db" in request.fixturenames or (marker and marker.kwargs.get("transaction")):
        request.getfixturevalue("transactional_db")
    elif "db" in request.fixturenames or marker:
        request.getfixturevalue("db")
    elif not django_settings.REDIS_URL:
        return
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def roles(db):
    return ensure_roles()


def _make_user(username: str, *, superuser: bool = False, group=None):
    user = get_user_model().objects.create_user(
        username=username, password="pw-" + username, is_staff=True, is_superuser=superuser
    )
    if group is not None:
        user.groups.add(group)
    return user


@pytest.fixture
def superuser(db):
    return _make_user("root", superuser=True)


@pytest.fixture
def operator(roles):
    return _make_user("op", group=roles[OPERATORS])


@pytest.fixture
def make_reseller(roles):
    def make(username: str):
        return _make_user(username, group=roles[RESELLERS])

    return make


@pytest.fixture
def make_account(db):
    from providers.models import ProviderAccount
    from providers.services import credits_top_up

    counter = iter(range(1, 10_000))

    def make(*, balance=Decimal("0"), name=None, backend="simulator", owners=(), **fields):
        account = ProviderAccount.objects.create(
            name=name or f"Account {next(counter)}", backend=backend, **fields
        )
        if owners:
            account.owners.set(owners)
        if Decimal(balance) > 0:
            credits_top_up(account=account, amount=balance, note="test")
            account.refresh_from_db()
        return account

    return make
