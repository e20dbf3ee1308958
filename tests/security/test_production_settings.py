"""Production refuses the development SECRET_KEY (or none); every page has a
Content-Security-Policy the admin works under; a foreign ``next`` after login
lands on the admin index."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib import admin
from django.urls import reverse

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "k" * 20 + "Zq8#vLp9$Tz4@Rk8^Wn3&Hd6*Jf1(Bs5"
PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "smsoffice.settings",
    # Never the developer's .env (make run writes one with its own key).
    "ENV_FILE": "",
    "DEBUG": "False",
    "ALLOWED_HOSTS": "sms.example.com",
    "CREDENTIALS_KEYS": "dGVzdC1vbmx5LWNyZWRlbnRpYWxzLWtleS0wMTIzNDU=",
}


def _check(**overrides: str | None) -> subprocess.CompletedProcess:
    drop = {"SECRET_KEY", "DATABASE_URL", "CREDENTIALS_KEYS"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(PRODUCTION)
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "key",
    [None, "", "insecure-dev-key-only-for-tests-and-make-run", "change-me", "short"],
)
def test_production_refuses_to_start_without_a_real_secret_key(key):
    result = _check(SECRET_KEY=key)
    assert result.returncode != 0
    assert "SECRET_KEY is missing, a placeholder or the development key" in result.stderr


def test_production_starts_with_real_keys_and_development_without_any():
    assert _check(SECRET_KEY=GOOD_KEY).returncode == 0
    assert _check(SECRET_KEY=None, CREDENTIALS_KEYS=None, DEBUG="True").returncode == 0


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (None, "CREDENTIALS_KEYS is not set, and DEBUG is off"),
        ("not-a-fernet-key", "CREDENTIALS_KEYS: key 1 is not a Fernet key"),
    ],
)
def test_production_refuses_to_start_without_an_encryption_key(keys, message):
    result = _check(SECRET_KEY=GOOD_KEY, CREDENTIALS_KEYS=keys)
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.django_db
def test_admin_pages_send_a_csp_that_allows_no_inline_script(client, superuser):
    client.force_login(superuser)
    response = client.get(reverse("admin:index"))
    policy = response["Content-Security-Policy"]
    directives = dict(
        (part.split()[0], part.split()[1:]) for part in policy.split(";") if part.strip()
    )
    assert directives["script-src"] == ["'self'"]
    assert directives["default-src"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["object-src"] == ["'none'"]


@pytest.mark.django_db
def test_no_admin_page_needs_an_inline_script_or_handler(client, superuser):
    """What the policy forbids must not be on any page: every script of every
    changelist and add form is a static file."""
    client.force_login(superuser)
    urls = [reverse("admin:index")]
    for model in admin.site._registry:
        opts = model._meta
        urls.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        urls.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_add"))
    for url in urls:
        response = client.get(url)
        if response.status_code != 200:
            continue
        html = response.content.decode()
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert "src=" in tag, (url, tag)
        assert not re.search(r"\son[a-z]+\s*=", html), url
        assert "javascript:" not in html, url


@pytest.mark.django_db
def test_a_foreign_next_after_login_lands_on_the_admin(client, operator):
    response = client.post(
        reverse("admin:login"),
        {"username": "op", "password": "pw-op", "next": "https://evil.example/steal"},
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")
