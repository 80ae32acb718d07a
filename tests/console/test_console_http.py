"""The console over plain HTTP on both databases: every page answers for the owner, every form
refuses a request without the session's CSRF token (and changes nothing), and what a
department administrator or a custom role may open. The browser tests (SQLite) walk the pages;
these make sure the same pages work on PostgreSQL, and cover every route the console has, so a
new one is checked without touching this file."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from learndir.api.console import router as console_router
from learndir.core import console_sessions
from learndir.core.audit import audit_query, read_audit
from learndir.db.engine import Database
from tests.support import Server, World, account_snapshot, acme_spec, make_world


def _walk(routes: list[Any], prefix: str) -> Iterator[tuple[str, str]]:
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _walk(included.routes, prefix + route.include_context.prefix)
        elif isinstance(route, Route):
            for method in route.methods or ():
                if method != "HEAD":
                    yield method, prefix + route.path


CONSOLE_ROUTES = sorted(set(_walk(list(console_router.routes), "")))


@pytest.fixture(scope="module")
def acme(db: Database) -> World:
    return make_world(db, acme_spec(seatLimit=None))


def signed_in(server: Server, world: World, login: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        answer = client.post(
            "/console/sign-in",
            data={"account": world.account_url, "login": login, "password": world.passwords[login]},
        )
        assert answer.status_code == 303, answer.text
        yield client


@pytest.fixture(scope="module")
def owner(server: Server, acme: World) -> Iterator[httpx.Client]:
    yield from signed_in(server, acme, "owner")


def _filled(path: str, world: World) -> str | None:
    """The route's path with real ids of the account, or None when it needs one we lack."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if "user" in name or "person" in name:
            return world.users["jane.doe"]
        if "department" in name:
            return world.departments["sales"]
        if "group" in name:
            return world.groups["Newcomers"]
        raise LookupError(name)

    try:
        return re.sub(r"\{([^}:]+)[^}]*\}", value, path)
    except LookupError:
        return None


def _csrf(page: str) -> str:
    found = re.search(r'data-csrf="([0-9a-f]+)"', page)
    assert found, "no CSRF token on the page"
    return found.group(1)


def test_every_page_answers_for_the_owner(owner: httpx.Client, acme: World) -> None:
    opened = 0
    for method, path in CONSOLE_ROUTES:
        if method != "GET" or path in ("/console/sign-in",):
            continue
        url = _filled(path, acme)
        if url is None:
            continue
        answer = owner.get(url)
        assert answer.status_code in (200, 303), f"{url}: {answer.status_code} {answer.text[:300]}"
        if answer.headers["content-type"].startswith("text/html"):
            policy = answer.headers["content-security-policy"]
            assert "script-src 'self'" in policy and "unsafe-inline" not in policy
            assert answer.headers["cache-control"] == "no-store"
        opened += 1
    assert opened >= 3


def test_no_form_is_accepted_without_the_csrf_token(
    owner: httpx.Client, acme: World, db: Database
) -> None:
    before = account_snapshot(db, acme.account_id)
    checked = 0
    for method, path in CONSOLE_ROUTES:
        if method != "POST" or path == "/console/sign-in":
            continue
        url = _filled(path, acme)
        if url is None:
            continue
        for data in ({}, {"csrf": "f" * 64}):
            answer = owner.post(url, data={**data, "name": "x", "login": "csrf.victim"})
            assert answer.status_code == 403, f"POST {url}: {answer.status_code}"
        checked += 1
    assert checked >= 2
    assert account_snapshot(db, acme.account_id) == before
    # Still signed in: the refused sign-out did not sign out.
    assert owner.get("/console/").status_code == 200


def test_what_a_department_administrator_may_open(server: Server, acme: World) -> None:
    for client in signed_in(server, acme, "sales.admin"):
        assert client.get("/console/").status_code == 200
        page = client.get("/console/people")
        assert page.status_code == 200
        assert "jane.doe" in page.text
        assert "hr.partner" not in page.text  # Engineering is not theirs
        assert client.get("/console/settings").status_code == 403
        assert client.get(f"/console/people/{acme.users['hr.partner']}").status_code == 403
        assert client.get(f"/console/departments/{acme.departments['eng']}").status_code == 403
        csrf = _csrf(client.get("/console/").text)
        assert client.post("/console/sign-out", data={"csrf": csrf}).status_code == 303


def test_a_custom_role_gets_the_console_and_clear_refusals(server: Server, acme: World) -> None:
    """HR Partner may add users in Engineering but not view them: the pages say so, never 500."""
    for client in signed_in(server, acme, "hr.partner"):
        assert client.get("/console/").status_code == 200
        for path in ("/console/people", "/console/departments", "/console/groups"):
            assert client.get(path).status_code in (200, 403), path
        assert client.get("/console/settings").status_code == 403


def test_a_change_made_in_the_console_is_audited_as_the_console(
    owner: httpx.Client, acme: World, db: Database
) -> None:
    csrf = _csrf(owner.get("/console/me").text)
    password = acme.passwords["owner"]
    answer = owner.post(
        "/console/me/password",
        data={"csrf": csrf, "current": password, "password": password, "repeat": password},
    )
    assert answer.status_code == 303, answer.text
    actor = console_sessions.sign_in(db, acme.account_url, "owner", password)[1].actor
    records, _ = read_audit(db, actor, audit_query(target_id=acme.users["owner"], page_size=1))
    assert records[0].operation == "USER_PASSWORD_CHANGED"
    assert records[0].interface == "console"
    assert (records[0].credential or "").startswith("console:")
    assert records[0].actor_login == "owner"
