"""Credential key names are shown (never the values) on the account form,
escaped: a key name chosen by whoever saved it cannot inject markup."""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

EVIL = '<img src=x onerror="alert(document.cookie)">'


def test_a_credential_key_name_is_escaped_on_the_account_form(client, superuser, make_account):
    account = make_account(name="Acme", credentials={EVIL: "v", "username": "secret-user"})
    client.force_login(superuser)
    page = client.get(reverse("admin:providers_provideraccount_change", args=[account.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert EVIL not in html
    assert "&lt;img src=x onerror=&quot;alert(document.cookie)&quot;&gt;" in html
    assert "username" in html and "secret-user" not in html
