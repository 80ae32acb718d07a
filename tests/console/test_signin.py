"""Signing in and out of the console, the session cookie, CSRF, idle expiry, the overview, and
what a learner gets."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest
from playwright.sync_api import expect

from learndir.core import console_sessions
from learndir.core.console_sessions import SessionPolicy
from learndir.core.errors import DomainError
from learndir.core.users.commands import AddUser
from learndir.core.users.service import add_user
from tests.console.support import ConsolePage, ConsoleSite
from tests.support import World, account_snapshot


def test_home_leads_to_the_console_and_its_sign_in(console: ConsolePage) -> None:
    page = console.page
    page.goto(console.site.base_url + "/")
    expect(page).to_have_url(re.compile(r"/console/sign-in\?next="))
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    console.check("sign-in")


def test_wrong_password_then_right_one_and_the_overview(
    console: ConsolePage, demo_world: World
) -> None:
    page = console.page
    page.goto(console.url(f"/sign-in?account={demo_world.account_url}"))
    expect(page.get_by_label("Account URL")).to_have_value(demo_world.account_url)
    page.get_by_label("Login or e-mail").fill("owner")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Unauthorized")
    # What was typed stays; the password does not.
    expect(page.get_by_label("Login or e-mail")).to_have_value("owner")
    expect(page.get_by_label("Password")).to_have_value("")
    page.get_by_label("Password").fill(demo_world.passwords["owner"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    seats = page.locator("meter#seats")
    expect(seats).to_have_attribute("max", "1000")
    expect(page.get_by_text(re.compile(r"of 1,000 used"))).to_be_visible()
    expect(page.get_by_role("navigation", name="Console sections")).to_be_visible()
    console.check("overview")
    # Keyboard: the skip link is the first stop and leads to the content.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()


def test_session_cookie_flags_and_sign_out(console: ConsolePage, demo_world: World) -> None:
    console.sign_in(demo_world, "owner")
    cookie = next(c for c in console.page.context.cookies() if c["name"] == "learndir_console")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["path"] == "/console"
    assert cookie["secure"] is False  # plain HTTP here; see the TLS test below
    with console.client() as client:
        assert client.get("/console/").status_code == 200
    console.page.get_by_role("button", name="Sign out").click()
    expect(console.page.get_by_role("heading", level=1)).to_have_text("Sign in")
    # The old cookie opens nothing any more.
    with httpx.Client(
        base_url=console.site.base_url, cookies={"learndir_console": cookie["value"]}
    ) as client:
        answer = client.get("/console/")
        assert answer.status_code == 303
        assert "/console/sign-in" in answer.headers["location"]


def test_secure_cookie_behind_tls(console_site: ConsoleSite, demo_world: World) -> None:
    answer = httpx.post(
        f"{console_site.base_url}/console/sign-in",
        data={"account": demo_world.account_url, "login": "owner", "password": "Demo-Owner-1"},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert answer.status_code == 303
    header = answer.headers["set-cookie"].lower()
    assert "httponly" in header and "samesite=lax" in header and "secure" in header


def test_forms_without_the_csrf_token_are_refused(
    console: ConsolePage, console_site: ConsoleSite, demo_world: World
) -> None:
    console.sign_in(demo_world, "owner")
    before = account_snapshot(console_site.db, demo_world.account_id)
    with console.client() as client:
        for data in ({}, {"csrf": "0" * 64}):
            answer = client.post(
                "/console/me/password",
                data={**data, "current": "Demo-Owner-1", "password": "x" * 12, "repeat": "x" * 12},
            )
            assert answer.status_code == 403
            assert "security token" in answer.text
        # Another site's form is refused even with the token.
        answer = client.post(
            "/console/sign-out",
            data={"csrf": console.csrf()},
            headers={"Origin": "https://evil.example"},
        )
        assert answer.status_code == 403
        assert client.get("/console/").status_code == 200  # still signed in
    assert account_snapshot(console_site.db, demo_world.account_id) == before


def test_idle_and_old_sessions_end(console_site: ConsoleSite, demo_world: World) -> None:
    db = console_site.db
    raw, _session = console_sessions.sign_in(db, demo_world.account_url, "owner", "Demo-Owner-1")
    assert console_sessions.open_session(db, raw, SessionPolicy()).actor.login == "owner"
    for policy in (
        SessionPolicy(idle=timedelta(0)),
        SessionPolicy(lifetime=timedelta(0)),
    ):
        raw, _ = console_sessions.sign_in(db, demo_world.account_url, "owner", "Demo-Owner-1")
        try:
            console_sessions.open_session(db, raw, policy)
            raise AssertionError("an expired session opened")
        except DomainError as exc:
            assert "expired" in (exc.reason or "")
        # ... and its row is gone.
        try:
            console_sessions.open_session(db, raw, SessionPolicy())
            raise AssertionError("an expired session opened")
        except DomainError as exc:
            assert "ended" in (exc.reason or "")


def test_a_learner_sees_only_its_profile_and_changes_its_password(
    console: ConsolePage, console_site: ConsoleSite, demo_world: World
) -> None:
    owner = console_sessions.sign_in(
        console_site.db, demo_world.account_url, "owner", "Demo-Owner-1"
    )[1].actor
    add_user(
        console_site.db,
        owner,
        AddUser(
            login="lena",
            email="lena@demo.example.com",
            password="Lena-Pass-1",
            departmentId=demo_world.root_id,
            fields={"first_name": "Lena"},
        ),
    )
    page = console.sign_in(demo_world, "lena", "Lena-Pass-1")
    expect(page.get_by_role("heading", level=1)).to_have_text("My profile")
    nav = page.get_by_role("navigation", name="Console sections")
    expect(nav.get_by_role("link")).to_have_count(1)
    console.check("my-profile")
    page.goto(console.url("/people"))
    expect(page.get_by_role("heading", level=1)).not_to_have_text("People")
    page.goto(console.url("/me"))
    page.get_by_label("Current password").fill("wrong")
    page.get_by_label("New password", exact=True).fill("Lena-Pass-2")
    page.get_by_label("New password again").fill("Lena-Pass-2")
    page.get_by_role("button", name="Change password").click()
    expect(page.locator("#pw-current-error")).to_contain_text("not right")
    page.get_by_label("Current password").fill("Lena-Pass-1")
    page.get_by_label("New password", exact=True).fill("Lena-Pass-2")
    page.get_by_label("New password again").fill("Lena-Pass-2")
    page.get_by_role("button", name="Change password").click()
    expect(page.locator(".notice")).to_have_text("Your password has been changed.")
    console_sessions.sign_in(console_site.db, demo_world.account_url, "lena", "Lena-Pass-2")


def test_a_session_in_use_outlives_a_short_idle_period(
    console_site: ConsoleSite, demo_world: World
) -> None:
    """With an idle period shorter than the minute last use is written at, a session used every
    few seconds stays open for many idle periods; left alone for one, it ends."""
    db = console_site.db
    policy = SessionPolicy(idle=timedelta(seconds=10))
    raw, session = console_sessions.sign_in(db, demo_world.account_url, "owner", "Demo-Owner-1")
    moment = session.created_at
    for _ in range(10):
        moment += timedelta(seconds=6)
        assert console_sessions.open_session(db, raw, policy, moment).actor.login == "owner"
    with pytest.raises(DomainError, match="expired"):
        console_sessions.open_session(db, raw, policy, moment + timedelta(seconds=11))
