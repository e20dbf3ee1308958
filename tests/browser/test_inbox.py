"""The inbox thread in a real browser (Playwright + Debian Chromium), on the
simulator: a reply typed in the thread is counted and priced, sent, and its
status moves in the thread without a reload; a STOP arriving while the
thread is open says so and disables the reply box (keeping the typed text);
opting back in with a reason works from the thread. Screenshots at desktop
and phone width go to ``$SCREENSHOT_DIR`` (default: the pytest tmp dir)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.support import CHROMIUM, DESKTOP, NO_CHROMIUM, PHONE, login, no_horizontal_scroll
from tests.browser.test_campaign_page import _receipts

NUMBER = "+61412300100"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def fast_refresh(browser_settings):
    browser_settings.INBOX_REFRESH_SECONDS = 2  # as the campaign page polls
    return browser_settings


@pytest.fixture
def account(make_account):
    return make_account(
        balance=Decimal("10"),
        credentials={"seed": 3, "delivery_delay": 0, "mix": {"delivered": 1.0}},
        requests_per_second=0,
    )


def _inbound(account, body: str, ref: str):
    from campaigns.models import Conversation
    from campaigns.reports import inbound_apply
    from providers.backends.base import InboundSms

    inbound_apply(
        account=account,
        messages=[
            InboundSms(
                from_number=NUMBER,
                body=body,
                received_at=timezone.now() - timedelta(seconds=1),
                provider_ref=ref,
            )
        ],
    )
    return Conversation.objects.get(account=account, phone=NUMBER)


def _open(browser, live_server, conversation, *, viewport=DESKTOP):
    page = login(browser, live_server, viewport=viewport)
    # The site's CSP forbids inline scripts and eval: any violation is a defect.
    page.csp_violations = []
    page.on(
        "console",
        lambda msg: "Content Security Policy" in msg.text and page.csp_violations.append(msg.text),
    )
    page.goto(f"{live_server.url}/admin/campaigns/conversation/{conversation.pk}/change/")
    return page


def test_answer_a_reply_in_the_thread_and_see_it_sent_and_delivered(
    live_server, superuser, account, fast_refresh, browser, shots
):
    from campaigns.dispatch import campaign_dispatch
    from campaigns.models import Campaign

    conversation = _inbound(account, "Are you open on Sunday?", "r1")
    page = _open(browser, live_server, conversation)
    expect(page.locator(".thread-in .thread-body")).to_have_text("Are you open on Sunday?")
    page.fill("#id_body", "Yes, from 10 to 4. See you!")
    expect(page.locator(".sms-counter-summary")).to_contain_text("1 SMS")
    expect(page.locator(".sms-counter-cost")).to_contain_text(
        "Costs 1.00 credit on " + account.name + " · available 10.00 credits, 9.00 credits after"
    )
    page.click("button.thread-send")
    page.wait_for_url(f"**/conversation/{conversation.pk}/change/")
    expect(page.locator(".messagelist")).to_contain_text("Reply to +61412300100 sent")
    expect(page.locator(".thread-pending")).to_contain_text("Waiting to be sent")
    page.evaluate("window.__notReloaded = true")

    campaign = Campaign.objects.get(kind=Campaign.Kind.REPLY)
    campaign_dispatch(campaign_id=campaign.pk)
    out = page.locator(".thread-out").last
    expect(out.locator(".thread-status")).to_have_text("Sent, awaiting the delivery receipt")
    expect(page.locator(".thread-pending")).to_have_count(0)
    assert _receipts(account) == 1
    expect(out.locator(".thread-status")).to_have_text("Delivered")
    expect(out).to_contain_text("Reply from the inbox by root")
    link = out.locator("a").first
    assert link.get_attribute("href") == f"/admin/campaigns/campaign/{campaign.pk}/change/"
    assert page.evaluate("window.__notReloaded === true")
    assert page.csp_violations == []
    page.screenshot(path=shots / "inbox-thread-desktop.png", full_page=True)

    phone = _open(browser, live_server, conversation, viewport=PHONE)
    expect(phone.locator(".thread-out .thread-status")).to_have_text("Delivered")
    phone.screenshot(path=shots / "inbox-thread-phone.png", full_page=True)
    assert no_horizontal_scroll(phone)


def test_a_stop_while_the_thread_is_open_opts_out_and_disables_the_reply_box(
    live_server, superuser, account, fast_refresh, browser, shots
):
    conversation = _inbound(account, "How much is it?", "r1")
    page = _open(browser, live_server, conversation)
    page.fill("#id_body", "It is $20")
    expect(page.locator("#thread-optout-state")).to_have_text(
        "Not opted out: messages can be sent."
    )

    _inbound(account, "STOP", "r2")
    expect(page.locator(".thread-keyword")).to_have_text("STOP — opted out")
    expect(page.locator("#thread-optout-state")).to_contain_text("Opted out since")
    expect(page.locator("#id_body")).to_be_disabled()
    expect(page.locator("button.thread-send")).to_be_disabled()
    expect(page.locator(".thread-reply-refusal")).to_contain_text("has opted out")
    expect(page.locator("#id_body")).to_have_value("It is $20")  # what was typed stays
    expect(page.locator(".thread-optin-form")).to_be_visible()
    expect(page.locator(".thread-optout-form")).to_be_hidden()
    page.screenshot(path=shots / "inbox-stop-desktop.png", full_page=True)
    assert page.csp_violations == []

    phone = _open(browser, live_server, conversation, viewport=PHONE)
    expect(phone.locator("#id_body")).to_be_disabled()
    phone.screenshot(path=shots / "inbox-stop-phone.png", full_page=True)
    assert no_horizontal_scroll(phone)

    # The inbox list says it too, in words.
    for view, size in ((page, "desktop"), (phone, "phone")):
        view.goto(f"{live_server.url}/admin/campaigns/conversation/")
        row = view.locator("#result_list tbody tr").first
        expect(row.locator(".field-keyword")).to_have_text("STOP — asked to opt out")
        expect(row.locator(".field-optout")).to_have_text("Opted out")
        view.screenshot(path=shots / f"inbox-list-{size}.png", full_page=True)


def test_opt_back_in_with_a_reason_from_the_thread(
    live_server, superuser, account, fast_refresh, browser, shots
):
    from contacts.models import OptOut, OptOutEvent

    conversation = _inbound(account, "STOP", "r1")
    page = _open(browser, live_server, conversation)
    expect(page.locator("#id_body")).to_be_disabled()
    page.click("button.thread-opt-in")  # no reason: refused in words
    expect(page.locator(".thread-optout-error")).to_contain_text("type a reason")
    assert OptOut.objects.filter(phone=NUMBER).exists()

    page.fill("#id_in-reason", "Called us to get offers again")
    page.click("button.thread-opt-in")
    expect(page.locator(".messagelist")).to_contain_text("is opted back in")
    expect(page.locator("#thread-optout-state")).to_have_text(
        "Not opted out: messages can be sent."
    )
    expect(page.locator("#id_body")).to_be_enabled()
    expect(page.locator(".thread-event").last).to_contain_text(
        "Opt-out removed by staff: Opt-out lifted"
    )
    expect(page.locator(".thread-event").last).to_contain_text("Called us to get offers again")
    assert not OptOut.objects.filter(phone=NUMBER).exists()
    assert OptOutEvent.objects.filter(action="removed", created_by=superuser).count() == 1
    page.screenshot(path=shots / "inbox-optin-desktop.png", full_page=True)
    page.set_viewport_size(PHONE)
    page.reload()
    page.screenshot(path=shots / "inbox-optin-phone.png", full_page=True)
    assert no_horizontal_scroll(page)
