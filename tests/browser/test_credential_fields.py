"""The account form in a real browser: only the chosen backend's credential
fields are shown, and choosing another backend shows its own."""

from __future__ import annotations

import pytest

from tests.browser.support import CHROMIUM, NO_CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM),
]


@pytest.mark.django_db(transaction=True)
def test_only_the_chosen_backends_credentials_are_shown(
    live_server,
    superuser,
    page,
):
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/providers/provideraccount/add/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "pw-root")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/providers/provideraccount/add/")

    token = page.locator("#id_credential__fullsms__api_token")
    username = page.locator("#id_credential__smseveryone__username")
    page.select_option("#id_backend", "fullsms")
    assert token.is_visible() and not username.is_visible()
    assert token.get_attribute("type") == "password"
    page.select_option("#id_backend", "smseveryone")
    assert username.is_visible() and not token.is_visible()
