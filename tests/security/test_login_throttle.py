"""Login throttling (django-axes): repeated wrong passwords lock the login,
with a clear message, also for the right password; behind a proxy the client
is read from the trusted forwarding header only."""

from __future__ import annotations

import pytest
from django.test import RequestFactory, override_settings
from django.urls import reverse

from smsoffice.clientip import client_ip

pytestmark = pytest.mark.django_db

LOGIN = reverse("admin:login")


def _login(client, username, password, **extra):
    return client.post(
        LOGIN, {"username": username, "password": password, "next": "/admin/"}, **extra
    )


def test_thirty_wrong_passwords_lock_the_login_and_the_right_one_is_refused(client, operator):
    answers = [_login(client, "op", f"wrong-{i}").status_code for i in range(30)]
    assert answers[0] == 200  # the form again, with Django's "enter a correct" error
    assert answers[-1] == 429
    response = _login(client, "op", "pw-op")
    assert response.status_code == 429
    text = response.content.decode()
    assert "Login locked: too many failed attempts" in text
    assert "Try again in" in text
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302  # still not logged in


@override_settings(AXES_FAILURE_LIMIT=3)
def test_a_good_login_before_the_limit_resets_the_count(client, operator):
    for _ in range(2):
        _login(client, "op", "wrong")
    assert _login(client, "op", "pw-op").status_code == 302
    client.logout()
    for _ in range(2):
        _login(client, "op", "wrong")
    assert _login(client, "op", "pw-op").status_code == 302


@override_settings(AXES_FAILURE_LIMIT=3)
def test_forged_forwarding_header_does_not_dodge_the_lock_without_a_trusted_proxy(client, operator):
    for i in range(3):
        _login(client, f"nobody{i}", "x", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}")
    # Same socket address: locked, whatever the header claims.
    response = _login(client, "op", "pw-op", HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert response.status_code == 429


@override_settings(AXES_FAILURE_LIMIT=3, TRUSTED_PROXY_COUNT=1)
def test_behind_a_proxy_each_client_address_is_locked_on_its_own(client, operator):
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    for i in range(3):
        _login(client, f"nobody{i}", "x", HTTP_X_FORWARDED_FOR="203.0.113.9", **proxy)
    assert (
        _login(client, "op", "pw-op", HTTP_X_FORWARDED_FOR="203.0.113.9", **proxy).status_code
        == 429
    )
    # Another client behind the same proxy still logs in.
    assert (
        _login(client, "op", "pw-op", HTTP_X_FORWARDED_FOR="203.0.113.10", **proxy).status_code
        == 302
    )


@pytest.mark.parametrize(
    ("count", "header", "expected"),
    [
        (0, "1.1.1.1", "10.0.0.1"),  # no trusted proxy: the header is ignored
        (1, "", "10.0.0.1"),
        (1, "1.1.1.1", "1.1.1.1"),
        (1, "6.6.6.6, 1.1.1.1", "1.1.1.1"),  # the client's own forged entry is skipped
        (2, "6.6.6.6, 1.1.1.1, 10.9.9.9", "1.1.1.1"),
        (2, "1.1.1.1", "1.1.1.1"),
    ],
)
def test_client_ip_trusts_only_the_configured_proxies(settings, count, header, expected):
    settings.TRUSTED_PROXY_COUNT = count
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=header)
    assert client_ip(request) == expected
