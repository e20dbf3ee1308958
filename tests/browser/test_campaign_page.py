"""The campaign page in a real browser (Playwright + Debian Chromium), on
the simulator: the bar reaches 100 % and receipts arrive without a reload;
pause freezes the counts; cancel asks first; a schedule set in Sydney time
starts at that time. Screenshots at desktop and phone width go to
``$SCREENSHOT_DIR`` (default: the pytest tmp dir)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.support import (
    CHROMIUM,
    DESKTOP,
    NO_CHROMIUM,
    PHONE,
    login,
    no_horizontal_scroll,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM),
    pytest.mark.django_db(transaction=True),
]


def _campaign(account, n: int):
    from tests.campaigns.engine_helpers import make_campaign, new_phones

    return make_campaign(account=account, phones=new_phones(n), body="Hi {{ first_name }}, 20% off")


def _count(page, name: str) -> int:
    return int(page.locator(f'#campaign-live [data-count="{name}"]').inner_text().replace(",", ""))


def _wait_count(page, name: str, value: int) -> None:
    # Locator assertions poll from Python: the page's CSP forbids the eval
    # that wait_for_function needs.
    expect(page.locator(f'#campaign-live [data-count="{name}"]')).to_have_text(f"{value:,}")


def _wait_label(page, text: str, *, exact: bool = True, absent: bool = False) -> None:
    """Wait until the status badge reads ``text`` (or contains it, or no longer does)."""
    badge = expect(page.locator("[data-status-label]"))
    if absent:
        (badge.not_to_have_text if exact else badge.not_to_contain_text)(text)
    else:
        (badge.to_have_text if exact else badge.to_contain_text)(text)


def _receipts(account) -> int:
    from campaigns import tasks
    from providers.backends.simulator import SimulatorBackend

    later = SimulatorBackend(
        credentials=account.credentials,
        account_key=str(account.pk),
        clock=lambda: timezone.now().timestamp() + 3600,
    )
    return tasks.poll_statuses(backend=later)


def test_send_watch_the_bar_reach_100_and_receipts_arrive_without_reload(
    live_server, superuser, account, browser, shots
):
    from campaigns.dispatch import campaign_dispatch
    from campaigns.models import Campaign

    campaign = _campaign(account, 30)
    page = login(browser, live_server)
    change = f"{live_server.url}/admin/campaigns/campaign/{campaign.pk}/change/"
    page.goto(change)
    page.screenshot(path=shots / "campaign-draft-desktop.png", full_page=True)
    page.click("#campaign-live a.campaign-send_now")
    assert "30" in page.locator(".confirm-recipients").inner_text()
    page.click("input[type=submit][value='Yes, send now']")
    page.wait_for_url(f"**/campaign/{campaign.pk}/change/")
    assert page.locator("[data-status-label]").inner_text() == "Starting"
    assert page.locator("#campaign-live a.campaign-send_now").count() == 0

    # A marker that a reload would wipe: everything below must arrive by htmx.
    page.evaluate("window.__notReloaded = true")
    for batch in range(1, 4):
        campaign_dispatch(campaign_id=campaign.pk, max_batches=1)
        _wait_count(page, "awaiting", 10 * batch)
    expect(page.locator("[data-percent]")).to_have_text("100 %")
    campaign_dispatch(campaign_id=campaign.pk)  # nothing left: completes
    _wait_label(page, "awaiting 30 receipts", exact=False)
    page.screenshot(path=shots / "campaign-awaiting-desktop.png", full_page=True)

    assert _receipts(account) == 30
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    _wait_count(page, "delivered", campaign.delivered_count)
    _wait_count(page, "awaiting", 0)
    assert _count(page, "failed") == campaign.failed_count
    _wait_label(page, "Completed")
    # The report refreshes too, without a reload.
    expect(page.locator('#campaign-report [data-credits="refunded"]')).to_have_text(
        f"{campaign.failed_count}.00", timeout=30_000
    )
    assert page.evaluate("window.__notReloaded === true")
    # Final: polling stops (the live part comes back without hx-trigger).
    assert page.locator("#campaign-live[hx-trigger]").count() == 0
    page.screenshot(path=shots / "campaign-done-desktop.png", full_page=True)
    assert no_horizontal_scroll(page)

    phone = login(browser, live_server, viewport=PHONE)
    phone.goto(change)
    phone.locator("#campaign-report polyline").first.wait_for()
    phone.screenshot(path=shots / "campaign-done-phone.png", full_page=True)
    assert no_horizontal_scroll(phone)
    # Top first: the state and the bar are on the first screen of a phone.
    assert phone.locator(".campaign-bar").bounding_box()["y"] < PHONE["height"]


def test_pause_freezes_the_counts(live_server, superuser, account, browser, shots):
    from campaigns.dispatch import campaign_dispatch
    from campaigns.models import Campaign
    from campaigns.services import campaign_send_now

    campaign = _campaign(account, 40)
    campaign_send_now(campaign=campaign, user=superuser)
    campaign_dispatch(campaign_id=campaign.pk, max_batches=1)
    page = login(browser, live_server)
    page.goto(f"{live_server.url}/admin/campaigns/campaign/{campaign.pk}/change/")
    _wait_count(page, "awaiting", 10)

    page.click("#campaign-live button.campaign-pause")
    _wait_label(page, "Paused")
    assert page.locator("#campaign-live button.campaign-resume").count() == 1
    before = {n: _count(page, n) for n in ("awaiting", "waiting", "delivered")}
    # The worker runs again: a paused campaign sends nothing.
    assert campaign_dispatch(campaign_id=campaign.pk).state == Campaign.Status.PAUSED
    page.wait_for_timeout(4_500)  # two polls
    assert (
        {n: _count(page, n) for n in before}
        == before
        == {
            "awaiting": 10,
            "waiting": 30,
            "delivered": 0,
        }
    )
    page.screenshot(path=shots / "campaign-paused-desktop.png", full_page=True)
    phone = login(browser, live_server, viewport=PHONE)
    phone.goto(f"{live_server.url}/admin/campaigns/campaign/{campaign.pk}/change/")
    phone.screenshot(path=shots / "campaign-paused-phone.png", full_page=True)
    assert no_horizontal_scroll(phone)


def test_cancel_asks_first(live_server, superuser, account, browser, shots):
    from campaigns.dispatch import campaign_dispatch
    from campaigns.models import Campaign
    from campaigns.services import campaign_send_now

    campaign = _campaign(account, 25)
    campaign_send_now(campaign=campaign, user=superuser)
    campaign_dispatch(campaign_id=campaign.pk, max_batches=1)
    page = login(browser, live_server)
    page.goto(f"{live_server.url}/admin/campaigns/campaign/{campaign.pk}/change/")

    page.click("#campaign-live a.campaign-cancel")
    page.wait_for_url(f"**/campaign/{campaign.pk}/cancel/")
    text = page.locator("#content-main").inner_text()
    assert "15 messages not yet sent will be cancelled" in text
    assert "15.00 reserved credits go back" in text
    assert "cannot be undone" in text
    page.screenshot(path=shots / "campaign-cancel-confirm-desktop.png", full_page=True)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENDING  # asking changed nothing

    page.click("text=No, keep it")
    page.wait_for_url(f"**/campaign/{campaign.pk}/change/")
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENDING

    page.click("#campaign-live a.campaign-cancel")
    page.click("input[type=submit][value='Yes, cancel it']")
    page.wait_for_url(f"**/campaign/{campaign.pk}/change/")
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.CANCELLED and campaign.cancelled_count == 15
    assert "Cancelled" in page.locator("[data-status-label]").inner_text()


def test_a_schedule_set_in_sydney_time_starts_at_that_time(
    live_server, superuser, account, browser, shots, monkeypatch
):
    from campaigns import dispatch
    from campaigns.engine import clock as engine_clock
    from campaigns.models import Campaign

    campaign = _campaign(account, 5)
    sydney = ZoneInfo("Australia/Sydney")
    local = (datetime.now(sydney) + timedelta(days=1)).replace(
        hour=9, minute=30, second=0, microsecond=0
    )
    page = login(browser, live_server)
    page.goto(f"{live_server.url}/admin/campaigns/campaign/{campaign.pk}/change/")
    page.click("#campaign-live a.campaign-schedule")
    assert page.locator("select[name=time_zone]").input_value() == "UTC"  # the account's zone
    page.fill("input[name=when]", local.strftime("%Y-%m-%dT%H:%M"))
    page.select_option("select[name=time_zone]", "Australia/Sydney")
    page.screenshot(path=shots / "campaign-schedule-desktop.png", full_page=True)
    page.click("input[type=submit][value='Yes, schedule']")
    page.wait_for_url(f"**/campaign/{campaign.pk}/change/")

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SCHEDULED
    assert campaign.scheduled_at == local.astimezone(UTC)
    shown = page.locator(".campaign-when").inner_text()
    assert f"{local.day} {local:%b %Y}, 09:30" in shown and "(Australia/Sydney)" in shown

    # The engine: a minute early it waits; at the time it starts.
    monkeypatch.setattr(engine_clock, "now", lambda: local.astimezone(UTC) - timedelta(minutes=1))
    assert dispatch.campaign_dispatch(campaign_id=campaign.pk).state == "scheduled"
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SCHEDULED
    monkeypatch.setattr(engine_clock, "now", lambda: local.astimezone(UTC))
    dispatch.campaign_dispatch(campaign_id=campaign.pk)
    campaign.refresh_from_db()
    assert campaign.status in (Campaign.Status.SENDING, Campaign.Status.COMPLETED)
    assert campaign.started_at == local.astimezone(UTC)
    _wait_label(page, "Scheduled", exact=False, absent=True)


@pytest.mark.parametrize(("viewport", "name"), [(DESKTOP, "desktop"), (PHONE, "phone")])
def test_a_campaign_through_fullsms_reads_sent_not_awaiting_receipts(
    live_server, superuser, account, browser, shots, viewport, name
):
    # FullSMS sends no delivery reports: the page must not wait for them.
    from campaigns.dispatch import campaign_dispatch
    from campaigns.services import campaign_send_now

    campaign = _campaign(account, 12)
    campaign_send_now(campaign=campaign, user=superuser)
    while campaign_dispatch(campaign_id=campaign.pk).state != "done":
        pass
    account.backend = "fullsms"
    account.save(update_fields=["backend"])
    page = login(browser, live_server, viewport=viewport)
    page.goto(f"{live_server.url}/admin/campaigns/campaign/{campaign.pk}/change/")
    badge = page.locator("#campaign-live [data-status-label]")
    expect(badge).to_have_text("Completed — 12 sent, no delivery reports from FullSMS")
    expect(page.locator("#campaign-live")).not_to_contain_text("Awaiting receipt")
    expect(page.locator(".campaign-no-delivery-reports")).to_be_visible()
    page.screenshot(path=shots / f"campaign-fullsms-{name}.png", full_page=True)
