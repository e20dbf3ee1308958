"""The live SMS counter in a real browser: typing a curly quote and an emoji
switches the counter to UCS-2, shows the segments and highlights them."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.support import CHROMIUM, NO_CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM),
]

CURLY = "\u2019"
EMOJI = "\U0001f600"


@pytest.mark.django_db(transaction=True)
def test_counter_shows_ucs2_segments_and_highlights_the_offending_characters(
    live_server, superuser, page
):
    # ``superuser`` before ``page``: database work done while Playwright's
    # loop runs would open a connection in another context, left open at teardown.
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/campaigns/messagetemplate/add/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "pw-root")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/campaigns/messagetemplate/add/")

    counter = page.locator(".sms-counter")
    # The empty field is counted once on load.
    counter.locator(".sms-counter-summary").wait_for()
    assert "0 characters" in counter.inner_text()

    page.fill("#id_body", "Hello there")
    # Locator assertions, not wait_for_function: the page's CSP forbids eval.
    expect(counter).to_contain_text("11 characters")
    assert counter.locator(".sms-counter-encoding").inner_text() == "GSM-7"

    # A curly apostrophe and an emoji: UCS-2; 70 units fit one SMS, so pad to two.
    text = f"We{CURLY}re open {EMOJI} " + "a" * 60
    page.fill("#id_body", text)
    expect(counter.locator(".sms-counter-encoding")).to_have_text("UCS-2")
    assert counter.locator(".sms-counter-segments").inner_text() == "2 SMS"
    assert f"{len(text)} characters" in counter.inner_text()
    marks = counter.locator("mark.sms-counter-bad")
    assert marks.all_inner_texts() == [CURLY, EMOJI]
    assert marks.first.get_attribute("title") == "U+2019 Right Single Quotation Mark"

    # The GSM proposal is explicit: nothing changes until the button is pressed.
    assert f"replace {CURLY} → ' " in counter.inner_text()
    assert page.input_value("#id_body") == text
    page.click(".sms-counter-apply")
    assert page.input_value("#id_body") == f"We're open {EMOJI} " + "a" * 60
    expect(counter.locator("mark.sms-counter-bad")).to_have_count(1)
    # The admin and the counter ran under the Content-Security-Policy untouched.
    assert not page.csp_violations, page.csp_violations
