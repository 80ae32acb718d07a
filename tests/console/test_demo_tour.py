"""What a new user does first: `make run` (learndir demo), then the console link it prints,
signed in with the credentials it prints, first as the owner, then as the Sales department's
administrator, through every section by the navigation."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser import OfflinePage
from tests.support import ROOT, free_port

SECTIONS = {
    "People": "People",
    "Departments": "Departments",
    "Groups": "Groups",
    "Import and export": "Import and export",
    "Settings": "Profile fields",
    "My profile": "My profile",
    "Overview": "Overview",
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """`learndir demo` as `make run` starts it (on a database of its own); what it printed."""
    directory = tmp_path_factory.mktemp("demo")
    port = free_port()
    log = directory / "demo.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "learndir",
            "demo",
            "--database-url",
            f"sqlite:///{directory / 'demo.db'}",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "LEARNDIR_WORKER_ENABLED": "false"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError(Path(log).read_text()[-2000:])
        yield base, log.read_text()
    finally:
        process.terminate()
        process.wait(timeout=10)


def _printed(text: str, pattern: str) -> re.Match[str]:
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in what the demo printed:\n{text[:1500]}"
    return found


def _sign_in(page: Page, link: str, login: str, password: str) -> None:
    page.goto(link)
    page.get_by_label("Login or e-mail").fill(login)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def test_the_printed_console_link_and_credentials_work_for_each_role(
    demo: tuple[str, str], offline_page: OfflinePage
) -> None:
    base, printed = demo
    link = _printed(printed, r"Open the console in a browser: (\S+)").group(1)
    assert link.startswith(f"{base}/console/sign-in?account=")
    owner = _printed(printed, r"login (owner), password (\S+)")
    page = offline_page.page
    _sign_in(page, link, owner.group(1), owner.group(2))
    nav = page.get_by_role("navigation", name="Console sections")
    for link_name, heading in SECTIONS.items():
        nav.get_by_role("link", name=link_name, exact=True).click()
        expect(page.get_by_role("heading", level=1)).to_have_text(heading)
    page.get_by_role("button", name="Sign out").click()

    admin = _printed(printed, r"login (sales\.admin), password (\S+) \(department administrator\)")
    _sign_in(page, link, admin.group(1), admin.group(2))
    expect(nav.get_by_role("link", name="Settings")).to_have_count(0)
    nav.get_by_role("link", name="Departments", exact=True).click()
    tree = page.get_by_role("main")
    expect(tree).to_contain_text("Sales EU")
    expect(tree).not_to_contain_text("Engineering")
    assert offline_page.outside == [] and offline_page.csp_violations == []
