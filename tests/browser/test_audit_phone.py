"""The audit page fits a phone: at 375 px nothing sticks out sideways."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.browser.support import CHROMIUM, NO_CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM),
]

PHONE = {"width": 375, "height": 740}


@pytest.fixture
def phone_page(browser):
    return browser.new_page(viewport=PHONE)


@pytest.mark.django_db(transaction=True)
def test_the_audit_page_has_no_sideways_scroll_on_a_phone(
    live_server, superuser, make_account, phone_page
):
    from providers.services import credits_top_up

    account = make_account(name="An account with a rather long name for a narrow screen")
    credits_top_up(
        account=account,
        amount=Decimal(5),
        user=superuser,
        note="A long note " * 20 + "withaverylongwordthatwouldnotwrapanywhereatallunlessforced",
    )
    page = phone_page
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/smsoffice/auditlog/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "pw-root")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/smsoffice/auditlog/")
    page.locator(".audit-table td").first.wait_for()
    right_edges = [
        box["x"] + box["width"]
        for locator in page.locator(".audit-table td, .audit-filters label, #content").all()
        if (box := locator.bounding_box())
    ]
    assert right_edges and max(right_edges) <= PHONE["width"] + 1, max(right_edges)
