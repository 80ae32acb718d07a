"""The console in a real headless browser (Debian's chromium through Playwright, axe-core
injected into each page), against a real `learndir serve` on SQLite.

- `console_site`: one server and database per test worker, shared by the console's modules.
- `demo_world`: the demo account (examples/demo.yaml) under a unique URL, one per module, so
  that what one module changes no other module sees.
- `console`: a fresh browser context (no cookies) that refuses any request off the machine and
  records Content-Security-Policy violations; `ConsolePage` signs in, checks a page with axe
  and, when LEARNDIR_SCREENSHOTS names a directory, saves screenshots for the README.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from learndir.core.actor import Actor
from learndir.core.console_sessions import sign_in
from learndir.core.users.commands import AddUser
from learndir.core.users.service import add_user
from learndir.db.engine import Database
from tests.browser import OfflinePage
from tests.conftest import migrated_database
from tests.support import ROOT, Server, World, make_world, start_server, stop_server

# What the issue asks of every page: no serious or critical accessibility violation.
BLOCKING = ("serious", "critical")
_axe = Axe()


@dataclass
class ConsoleSite:
    server: Server
    db: Database
    database_url: str

    @property
    def base_url(self) -> str:
        return self.server.base_url


def demo_spec(**overrides: Any) -> dict[str, Any]:
    """examples/demo.yaml under a unique URL."""
    data: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "demo.yaml").read_text())
    data["url"] = f"http://c-{uuid.uuid4().hex[:10]}.learn.test"
    data.update(overrides)
    return data


@pytest.fixture(scope="session")
def console_site(tmp_path_factory: pytest.TempPathFactory, _pg_ok: bool) -> Iterator[ConsoleSite]:
    for url in migrated_database("sqlite", tmp_path_factory, _pg_ok):
        server = start_server(url, Path(tmp_path_factory.mktemp("console-logs")))
        db = Database(url)
        try:
            yield ConsoleSite(server, db, url)
        finally:
            db.dispose()
            stop_server(server)


@pytest.fixture(scope="module")
def demo_world(console_site: ConsoleSite) -> World:
    world = make_world(console_site.db, demo_spec())
    world.passwords.setdefault("owner", "Demo-Owner-1")
    world.passwords.setdefault("sales.admin", "Sales-Pass-1")
    return world


class ConsolePage:
    def __init__(self, offline: OfflinePage, site: ConsoleSite) -> None:
        self.offline = offline
        self.page: Page = offline.page
        self.site = site

    def url(self, path: str) -> str:
        return f"{self.site.base_url}/console{path}"

    def goto(self, path: str) -> Page:
        self.page.goto(self.url(path))
        return self.page

    def sign_in(self, world: World, login: str, password: str | None = None) -> Page:
        page = self.page
        page.goto(self.url("/sign-in"))
        page.get_by_label("Account URL").fill(world.account_url)
        page.get_by_label("Login or e-mail").fill(login)
        page.get_by_label("Password").fill(password or world.passwords[login])
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        return page

    def csrf(self) -> str:
        return str(self.page.locator("body").get_attribute("data-csrf") or "")

    def cookies(self) -> dict[str, str]:
        return {c["name"]: c["value"] for c in self.page.context.cookies()}

    def check(self, shot: str | None = None) -> None:
        """axe-core on the page as it stands (no serious or critical violation), nothing loaded
        from off the machine, nothing blocked by the page's policy; then the screenshot."""
        results = _axe.run(self.page)
        blocking = [v for v in results.response["violations"] if v.get("impact") in BLOCKING]
        assert not blocking, results.generate_report()
        assert self.offline.outside == []
        assert self.offline.csp_violations == []
        if shot:
            self.screenshot(shot)

    def screenshot(self, name: str) -> None:
        target = os.environ.get("LEARNDIR_SCREENSHOTS")
        if target:
            Path(target).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(target) / f"{name}.png"), full_page=True)

    def client(self) -> httpx.Client:
        """An HTTP client holding this browser's cookies (for what a browser cannot forge)."""
        return httpx.Client(base_url=self.site.base_url, cookies=self.cookies())


@pytest.fixture
def console(offline_page: OfflinePage, console_site: ConsoleSite) -> ConsolePage:
    offline_page.page.set_default_timeout(10_000)
    return ConsolePage(offline_page, console_site)


def notice(page: Page) -> str:
    return page.locator(".notice").inner_text()


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def actor_of(site: ConsoleSite, world: World, login: str = "owner") -> Actor:
    """The user as the core sees them (for preparing data and reading results in tests)."""
    return sign_in(site.db, world.account_url, login, world.passwords[login])[1].actor


def add_people(
    site: ConsoleSite, world: World, people: Iterable[tuple[str, str, dict[str, str]]]
) -> World:
    """Adds (login, department code, profile fields) as the owner, e-mail login@demo.example.com;
    their ids join `world.users`."""
    owner = actor_of(site, world)
    for login, department, fields in people:
        world.users[login] = add_user(
            site.db,
            owner,
            AddUser(
                login=login,
                email=f"{login}@demo.example.com",
                departmentId=world.departments[department],
                fields=fields,
            ),
        )
    return world
