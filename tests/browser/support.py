"""Plain helpers of the browser tests (the fixtures are in conftest.py):
where Chromium is, the two viewports, logging in, sideways scroll."""

from __future__ import annotations

import os
import shutil

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None
)
NO_CHROMIUM = "Chromium is not installed (apt-get install chromium): cannot drive a browser."

# Flags that keep a headless Chromium quiet and quick on a CI machine.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def login(browser, live_server, *, viewport=DESKTOP):
    """A new page of ``browser``, logged in as the ``superuser`` fixture, on the admin index."""
    page = browser.new_page(viewport=viewport)
    page.set_default_timeout(20_000)
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "pw-root")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
    return page


def no_horizontal_scroll(page) -> bool:
    return page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth + 1"
    )
