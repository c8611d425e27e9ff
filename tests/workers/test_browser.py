"""In a real headless Chromium: a staff user triggers the diagnostic job and watches its log
grow on the job's page without reloading it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from django.db import connections

from tests.support.servers import WorkerProcess

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# The machine has no network beyond loopback: Chromium must not try to phone home.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def page() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    # Playwright runs an event loop in this thread; the ORM calls made by the test itself
    # happen before and after it, never concurrently.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                yield browser.new_page()
            finally:
                browser.close()
                # The test's ORM calls ran in Playwright's greenlet, which has connections of
                # its own; close them here or the test database cannot be dropped.
                connections.close_all()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def test_diagnostic_job_log_grows_live_in_the_admin_page(
    worker: WorkerProcess, live_server: object, page: object
) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    get_user_model().objects.create_superuser("ops", password="pw-ops-123456")
    base = str(live_server)

    page.goto(f"{base}/admin/login/?next=/admin/django_celery_results/taskresult/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", "pw-ops-123456")
    page.click("input[type=submit]")
    page.click("#run-diagnostic")

    # Landed on the job's own page, which now polls the log.
    expect(page.locator("#job-log-panel")).to_be_visible()
    log = page.locator("#job-log")
    expect(log).to_contain_text("diagnostic line 1/300", timeout=30_000)
    first_count = log.inner_text().count("\n")
    url_while_running = page.url
    expect(page.locator("#job-live-status")).to_contain_text("STARTED", timeout=10_000)

    # More lines arrive with no navigation.
    page.wait_for_function(
        "n => document.getElementById('job-log').innerText.split('\\n').length > n + 20",
        arg=first_count,
        timeout=20_000,
    )
    assert page.url == url_while_running

    expect(page.locator("#job-live-status")).to_contain_text("SUCCESS", timeout=30_000)
    expect(log).to_contain_text("diagnostic line 300/300")
    expect(page.locator("#job-outcome")).to_contain_text('"lines": 300')
    expect(page.locator("#job-progress-text")).to_have_text("300 / 300")
