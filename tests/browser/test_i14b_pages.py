"""Issue 14B pages in a real browser: the test send (contact picked by
autocomplete), the simulator's fields and the import preview, at desktop
and phone widths without sideways scroll (screenshots in SCREENSHOT_DIR)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.support import CHROMIUM, NO_CHROMIUM, PHONE, login, no_horizontal_scroll

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM),
    pytest.mark.django_db(transaction=True),
]


def test_send_a_test_from_a_draft(live_server, superuser, account, browser, shots):
    from campaigns.models import Campaign
    from tests.campaigns.engine_helpers import make_campaign, new_phones

    draft = make_campaign(account=account, phones=new_phones(3))
    page = login(browser, live_server)
    page.goto(f"{live_server.url}/admin/campaigns/campaign/{draft.pk}/change/")
    page.get_by_role("link", name="Send a test…").click()
    expect(page.locator("h1")).to_contain_text("Send a test message")
    page.screenshot(path=shots / "test-send-desktop.png", full_page=True)
    assert no_horizontal_scroll(page)
    page.locator(".select2-selection").click()
    page.locator(".select2-search__field").fill("N2")
    page.locator(".select2-results__option", has_text="N2").click()
    page.fill("#id_phone", "0400 999 999")
    page.get_by_role("button", name="Send the test message").click()
    expect(page.locator(".messagelist")).to_contain_text("Test message sent to +61400999999")
    test = Campaign.objects.get(kind=Campaign.Kind.TEST)
    assert test.body == "Hi N2, sale on now" and test.extra_numbers == "+61400999999"

    phone = login(browser, live_server, viewport=PHONE)
    phone.goto(f"{live_server.url}/admin/campaigns/campaign/{draft.pk}/test-send/")
    expect(phone.locator("#id_phone")).to_be_visible()
    phone.screenshot(path=shots / "test-send-phone.png", full_page=True)
    assert no_horizontal_scroll(phone)


def test_the_simulator_fields_page(live_server, superuser, account, browser, shots):
    url = f"{live_server.url}/admin/providers/provideraccount/{account.pk}/change/"
    for name, viewport in (("desktop", None), ("phone", PHONE)):
        page = login(browser, live_server, **({"viewport": viewport} if viewport else {}))
        page.goto(url)
        expect(page.locator("#id_sim__mix__delivered")).to_have_value("0.8")
        page.screenshot(path=shots / f"simulator-fields-{name}.png", full_page=True)
        assert no_horizontal_scroll(page)


def test_the_import_preview_page(live_server, superuser, browser, shots):
    from contacts.importing.models import ImportJob, ImportRow

    job = ImportJob.objects.create(
        file_name="c.csv",
        status=ImportJob.Status.READY,
        columns=["phone", "first_name", "custom_fields"],
        rows_total=1,
        rows_new=1,
    )
    custom = '{"membership": "gold", "city": "Perth", "note": "' + "long " * 30 + '"}'
    ImportRow.objects.create(
        job=job, line=2, phone="+61400123456", first_name="Ann", custom_fields=custom
    )
    url = f"{live_server.url}/admin/contacts/importjob/{job.pk}/change/"
    for name, viewport in (("desktop", None), ("phone", PHONE)):
        page = login(browser, live_server, **({"viewport": viewport} if viewport else {}))
        page.goto(url)
        expect(page.locator("table.import-preview")).to_contain_text("gold")
        page.screenshot(path=shots / f"import-preview-{name}.png", full_page=True)
        assert no_horizontal_scroll(page)
