"""The contact page on a phone: its history tables scroll inside their box,
the page itself never scrolls sideways."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from campaigns.models import Campaign, Message
from contacts.models import Contact
from tests.browser.support import CHROMIUM, NO_CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM),
]


@pytest.mark.django_db(transaction=True)
def test_contact_page_with_history_fits_a_phone(
    live_server, superuser, make_account, page, tmp_path
):
    account = make_account(balance=Decimal("10"))
    contact = Contact.objects.create(phone="+61412300100", first_name="Ann")
    campaign = Campaign.objects.create(name="Spring sale", account=account, body="Hi")
    Message.objects.create(
        campaign=campaign,
        phone=contact.phone,
        body="Hi Ann, our spring sale is on now with a long text " * 3,
        status=Message.Status.DELIVERED,
        sent_at=timezone.now(),
    )
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/contacts/contact/{contact.pk}/change/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "pw-root")
    page.click("input[type=submit]")
    page.wait_for_url(f"**/admin/contacts/contact/{contact.pk}/change/")

    assert "Spring sale" in page.locator(".contact-history").inner_text()
    page.screenshot(path=str(tmp_path / "contact-desktop.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    width = page.evaluate("document.documentElement.scrollWidth")
    page.screenshot(path=str(tmp_path / "contact-phone.png"), full_page=True)
    assert width <= 390, f"the phone view scrolls sideways ({width}px wide)"
