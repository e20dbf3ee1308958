"""The dashboard in a real browser: after a campaign, the figures a person
reads on the admin index equal the messages table, on a desktop and a phone."""

from __future__ import annotations

from decimal import Decimal

import pytest
from playwright.sync_api import expect

from campaigns.models import Message
from tests.browser.support import CHROMIUM, NO_CHROMIUM
from tests.campaigns.test_dashboard import _run_on_simulator, _simulator_account

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM),
]

S = Message.Status


def _figure(browser_page, name: str) -> int:
    return int(browser_page.locator(f'[data-figure="{name}"]').inner_text().replace(",", ""))


@pytest.mark.django_db(transaction=True)
def test_dashboard_numbers_equal_the_messages_table(
    live_server,
    superuser,
    make_account,
    enqueued,
    page,
    settings,
    tmp_path,
):
    account = _simulator_account(make_account)
    campaign = _run_on_simulator(account, recipients=30, user=superuser)
    messages = Message.objects.filter(campaign=campaign)
    expected = {
        "today-sent": messages.filter(sent_at__isnull=False).count(),
        "today-delivered": messages.filter(status=S.DELIVERED).count(),
        "today-failed": messages.filter(
            status__in=[S.UNDELIVERED, S.EXPIRED, S.REJECTED, S.FAILED]
        ).count(),
    }
    assert expected["today-sent"] == 30 and expected["today-failed"] > 0

    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "pw-root")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")

    for name, value in expected.items():
        assert _figure(page, name) == value, name
    assert _figure(page, "month-sent") == 30
    credits = page.locator('[data-figure="today-credits"]').inner_text()
    assert Decimal(credits.replace(",", "")) > 0
    assert page.locator(".dash-chart svg rect").count() > 0
    page.screenshot(path=str(tmp_path / "dashboard-desktop.png"), full_page=True)

    # The panel refreshes itself: a second campaign shows up without a reload.
    settings.DASHBOARD_REFRESH_SECONDS = 1
    page.reload()
    second = _run_on_simulator(account, recipients=5, user=superuser)
    assert second.sent_count + second.delivered_count + second.failed_count == 5, second.status
    expect(page.locator('[data-figure="today-sent"]')).to_have_text("35", timeout=15_000)

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the phone view scrolls sideways ({width}px wide)"
    page.screenshot(path=str(tmp_path / "dashboard-phone.png"), full_page=True)
