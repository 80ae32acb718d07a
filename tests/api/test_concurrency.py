"""addUser under simultaneous requests, on one server process and on two sharing a database.

The database decides every race: exactly one of many adds of the same login (or e-mail, or
unique profile value) wins and the others get the same 409 / Fault as a sequential duplicate;
the seat limit admits exactly as many users as seats are left. A race is never a 5xx.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import httpx
import pytest
from lxml import etree
from sqlalchemy import func, select

from learndir.db.engine import Database
from learndir.db.schema import user_field_values, users
from tests.support import Server, World, acme_spec, make_world, start_server, stop_server

BURST = 50
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_NS = "http://ispringlearn.com/go/services/api/soap"
TRANSPORTS = ("json", "xml", "soap")

LOGIN_TAKEN = "User with the same login is already registered."
EMAIL_TAKEN = "User with the same email is already registered."
EMPLOYEE_ID_TAKEN = "User with the same employee_id is already registered."
SEATS_EXCEEDED = "Number of user accounts is exceeded"


@dataclass(frozen=True)
class Add:
    transport: str
    login: str
    email: str
    employee_id: str


@dataclass(frozen=True)
class Outcome:
    add: Add
    server: str
    status: int
    message: str | None
    body: str


def _request(add: Add, token: str, department_id: str) -> tuple[str, dict[str, str], bytes]:
    """(path, headers, body) of one addUser call in the add's transport."""
    if add.transport == "json":
        body = httpx.Request(
            "POST",
            "http://x/",
            json={
                "departmentId": department_id,
                "fields": {"login": add.login, "email": add.email, "employee_id": add.employee_id},
            },
        ).content
        return (
            "/user",
            {
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            body,
        )
    if add.transport == "xml":
        xml = (
            f"<request><departmentId>{department_id}</departmentId><fields>"
            f"<login>{escape(add.login)}</login><email>{escape(add.email)}</email>"
            f"<employee_id>{escape(add.employee_id)}</employee_id></fields></request>"
        )
        return (
            "/user",
            {"Authorization": f"Bearer {token}", "Content-Type": "application/xml"},
            xml.encode(),
        )
    envelope = (
        f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV}" xmlns="{SOAP_NS}"><SOAP-ENV:Body>'
        f"<AddUserRequest><token>{token}</token><login>{escape(add.login)}</login>"
        f"<email>{escape(add.email)}</email><departmentId>{department_id}</departmentId>"
        f"<fields><field><name>employee_id</name><value>{escape(add.employee_id)}</value>"
        f"</field></fields></AddUserRequest></SOAP-ENV:Body></SOAP-ENV:Envelope>"
    )
    return "/soap", {"Content-Type": "text/xml; charset=utf-8"}, envelope.encode()


def _message(add: Add, response: httpx.Response) -> str | None:
    """The error message of a refusal, whatever the transport; None for a success."""
    if response.status_code == 201 and add.transport != "soap":
        return None
    if response.status_code >= 500:
        return response.text[:500]
    if add.transport == "json":
        return str(response.json()["message"])
    root = etree.fromstring(response.content)
    if add.transport == "xml":
        return root.findtext("message")
    faultstring = root.findtext(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault/faultstring")
    if response.status_code == 200:
        assert faultstring is None, response.text
        assert root.findtext(f".//{{{SOAP_NS}}}userId"), response.text
        return None
    return faultstring


def fire(servers: list[Server], adds: list[Add], token: str, department_id: str) -> list[Outcome]:
    """Sends every add at the same instant: each thread opens its connection first (a health
    check), then all wait at one barrier and post together. Adds alternate between servers."""
    barrier = threading.Barrier(len(adds))

    def send(index: int) -> Outcome:
        add = adds[index]
        base_url = servers[index % len(servers)].base_url
        path, headers, body = _request(add, token, department_id)
        # Plain HTTP: verify=False only skips loading the CA bundle (70 ms per client).
        with httpx.Client(base_url=base_url, timeout=60, verify=False) as client:
            assert client.get("/health").status_code == 200
            barrier.wait(timeout=30)
            response = client.post(path, headers=headers, content=body)
        return Outcome(add, base_url, response.status_code, _message(add, response), response.text)

    with ThreadPoolExecutor(max_workers=len(adds)) as pool:
        return list(pool.map(send, range(len(adds))))


def _ok(outcome: Outcome) -> bool:
    """A created user: 201 for REST, 200 with a userId for SOAP."""
    return outcome.message is None


def assert_no_server_error(outcomes: list[Outcome], servers: list[Server]) -> None:
    errors = [o for o in outcomes if o.status >= 500]
    assert not errors, f"{len(errors)} server errors, first: {errors[0]}; logs: " + " | ".join(
        str(s.log_path) for s in servers
    )
    assert all(s.alive() for s in servers)


def refusal_statuses(outcomes: list[Outcome]) -> Counter[tuple[int, str | None]]:
    return Counter((o.status, o.message) for o in outcomes if not _ok(o))


# ---- where the requests go --------------------------------------------------------------


@pytest.fixture(scope="module")
def second_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Another `learndir serve` process on the session server's database."""
    running = start_server(database_url, Path(tmp_path_factory.mktemp("logs-second")))
    yield running
    stop_server(running)


@pytest.fixture(params=["one_process", "two_processes"])
def servers(request: pytest.FixtureRequest, server: Server) -> list[Server]:
    if request.param == "one_process":
        return [server]
    return [server, request.getfixturevalue("second_server")]


@pytest.fixture(scope="module")
def race_world(db: Database) -> World:
    """The acme account without a seat limit, so the duplicate races never meet one."""
    return make_world(db, acme_spec(seatLimit=None))


def _unique() -> str:
    return uuid.uuid4().hex[:8]


def _count_users(db: Database, account_id: str, **where: object) -> int:
    conditions = [users.c.account_id == account_id]
    conditions += [getattr(users.c, column) == value for column, value in where.items()]
    with db.read() as conn:
        return int(
            conn.execute(select(func.count()).select_from(users).where(*conditions)).scalar_one()
        )


def _count_employee_id(db: Database, account_id: str, employee_id: str) -> int:
    in_account = select(users.c.id).where(users.c.account_id == account_id)
    with db.read() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(user_field_values)
                .where(
                    user_field_values.c.user_id.in_(in_account),
                    user_field_values.c.value == employee_id,
                )
            ).scalar_one()
        )


# ---- duplicates -------------------------------------------------------------------------


def _colliding_adds(collide: str, tag: str) -> list[Add]:
    """BURST adds that share exactly one unique value (login, e-mail or employee_id) and
    differ in the others; transports rotate JSON, XML, SOAP."""
    adds = []
    for i in range(BURST):
        login = f"race.{tag}" if collide == "login" else f"race.{tag}.{i}"
        email = f"race.{tag}@acme.test" if collide == "email" else f"race.{tag}.{i}@acme.test"
        employee_id = f"R-{tag}" if collide == "employee_id" else f"R-{tag}-{i}"
        adds.append(Add(TRANSPORTS[i % len(TRANSPORTS)], login, email, employee_id))
    return adds


@pytest.mark.parametrize(
    ("collide", "message"),
    [("login", LOGIN_TAKEN), ("email", EMAIL_TAKEN), ("employee_id", EMPLOYEE_ID_TAKEN)],
)
def test_simultaneous_duplicates_create_one_user(
    servers: list[Server], race_world: World, db: Database, collide: str, message: str
) -> None:
    tag = _unique()
    adds = _colliding_adds(collide, tag)
    before = race_world.snapshot()

    outcomes = fire(servers, adds, race_world.token("owner"), race_world.departments["sales"])

    assert_no_server_error(outcomes, servers)
    winners = [o for o in outcomes if _ok(o)]
    assert len(winners) == 1, [(o.status, o.message) for o in outcomes]
    assert refusal_statuses(outcomes) == {(409, message): BURST - 1}
    after = race_world.snapshot()
    grown = {key: after[key] - before[key] for key in after}
    assert grown == {
        **dict.fromkeys(after, 0),
        "users": 1,
        "user_roles": 1,
        "field_values": 1,
        "active_users": 1,
    }
    winner = winners[0].add
    assert _count_users(db, race_world.account_id, login=winner.login) == 1
    assert _count_users(db, race_world.account_id, email=winner.email) == 1
    assert _count_employee_id(db, race_world.account_id, winner.employee_id) == 1
    if collide == "login":
        assert _count_users(db, race_world.account_id, login=f"race.{tag}") == 1
    if collide == "email":
        assert _count_users(db, race_world.account_id, email=f"race.{tag}@acme.test") == 1
    if collide == "employee_id":
        assert _count_employee_id(db, race_world.account_id, f"R-{tag}") == 1


# ---- seat limit -------------------------------------------------------------------------

SEATS_LEFT = 10
ACME_ACTIVE_USERS = 5  # the owner and the four users of examples/acme.yaml


def test_seat_limit_admits_exactly_the_seats_left(servers: list[Server], db: Database) -> None:
    seat_world = make_world(db, acme_spec(seatLimit=ACME_ACTIVE_USERS + SEATS_LEFT))
    before = seat_world.snapshot()
    assert before["active_users"] == before["users"] == ACME_ACTIVE_USERS
    tag = _unique()
    adds = [
        Add(
            TRANSPORTS[i % len(TRANSPORTS)],
            f"seat.{tag}.{i}",
            f"seat.{tag}.{i}@acme.test",
            f"S-{tag}-{i}",
        )
        for i in range(BURST)
    ]

    outcomes = fire(servers, adds, seat_world.token("owner"), seat_world.departments["eng"])

    assert_no_server_error(outcomes, servers)
    assert sum(_ok(o) for o in outcomes) == SEATS_LEFT, [(o.status, o.message) for o in outcomes]
    assert refusal_statuses(outcomes) == {(403, SEATS_EXCEEDED): BURST - SEATS_LEFT}
    after = seat_world.snapshot()
    assert after["active_users"] == after["users"] == ACME_ACTIVE_USERS + SEATS_LEFT
    assert after["field_values"] - before["field_values"] == SEATS_LEFT
    assert after["user_roles"] - before["user_roles"] == SEATS_LEFT
    assert _count_users(db, seat_world.account_id, status=1) == ACME_ACTIVE_USERS + SEATS_LEFT
    for outcome in outcomes:
        expected = 1 if _ok(outcome) else 0
        assert _count_users(db, seat_world.account_id, login=outcome.add.login) == expected
