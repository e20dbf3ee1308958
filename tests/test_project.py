"""Project-level promises: migrations match the models, the production
settings pass Django's deployment checks, the demo seed is idempotent."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
def test_migrations_match_the_models():
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


def _manage(*args, env_overrides: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "DATABASE_URL"}}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


PRODUCTION_ENV = {
    "DEBUG": "False",
    "SECRET_KEY": "x7!Qm2#vLp9$Tz4@Rk8^Wn3&Hd6*Jf1(Bs5)Yc0_Ge-Ua+Io=Pl",
    "ALLOWED_HOSTS": "sms.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://sms.example.com",
    "SECURE_SSL_REDIRECT": "True",
}


def test_deploy_checks_pass_with_production_settings():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env_overrides=PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_deploy_checks_flag_an_insecure_setup():
    # The check above can fail: DEBUG on and no SSL redirect are reported.
    env = {**PRODUCTION_ENV, "DEBUG": "True", "SECURE_SSL_REDIRECT": "False"}
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env_overrides=env)
    assert result.returncode != 0
    assert "security.W018" in result.stderr + result.stdout  # DEBUG=True in deployment


def test_q_cluster_task_timeout_is_below_retry(settings):
    q = settings.Q_CLUSTER
    assert q["timeout"] < q["retry"]
    assert q["max_attempts"] >= 1
    assert q["catch_up"] is False
    if settings.REDIS_URL:
        assert q["redis"] == settings.REDIS_URL
    else:
        assert q["orm"] == "default"


@pytest.mark.django_db
def test_seed_demo_is_idempotent():
    from campaigns.models import Campaign, MessageTemplate
    from contacts.models import Contact, ContactList, ListMembership, OptOut
    from providers.models import CreditTransaction, ProviderAccount

    models = [
        Campaign,
        MessageTemplate,
        Contact,
        ContactList,
        ListMembership,
        OptOut,
        CreditTransaction,
        ProviderAccount,
    ]
    out = StringIO()
    call_command("seed_demo", stdout=out)
    counts = {m: m.objects.count() for m in models}
    balances = dict(ProviderAccount.objects.values_list("name", "balance"))
    call_command("seed_demo", stdout=StringIO())
    assert {m: m.objects.count() for m in models} == counts
    assert dict(ProviderAccount.objects.values_list("name", "balance")) == balances
    assert counts[Contact] == 200
    assert counts[ContactList] == 3
    assert ProviderAccount.objects.filter(parent__name="Acme Reseller").count() == 2
    assert "reseller" in out.getvalue() and "operator" in out.getvalue()


@pytest.mark.django_db
def test_seeded_logins_work(client):
    call_command("seed_demo", stdout=StringIO())
    for username, password in [
        ("admin", "admin-demo-pass"),
        ("operator", "operator-demo-pass"),
        ("reseller", "reseller-demo-pass"),
    ]:
        # Through the login form: the throttling backend needs the request.
        response = client.post(
            "/admin/login/", {"username": username, "password": password, "next": "/admin/"}
        )
        assert response.status_code == 302, username
        assert client.get("/admin/").status_code == 200
        client.logout()
