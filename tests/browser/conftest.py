"""Fixtures shared by the browser tests (Playwright + Debian Chromium).

Use ``browser`` for several pages (see ``support.login``), or ``page`` for
one page that records Content-Security-Policy violations. Request
``superuser`` (and any other database fixture) before ``browser``/``page``:
database work done while Playwright's loop runs would open a connection in
another context, left open at teardown.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest

from tests.browser.support import CHROMIUM, CHROMIUM_ARGS
from tests.campaigns.engine_helpers import enqueue_calls, enqueued  # noqa: F401 (fixtures)


@pytest.fixture
def browser_settings(settings, monkeypatch):
    # Playwright's sync API runs an event loop in this thread; Django's ORM
    # refuses that unless told it is fine (the live server has its own thread,
    # and some tests drive the engine from this one).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    # The live server speaks plain HTTP: secure-only cookies would never be sent.
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    return settings


@pytest.fixture
def browser(browser_settings):
    """A headless Chromium, closed after the test."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    """One page (default viewport) whose ``csp_violations`` lists the CSP errors it logged."""
    new_page = browser.new_page()
    new_page.csp_violations = []
    new_page.on(
        "console",
        lambda msg: (
            "Content Security Policy" in msg.text and new_page.csp_violations.append(msg.text)
        ),
    )
    return new_page


@pytest.fixture
def shots(tmp_path) -> Path:
    """Where screenshots go: ``$SCREENSHOT_DIR``, else the test's tmp dir."""
    where = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    where.mkdir(parents=True, exist_ok=True)
    return where


@pytest.fixture
def account(make_account):
    """A simulator account with credits: receipts at once, 80 % delivered, batches of 10."""
    return make_account(
        balance=Decimal("1000"),
        credentials={"seed": 3, "delivery_delay": 0, "mix": {"delivered": 0.8, "expired": 0.2}},
        requests_per_second=0,
        messages_per_second=10,  # batches of 10
    )
