"""The set-password page a new user reaches from an invitation's link, against a real `learndir
serve` on SQLite and PostgreSQL: over HTTP (statuses, headers, errors, the token kept out of
the log) and in a real headless browser (the whole path, from the link to signing in, checked
with axe for accessibility)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from sqlalchemy import select

from learndir.db.engine import Database
from learndir.db.schema import users
from tests.browser import OfflinePage
from tests.invitations import invite_new_user, outbox_ids, send, send_latest
from tests.support import Server, World, acme_spec, make_world

PASSWORD = "Brand-New-Pass-1"


@pytest.fixture(scope="module")
def w(db: Database) -> World:
    return make_world(db, acme_spec(seatLimit=None))


def _login(w: World, user_id: str) -> str:
    with w.db.read() as conn:
        return str(conn.execute(select(users.c.login).where(users.c.id == user_id)).scalar_one())


def signs_in(server: Server, w: World, user_id: str, password: str) -> int:
    """GET /user/{id} as the user, with the X-Auth headers: the status."""
    response = httpx.get(
        f"{server.base_url}/user/{user_id}",
        headers={
            "X-Auth-Account-Url": w.account_url,
            "X-Auth-Email": _login(w, user_id),
            "X-Auth-Password": password,
            "Accept": "application/json",
        },
    )
    return response.status_code


def submit(
    server: Server, raw: str, password: str, confirmation: str | None = None
) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/invite/{raw}",
        data={
            "password": password,
            "confirmation": password if confirmation is None else confirmation,
        },
    )


# ---- HTTP -------------------------------------------------------------------------------


def test_the_form_states_the_policy_and_is_never_cached(server: Server, w: World) -> None:
    user_id = invite_new_user(w)
    raw = send_latest(w.db, user_id)
    response = httpx.get(f"{server.base_url}/invite/{raw}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy
    assert "script-src" not in policy and "unsafe-inline" not in policy
    page = response.text
    assert "at least 8 characters" in " ".join(page.split())
    assert _login(w, user_id) in page and "Acme" in page
    assert '<label for="password">' in page and '<label for="confirmation">' in page
    assert raw not in page  # the form posts to its own address: the token is not repeated
    assert "<script" not in page


def test_errors_are_shown_in_the_page_and_change_nothing(server: Server, w: World) -> None:
    user_id = invite_new_user(w)
    raw = send_latest(w.db, user_id)
    short = submit(server, raw, "short")
    assert short.status_code == 400
    assert "The password must be at least 8 characters long." in short.text
    assert 'role="alert"' in short.text and 'aria-invalid="true"' in short.text
    differ = submit(server, raw, PASSWORD, "Something-Else-1")
    assert differ.status_code == 400 and "The two passwords differ" in differ.text
    empty = submit(server, raw, "")
    assert empty.status_code == 400 and "Enter a password." in empty.text
    assert httpx.get(f"{server.base_url}/invite/{raw}").status_code == 200  # still usable


def test_the_link_works_once(server: Server, w: World) -> None:
    user_id = invite_new_user(w)
    raw = send_latest(w.db, user_id)
    done = submit(server, raw, PASSWORD)
    assert done.status_code == 200, done.text
    assert "Your password is set" in done.text and w.account_url in done.text
    assert done.headers["cache-control"] == "no-store"
    assert signs_in(server, w, user_id, PASSWORD) == 200
    again = httpx.get(f"{server.base_url}/invite/{raw}")
    assert again.status_code == 410 and "already been used" in again.text
    resubmitted = submit(server, raw, "Another-Pass-99")
    assert resubmitted.status_code == 410 and "already been used" in resubmitted.text
    assert signs_in(server, w, user_id, "Another-Pass-99") == 401


def test_expired_revoked_and_unknown_links(server: Server, w: World) -> None:
    user_id = invite_new_user(w)
    expired = send_latest(w.db, user_id, age=timedelta(days=8))
    page = httpx.get(f"{server.base_url}/invite/{expired}")
    assert page.status_code == 410 and "has expired" in page.text
    assert "resend your invitation" in page.text
    assert submit(server, expired, PASSWORD).status_code == 410
    assert signs_in(server, w, user_id, PASSWORD) == 401

    other = invite_new_user(w)
    first = send(w.db, outbox_ids(w.db, other)[0])
    owner = {"Authorization": f"Bearer {w.token('owner')}"}
    resent = httpx.post(f"{server.base_url}/user/{other}/invitation/resend", headers=owner)
    assert resent.status_code == 200
    replaced = httpx.get(f"{server.base_url}/invite/{first}")
    assert replaced.status_code == 410 and "is not valid" in replaced.text

    unknown = httpx.get(f"{server.base_url}/invite/no-such-token-at-all")
    assert unknown.status_code == 404
    assert "is not valid" in unknown.text and "resend your invitation" in unknown.text
    assert unknown.headers["cache-control"] == "no-store"


def test_a_double_submit_sets_one_password(server: Server, w: World) -> None:
    user_id = invite_new_user(w)
    raw = send_latest(w.db, user_id)
    statuses: list[int] = []
    barrier = threading.Barrier(3)

    def go(i: int) -> None:
        barrier.wait()
        statuses.append(submit(server, raw, f"{PASSWORD}-{i}").status_code)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200, 410, 410]
    assert sum(signs_in(server, w, user_id, f"{PASSWORD}-{i}") == 200 for i in range(3)) == 1


def test_the_token_never_reaches_the_log(server: Server, w: World) -> None:
    user_id = invite_new_user(w)
    raw = send_latest(w.db, user_id)
    httpx.get(f"{server.base_url}/invite/{raw}")
    submit(server, raw, "short")
    submit(server, raw, PASSWORD)
    httpx.get(f"{server.base_url}/api/v2/invite/{raw}")
    deadline = time.monotonic() + 5
    while (
        "/api/v2/invite/[token]" not in server.log_path.read_text() and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    log = server.log_path.read_text()
    assert "path=/invite/[token]" in log and "path=/api/v2/invite/[token]" in log
    assert raw not in log


# ---- in the browser ---------------------------------------------------------------------


def test_from_the_link_to_signing_in(server: Server, w: World, offline_page: OfflinePage) -> None:
    user_id = invite_new_user(w)
    raw = send_latest(w.db, user_id)
    page = offline_page.page
    page.goto(f"{server.base_url}/invite/{raw}")
    assert page.title().startswith("Set your password")
    assert "at least 8 characters" in page.locator("#policy").inner_text()
    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_report()

    page.get_by_label("New password").fill("short")
    page.get_by_label("Type the password again").fill("short")
    page.get_by_role("button", name="Set password").click()
    page.wait_for_load_state()
    alert = page.get_by_role("alert")
    assert "must be at least 8 characters long" in alert.inner_text()
    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_report()

    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_label("Type the password again").fill(PASSWORD)
    page.get_by_role("button", name="Set password").click()
    page.wait_for_load_state()
    assert page.get_by_role("heading", level=1).inner_text() == "Your password is set"
    assert _login(w, user_id) in page.locator("main").inner_text()
    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_report()
    assert signs_in(server, w, user_id, PASSWORD) == 200

    page.goto(f"{server.base_url}/invite/{raw}")
    assert "already been used" in page.locator("main").inner_text()
    assert offline_page.outside == []
    assert offline_page.csp_violations == []


def test_an_expired_link_in_the_browser(
    server: Server, w: World, offline_page: OfflinePage
) -> None:
    user_id = invite_new_user(w)
    raw = send_latest(w.db, user_id, age=timedelta(days=30))
    page = offline_page.page
    response = page.goto(f"{server.base_url}/invite/{raw}")
    assert response is not None and response.status == 410
    text = page.locator("main").inner_text()
    assert "expired" in text and "ask your administrator" in text.lower()
    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_report()
    assert page.get_by_label("New password").count() == 0
    assert offline_page.csp_violations == []
