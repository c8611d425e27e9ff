"""A person in front of the admin: Debian's headless Chromium driven by Playwright.

Tests click what is on screen (links, buttons, action menus), never type URLs past the
first page. Every HTML page the browser receives is kept as the server sent it, so a test
can end with `tour.assert_pages_sound()`: no form inside a form, no duplicate id, a CSRF
token in every POST form (tests/support/html_checks.py), naming the page and the element.

On failure the test's fixture saves a screenshot and the page's HTML under
`test-artifacts/browser/` (git-ignored). `SCREENSHOTS_DIR` set (`make screenshots`) keeps
the screenshots a person would want, named by `tour.screenshot(name)`.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.html_checks import html_problems
from workers.devstack import BASE_DIR

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# The machine has no network beyond loopback: Chromium must not try to phone home.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("BROWSER_ARTIFACTS", BASE_DIR / "test-artifacts" / "browser"))
PASSWORD = "pw-tour-123456"  # a test account in the test database


@dataclass(frozen=True)
class Document:
    """An HTML page as the server sent it."""

    method: str
    url: str
    status: int
    html: str


class Tour:
    """A logged-in admin user's browser tab."""

    def __init__(self, page: Any, base_url: str) -> None:
        self.page = page
        self.base_url = base_url.rstrip("/")
        self.documents: list[Document] = []
        page.on("response", self._keep_document)

    def _keep_document(self, response: Any) -> None:
        request = response.request
        if request.resource_type != "document" or request.frame != self.page.main_frame:
            return
        if "text/html" not in (response.headers.get("content-type") or ""):
            return
        html = response.text() if response.status < 300 else ""
        self.documents.append(Document(request.method, request.url, response.status, html))

    def log_in(self, username: str, password: str = PASSWORD) -> None:
        """Open the admin like a newcomer: its address, then the login form."""
        self.page.goto(f"{self.base_url}/admin/")
        self.page.fill("#id_username", username)
        self.page.fill("#id_password", password)
        with self.submitted(302):
            self.page.click("input[type=submit]")

    @contextmanager
    def submitted(self, status: int = 302, url: str | None = None) -> Iterator[Any]:
        """Wrap the click that submits a form: the POST must answer `status` (302: it
        worked and redirected; 200: the form came back, e.g. with errors)."""
        with self.page.expect_response(
            lambda r: (
                r.request.method == "POST"
                and r.request.resource_type == "document"
                and (url is None or url in r.url)
            )
        ) as info:
            yield info
        response = info.value
        assert response.status == status, (
            f"POST {response.url} answered {response.status}, expected {status}"
        )
        self.page.wait_for_load_state()

    def job_settled(self, timeout: float = 90.0) -> None:
        """Wait until the page's live job panel has ended and nothing more will change: the
        job is over, its log read, and the page reloaded if it reloads at the end. Before
        clicking away from such a page, or its reload may win over the click."""
        from playwright.sync_api import expect

        expect(self.page.locator("#job-live")).to_have_attribute(
            "data-settled", "1", timeout=timeout * 1000
        )

    def click_in_message(self, link_text: str) -> None:
        """Follow a link inside the admin's messages (what was just queued)."""
        self.page.locator("ul.messagelist").get_by_role("link", name=link_text).first.click()

    def assert_pages_sound(self) -> None:
        """Every page the tour received: no nested form, no duplicate id, CSRF everywhere."""
        problems = [
            f"{doc.method} {doc.url}: {problem}"
            for doc in self.documents
            for problem in html_problems(doc.html)
        ]
        assert not problems, "HTML problems:\n" + "\n".join(problems)
        assert self.documents, "the tour received no page"

    def screenshot(self, name: str) -> None:
        """A picture for people (make screenshots); nothing unless SCREENSHOTS_DIR is set."""
        directory = os.environ.get("SCREENSHOTS_DIR")
        if directory:
            Path(directory).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(directory) / f"{name}.png"), full_page=True)

    def save_artifacts(self, test_name: str) -> Path:
        """The page as it was when the test failed: a screenshot and its HTML."""
        target = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)
        target.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(target / "page.png"), full_page=True)
        (target / "page.html").write_text(self.page.content())
        if self.documents:
            (target / "last-response.html").write_text(self.documents[-1].html)
        return target


def wait_for(predicate: Callable[[], object], page: Any, *, timeout: float = 60.0) -> None:
    """Poll a database condition while keeping the browser's event loop turning."""
    waited = 0.0
    while not predicate():
        assert waited < timeout, f"timed out after {timeout:g}s"
        page.wait_for_timeout(200)
        waited += 0.2
