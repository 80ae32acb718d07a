"""POST /Users under simultaneous requests, on SQLite and PostgreSQL, sent alternately to two
server processes sharing the database (tests/api/test_concurrency.py does the same for REST and
SOAP): the database decides every race, exactly as for a sequential duplicate or a full
account, and a race is never a 5xx."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from learndir.db.engine import Database
from tests.api.scim.support import SCIM_JSON, USER_URN, demo_spec, open_scim
from tests.api.test_concurrency import BURST, SEATS_EXCEEDED, second_server  # noqa: F401
from tests.support import Server, count_users

DEMO_ACTIVE = 2  # owner and sales.admin
SEATS_LEFT = 10


def _fire(servers: list[Server], token: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """Sends every POST /Users at the same instant: each thread opens its connection first,
    then all wait at one barrier and post together."""
    barrier = threading.Barrier(len(bodies))

    def send(index: int) -> httpx.Response:
        base_url = servers[index % len(servers)].base_url
        headers = {"Authorization": f"Bearer {token}", "Content-Type": SCIM_JSON}
        with httpx.Client(base_url=base_url, timeout=60, verify=False) as client:
            assert client.get("/health").status_code == 200
            barrier.wait(timeout=30)
            response = client.post("/scim/v2/Users", headers=headers, json=bodies[index])
            response.read()
            return response

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(send, range(len(bodies))))


def _body(user_name: str, email: str) -> dict[str, Any]:
    return {
        "schemas": [USER_URN],
        "userName": user_name,
        "emails": [{"value": email, "primary": True}],
        "active": True,
    }


def _outcomes(responses: list[httpx.Response]) -> Counter[tuple[int, str | None, str]]:
    """(status, scimType, detail) of each refusal; 5xx with their text."""
    counted: Counter[tuple[int, str | None, str]] = Counter()
    for r in responses:
        if r.status_code == 201:
            continue
        if r.status_code >= 500:
            counted[(r.status_code, None, r.text[:300])] += 1
            continue
        body = r.json()
        counted[(r.status_code, body.get("scimType"), body["detail"].split(" (")[0])] += 1
    return counted


def test_one_user_name_posted_fifty_times_creates_one_user(
    db: Database,
    server: Server,
    second_server: Server,  # noqa: F811
) -> None:
    scim = open_scim(db, server, demo_spec(seatLimit=None))
    tag = uuid.uuid4().hex[:8]
    bodies = [_body(f"race.{tag}", f"race.{tag}.{i}@example.com") for i in range(BURST)]
    before = scim.world.snapshot()

    responses = _fire([server, second_server], scim.token, bodies)

    assert sum(r.status_code == 201 for r in responses) == 1, _outcomes(responses)
    assert _outcomes(responses) == {
        (409, "uniqueness", "User with the same login is already registered."): BURST - 1
    }
    after = scim.world.snapshot()
    assert after["users"] == before["users"] + 1
    assert count_users(db, scim.world.account_id, f"race.{tag}") == 1
    assert server.alive() and second_server.alive()


def test_seats_left_admit_exactly_as_many_users(
    db: Database,
    server: Server,
    second_server: Server,  # noqa: F811
) -> None:
    scim = open_scim(db, server, demo_spec(seatLimit=DEMO_ACTIVE + SEATS_LEFT))
    tag = uuid.uuid4().hex[:8]
    bodies = [_body(f"seat.{tag}.{i}", f"seat.{tag}.{i}@example.com") for i in range(BURST)]
    before = scim.world.snapshot()
    assert before["active_users"] == before["users"] == DEMO_ACTIVE

    responses = _fire([server, second_server], scim.token, bodies)

    assert sum(r.status_code == 201 for r in responses) == SEATS_LEFT, _outcomes(responses)
    assert _outcomes(responses) == {(403, None, SEATS_EXCEEDED): BURST - SEATS_LEFT}
    after = scim.world.snapshot()
    assert after["users"] == after["active_users"] == DEMO_ACTIVE + SEATS_LEFT
    assert count_users(db, scim.world.account_id, f"seat.{tag}.") == SEATS_LEFT
    created = {r.json()["userName"] for r in responses if r.status_code == 201}
    assert len(created) == SEATS_LEFT
    assert server.alive() and second_server.alive()
