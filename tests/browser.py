"""A real headless browser for page tests: Debian's chromium (installed by `make browser`)
driven by Playwright. Requests that would leave the machine are refused and recorded, so a
page that needs a CDN shows it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As the machine's own probe starts it: no background networking, no first-run work.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            raise RuntimeError("chromium is missing: run `make browser`")
        pytest.skip("chromium is not installed (make browser)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@dataclass
class OfflinePage:
    page: Page
    # Every request for anything but the loopback server, refused.
    outside: list[str] = field(default_factory=list)
    # Everything the pages' Content-Security-Policy blocked (directive and what was blocked).
    csp_violations: list[str] = field(default_factory=list)


@pytest.fixture
def offline_page(browser: Browser) -> Iterator[OfflinePage]:
    context = browser.new_context()
    page = context.new_page()
    result = OfflinePage(page)

    def only_loopback(route: Route, request: Any) -> None:
        host = urlsplit(request.url).hostname or ""
        if host in ("127.0.0.1", "localhost") or request.url.startswith("data:"):
            route.continue_()
        else:
            result.outside.append(request.url)
            route.abort()

    page.route("**/*", only_loopback)
    # Playwright's own scripts run outside the page's policy, so they can report on it.
    context.expose_binding(
        "reportCspViolation", lambda _source, text: result.csp_violations.append(text)
    )
    context.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => "
        "window.reportCspViolation(e.violatedDirective + ' ' + (e.blockedURI || 'inline')));"
    )
    yield result
    context.close()
