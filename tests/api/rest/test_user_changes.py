"""REST operations that change users beyond the scenario table: bulk status changes and the seat
limit (also under concurrency), passwords, scheduled deactivation and termination (carried out
by the running service, also after a restart), groups, subordination and work leave; through
REST JSON and REST XML on SQLite and PostgreSQL."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from learndir.core.auth import authenticate_token
from learndir.core.common import utcnow
from learndir.core.errors import MESSAGES, ErrorCode
from learndir.core.users.commands import AddUser, parse_command
from learndir.core.users.service import add_user
from learndir.db.engine import Database
from learndir.db.migrate import upgrade_database
from learndir.db.schema import account_seats, group_members, users
from tests.support import (
    Server,
    World,
    acme_spec,
    fresh_postgres_database,
    make_world,
    start_server,
    stop_server,
)
from tests.transports import Auth, Outcome, RestJson, RestXml

E = ErrorCode


@pytest.fixture(scope="module")
def world(db: Database) -> World:
    return make_world(db, acme_spec(seatLimit=None))


@pytest.fixture(scope="module", params=["rest-json", "rest-xml"])
def rest(request: pytest.FixtureRequest, server: Server) -> Any:
    return {"rest-json": RestJson, "rest-xml": RestXml}[request.param](server.base_url)


def new_user(w: World, department: str = "sales-eu", **extra: Any) -> str:
    uid = uuid.uuid4().hex[:10]
    owner = authenticate_token(w.db, w.token("owner"))
    params = {
        "login": f"c{uid}",
        "departmentId": w.departments[department],
        "fields": {"employee_id": f"C{uid}"},
        **extra,
    }
    return add_user(w.db, owner, parse_command(AddUser, params))


def row(w: World, user_id: str) -> Any:
    with w.db.read() as conn:
        return conn.execute(select(users).where(users.c.id == user_id)).first()


def statuses(w: World, ids: list[str]) -> list[int]:
    return [row(w, i).status for i in ids]


def seat_counter(w: World) -> int:
    with w.db.read() as conn:
        return int(
            conn.execute(
                select(account_seats.c.active_users).where(
                    account_seats.c.account_id == w.account_id
                )
            ).scalar_one()
        )


def set_status(w: World, ids: list[str], status: int) -> None:
    """Straight in the database (the seat counter is the test's business)."""
    with w.db.write() as conn:
        conn.execute(update(users).where(users.c.id.in_(ids)).values(status=status))


def owner(w: World) -> Auth:
    return Auth(token=w.token("owner"))


def assert_error(outcome: Outcome, code: ErrorCode, parameter: str | None = None) -> None:
    assert outcome.code == code.value, outcome
    assert outcome.message == ("Unknown user" if code is E.NOT_FOUND else MESSAGES[code]), outcome
    if parameter is not None:
        assert outcome.parameter == parameter, outcome
        assert outcome.reason, outcome


def assert_empty(outcome: Outcome, status: int = 200) -> None:
    assert outcome.status == status, outcome
    assert outcome.data is None and outcome.code is None, outcome


# ---- bulk status ------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "status"), [("activate", 1), ("deactivate", 3), ("terminate", 5)])
def test_bulk_status(rest: Any, world: World, path: str, status: int) -> None:
    ids = [new_user(world), new_user(world, "eng")]
    if status == 1:
        set_status(world, ids, 3)
    assert_empty(rest.request("POST", f"/users/{path}", owner(world), {"userIds": ids}))
    assert statuses(world, ids) == [status, status]


def test_bulk_status_from_header(rest: Any, world: World) -> None:
    ids = [new_user(world), new_user(world)]
    auth = owner(world)
    response = rest.client.post(
        "/api/v2/users/deactivate",
        headers={"Authorization": f"Bearer {auth.token}", "X-User-Ids": ",".join(ids)},
    )
    assert response.status_code == 200 and response.content == b"", response.text
    assert statuses(world, ids) == [3, 3]


def test_bulk_status_is_all_or_nothing(rest: Any, world: World) -> None:
    good = new_user(world)
    unknown = str(uuid.uuid4())
    outcome = rest.request("POST", "/users/deactivate", owner(world), {"userIds": [good, unknown]})
    assert outcome.status == 404
    assert_error(outcome, E.NOT_FOUND, "userIds")
    assert unknown in outcome.reason
    assert statuses(world, [good]) == [1]
    # One user outside the caller's departments: nothing changes either.
    outside = new_user(world, "eng")
    outcome = rest.request(
        "POST",
        "/users/terminate",
        Auth(token=world.token("sales.admin")),
        {"userIds": [good, outside]},
    )
    assert_error(outcome, E.PERMISSION_DENIED, "userIds")
    assert outside in outcome.reason
    assert statuses(world, [good, outside]) == [1, 1]
    # The owner among them.
    outcome = rest.request(
        "POST",
        "/users/deactivate",
        Auth(token=world.token("admin")),
        {"userIds": [good, world.users["owner"]]},
    )
    assert_error(outcome, E.PERMISSION_DENIED, "userIds")
    assert statuses(world, [good]) == [1]


def test_bulk_status_needs_ids(rest: Any, world: World) -> None:
    assert_error(
        rest.request("POST", "/users/activate", owner(world), {}), E.INVALID_PARAMETERS, "userIds"
    )


def test_status_from_header(rest: Any, world: World) -> None:
    user = new_user(world)
    response = rest.client.post(
        f"/user/{user}/status",
        headers={"Authorization": f"Bearer {world.token('owner')}", "X-Status": "5"},
    )
    assert response.status_code == 200 and response.content == b""
    assert statuses(world, [user]) == [5]


# ---- seats ------------------------------------------------------------------------------


def seat_world(db: Database, free: int, inactive: int) -> tuple[World, list[str]]:
    """The acme account (5 active users) with `inactive` more users and `free` seats left."""
    w = make_world(db, acme_spec(seatLimit=5 + inactive))
    ids = [new_user(w) for _ in range(inactive)]
    with w.db.write() as conn:
        conn.execute(update(users).where(users.c.id.in_(ids)).values(status=3))
        conn.execute(
            update(account_seats)
            .where(account_seats.c.account_id == w.account_id)
            .values(seat_limit=5 + free, active_users=5)
        )
    return w, ids


def test_activation_counts_against_the_seat_limit(rest: Any, db: Database) -> None:
    w, ids = seat_world(db, free=2, inactive=3)
    before = w.snapshot()
    outcome = rest.request("POST", "/users/activate", owner(w), {"userIds": ids})
    assert outcome.status == 403
    assert_error(outcome, E.SEAT_LIMIT_EXCEEDED)
    assert statuses(w, ids) == [3, 3, 3] and w.snapshot() == before and seat_counter(w) == 5
    assert_empty(rest.request("POST", "/users/activate", owner(w), {"userIds": ids[:2]}))
    assert seat_counter(w) == 7
    outcome = rest.change_status(ids[2], 1, owner(w))
    assert_error(outcome, E.SEAT_LIMIT_EXCEEDED)
    # Activating someone already active takes no seat; deactivating and deleting free them.
    assert_empty(rest.change_status(ids[0], 1, owner(w)))
    assert_empty(rest.change_status(ids[0], 5, owner(w)))
    assert_empty(rest.delete_user(ids[1], owner(w)), 204)
    assert seat_counter(w) == 5
    assert_empty(rest.request("POST", "/users/activate", owner(w), {"userIds": [ids[0], ids[2]]}))
    assert seat_counter(w) == 7 == w.snapshot()["active_users"]


def test_parallel_activations_take_exactly_the_free_seats(server: Server, db: Database) -> None:
    w, ids = seat_world(db, free=3, inactive=8)
    token = w.token("owner")

    def activate(user_id: str) -> int:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            return client.post(
                f"/user/{user_id}/status",
                json={"status": 1},
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            ).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(activate, ids))
    assert sorted(codes) == [200] * 3 + [403] * 5
    assert statuses(w, ids).count(1) == 3
    assert seat_counter(w) == 8 == w.snapshot()["active_users"]


# ---- password ---------------------------------------------------------------------------


def test_password_change_then_sign_in_with_it(rest: Any, world: World) -> None:
    user = new_user(world, "eng", role="administrator", password="First-Pass-1")
    login = row(world, user).login

    def sign_in(password: str) -> int:
        return rest.request(
            "GET",
            "/role",
            Auth(account_url=world.account_url, login=login, password=password),
        ).status

    assert sign_in("First-Pass-1") == 200
    assert_empty(
        rest.request("POST", f"/user/{user}/password", owner(world), {"password": "Second-Pass-2"})
    )
    assert sign_in("Second-Pass-2") == 200
    assert sign_in("First-Pass-1") == 401
    # From the header, by the user themselves.
    response = rest.client.post(
        f"/user/{user}/password",
        headers={
            "X-Auth-Account-Url": world.account_url,
            "X-Auth-Email": login,
            "X-Auth-Password": "Second-Pass-2",
            "X-Password": "Third-Pass-3",
        },
    )
    assert response.status_code == 200 and response.content == b""
    assert sign_in("Third-Pass-3") == 200
    stored = row(world, user).password_hash
    assert stored.startswith("$argon2id$") and "Third-Pass-3" not in stored


def test_password_policy(rest: Any, world: World) -> None:
    user = new_user(world, password="Kept-Pass-1")
    before = row(world, user).password_hash
    for body in ({"password": "short"}, {"password": "x" * 257}, {}):
        outcome = rest.request("POST", f"/user/{user}/password", owner(world), body)
        assert_error(outcome, E.INVALID_PARAMETERS, "password")
        assert "short" not in (outcome.reason or "")
    outcome = rest.request(
        "POST",
        f"/user/{user}/password",
        Auth(token=world.token("sales.admin")),
        {"password": "Long-Enough-1"},
    )
    assert_empty(outcome)
    outside = new_user(world, "eng")
    outcome = rest.request(
        "POST",
        f"/user/{outside}/password",
        Auth(token=world.token("sales.admin")),
        {"password": "Long-Enough-1"},
    )
    assert_error(outcome, E.PERMISSION_DENIED, "userId")
    assert row(world, user).password_hash != before


# ---- schedules (setting them; carrying them out is tested below) --------------------------


@pytest.mark.parametrize("kind", ["deactivation", "termination"])
def test_schedule_and_cancel(rest: Any, world: World, kind: str) -> None:
    user = new_user(world)
    column = "deactivate_on" if kind == "deactivation" else "terminate_on"
    when = (utcnow().date() + timedelta(days=30)).isoformat()
    path = f"/user/{user}/scheduled_{kind}"
    assert_empty(rest.request("POST", path, owner(world), {"date": when}))
    assert getattr(row(world, user), column) == date.fromisoformat(when)
    assert row(world, user).status == 1
    for bad in ("2001-01-01", "31.12.2099", ""):
        before = row(world, user)
        outcome = rest.request("POST", path, owner(world), {"date": bad})
        assert_error(outcome, E.INVALID_PARAMETERS, "date")
        assert row(world, user) == before
    assert_empty(rest.request("DELETE", path, owner(world)))
    assert getattr(row(world, user), column) is None
    outcome = rest.request(
        "POST",
        f"/user/{world.users['owner']}/scheduled_{kind}",
        Auth(token=world.token("admin")),
        {"date": when},
    )
    assert_error(outcome, E.PERMISSION_DENIED, "userId")
    outcome = rest.request("DELETE", f"/user/{uuid.uuid4()}/scheduled_{kind}", owner(world))
    assert_error(outcome, E.NOT_FOUND, "userId")


# ---- groups, subordination, work leave --------------------------------------------------


def member_of(w: World, user_id: str) -> set[str]:
    with w.db.read() as conn:
        return set(
            conn.execute(
                select(group_members.c.group_id).where(group_members.c.user_id == user_id)
            ).scalars()
        )


def test_remove_from_groups(rest: Any, world: World) -> None:
    both = [world.groups["Newcomers"], world.groups["Managers"]]
    user = new_user(world, groups=both)
    outcome = rest.request(
        "POST",
        f"/user/{user}/groups/remove",
        owner(world),
        {"groupIds": [both[0], str(uuid.uuid4())]},
    )
    assert_error(outcome, E.INVALID_PARAMETERS, "groupIds")
    assert member_of(world, user) == set(both)
    assert_empty(
        rest.request("POST", f"/user/{user}/groups/remove", owner(world), {"groupIds": [both[0]]})
    )
    assert member_of(world, user) == {both[1]}
    response = rest.client.post(
        f"/user/{user}/groups/remove",
        headers={"Authorization": f"Bearer {world.token('owner')}", "X-Group-Ids": both[1]},
    )
    assert response.status_code == 200
    assert member_of(world, user) == set()


def test_subordination(rest: Any, world: World) -> None:
    user = new_user(world)
    boss = new_user(world, "eng")
    path = f"/user/{user}/subordination"
    auth = owner(world)
    cases = [
        ({"subordination": {"subordinationType": "manual"}}, "subordination.supervisorId"),
        (
            {"subordination": {"subordinationType": "manual", "supervisorId": user}},
            "subordination.supervisorId",
        ),
        (
            {"subordination": {"subordinationType": "manual", "supervisorId": str(uuid.uuid4())}},
            "subordination.supervisorId",
        ),
        ({"coSubordination": {"subordinationType": "boss"}}, "coSubordination.subordinationType"),
        ({}, "subordination"),
    ]
    for body, parameter in cases:
        before = row(world, user)
        assert_error(rest.request("POST", path, auth, body), E.INVALID_PARAMETERS, parameter)
        assert row(world, user) == before
    body = {
        "subordination": {"subordinationType": "manual", "supervisorId": boss},
        "coSubordination": {"subordinationType": "no_supervisor"},
    }
    assert_empty(rest.request("POST", path, auth, body), 204)
    stored = row(world, user)
    assert (stored.subordination_type, stored.supervisor_id) == ("manual", boss)
    assert (stored.co_subordination_type, stored.co_supervisor_id) == ("no_supervisor", None)
    assert_empty(
        rest.request("POST", path, auth, {"subordination": {"subordinationType": "inherit"}}), 204
    )
    stored = row(world, user)
    assert (stored.subordination_type, stored.supervisor_id) == (None, None)
    assert stored.co_subordination_type == "no_supervisor"
    # Deleting a supervisor clears the subordinations that name them.
    assert_empty(rest.request("POST", path, auth, body), 204)
    assert_empty(rest.delete_user(boss, auth), 204)
    assert (row(world, user).subordination_type, row(world, user).supervisor_id) == (None, None)


def test_work_leave_round_trip(rest: Any, world: World) -> None:
    first, second = new_user(world), new_user(world, "sales")
    auth = owner(world)
    body = {
        "workLeaveStatuses": [
            {
                "userId": first,
                "workLeaveReason": "OnVacation",
                "startDate": "2030-07-01",
                "endDate": "2030-07-14",
            },
            {"userId": second, "workLeaveReason": "SickLeave", "startDate": "2030-01-02"},
        ]
    }
    assert_empty(rest.request("POST", "/users/work-leave-status", auth, body))
    a, b = row(world, first), row(world, second)
    assert (a.work_leave_reason, a.work_leave_start, a.work_leave_end) == (
        "OnVacation",
        date(2030, 7, 1),
        date(2030, 7, 14),
    )
    assert (b.work_leave_reason, b.work_leave_start, b.work_leave_end) == (
        "SickLeave",
        date(2030, 1, 2),
        None,
    )
    shown = httpx.get(
        f"{rest.client.base_url}/user/{first}/v2",
        headers={"Authorization": f"Bearer {auth.token}", "Accept": "application/json"},
    ).json()
    assert shown["workLeaveStatus"] == {
        "workLeaveReason": "OnVacation",
        "startDate": "2030-07-01",
        "endDate": "2030-07-14",
    }
    # All or nothing: one bad entry, nothing changes.
    bad_entries = [
        ({"userId": first, "workLeaveReason": "Holiday"}, "workLeaveStatuses[1].workLeaveReason"),
        (
            {
                "userId": first,
                "workLeaveReason": "OnVacation",
                "startDate": "2030-02-02",
                "endDate": "2030-02-01",
            },
            "workLeaveStatuses[1].endDate",
        ),
        (
            {"userId": first, "workLeaveReason": "OnVacation", "startDate": "soon"},
            "workLeaveStatuses[1].startDate",
        ),
        ({"userId": second, "workLeaveReason": "OnVacation"}, "workLeaveStatuses[1].userId"),
    ]
    for entry, parameter in bad_entries:
        body = {"workLeaveStatuses": [{"userId": second, "workLeaveReason": "BusinessTrip"}, entry]}
        before = (row(world, first), row(world, second))
        assert_error(
            rest.request("POST", "/users/work-leave-status", auth, body),
            E.INVALID_PARAMETERS,
            parameter,
        )
        assert (row(world, first), row(world, second)) == before
    outside = new_user(world, "eng")
    body = {
        "workLeaveStatuses": [
            {"userId": first, "workLeaveReason": "BusinessTrip"},
            {"userId": outside, "workLeaveReason": "BusinessTrip"},
        ]
    }
    assert_error(
        rest.request(
            "POST", "/users/work-leave-status", Auth(token=world.token("sales.admin")), body
        ),
        E.PERMISSION_DENIED,
        "workLeaveStatuses[1].userId",
    )
    assert row(world, first).work_leave_reason == "OnVacation"
    outcome = rest.request(
        "POST", "/users/work-leave-status/delete", auth, {"userIds": [first, str(uuid.uuid4())]}
    )
    assert_error(outcome, E.NOT_FOUND, "userIds")
    assert row(world, first).work_leave_reason == "OnVacation"
    assert_empty(
        rest.request("POST", "/users/work-leave-status/delete", auth, {"userIds": [first, second]})
    )
    assert (row(world, first).work_leave_reason, row(world, second).work_leave_start) == (
        None,
        None,
    )


# ---- scheduled changes carried out by the running service -------------------------------


@pytest.fixture(scope="module")
def own_database(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of the same kind that no other server uses, so only the servers started
    here carry out its schedules."""
    if database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path_factory.mktemp('sched') / 'learndir.db'}"
        upgrade_database(url)
        yield url
        return
    with fresh_postgres_database("learndir_sched") as url:
        upgrade_database(url)
        yield url


def wait_for(predicate: Any, seconds: float = 8.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return bool(predicate())


def test_scheduled_changes_are_carried_out_by_the_running_service(
    own_database: str, tmp_path: Path
) -> None:
    database = Database(own_database)
    try:
        w = make_world(database, acme_spec(seatLimit=40))
        server = start_server(
            own_database, tmp_path, env={"LEARNDIR_SCHEDULER_INTERVAL_SECONDS": "1"}
        )
        try:
            rest = RestJson(server.base_url)
            leaver, ended, later = new_user(w), new_user(w), new_user(w)
            today = utcnow().date().isoformat()
            future = (utcnow().date() + timedelta(days=3)).isoformat()
            seats = seat_counter(w)
            assert_empty(
                rest.request(
                    "POST", f"/user/{leaver}/scheduled_deactivation", owner(w), {"date": today}
                )
            )
            assert_empty(
                rest.request(
                    "POST", f"/user/{ended}/scheduled_termination", owner(w), {"date": today}
                )
            )
            assert_empty(
                rest.request(
                    "POST", f"/user/{later}/scheduled_deactivation", owner(w), {"date": future}
                )
            )
            assert wait_for(lambda: statuses(w, [leaver, ended]) == [3, 5])
            assert row(w, leaver).deactivate_on is None and row(w, ended).terminate_on is None
            assert seat_counter(w) == seats - 2 == w.snapshot()["active_users"]
            time.sleep(1.5)  # more ticks: nothing applied twice, the future date waits
            assert seat_counter(w) == seats - 2
            assert row(w, later).status == 1 and row(w, later).deactivate_on is not None
        finally:
            stop_server(server)

        # While the service is down a date falls due; it is carried out at the next start
        # (with an interval far longer than the test: the run at start does it).
        with database.write() as conn:
            conn.execute(
                update(users)
                .where(users.c.id == later)
                .values(deactivate_on=utcnow().date() - timedelta(days=1))
            )
        server = start_server(
            own_database, tmp_path, env={"LEARNDIR_SCHEDULER_INTERVAL_SECONDS": "3600"}
        )
        try:
            assert wait_for(lambda: row(w, later).status == 3)
            assert row(w, later).deactivate_on is None
            assert seat_counter(w) == seats - 3 == w.snapshot()["active_users"]
        finally:
            stop_server(server)
    finally:
        database.dispose()


def test_update_from_headers(rest: Any, world: World) -> None:
    """POST /user/{id} takes UpdateUser's parameters as the X- headers the OpenAPI lists."""
    user = new_user(world, groups=[world.groups["Newcomers"]])
    response = rest.client.post(
        f"/api/v2/user/{user}",
        headers={
            "Authorization": f"Bearer {world.token('owner')}",
            "X-Department-Id": world.departments["support"],
            "X-Fields": '{"first_name": "Head", "job_title": "Lead"}',
            "X-Group-Ids": world.groups["Managers"],
            "X-Role": "department_administrator",
            "X-Manageable-Department-Ids": world.departments["support"],
        },
    )
    assert response.status_code == 200 and response.content == b"", response.text
    stored = row(world, user)
    assert (stored.department_id, stored.first_name, stored.job_title) == (
        world.departments["support"],
        "Head",
        "Lead",
    )
    assert member_of(world, user) == {world.groups["Managers"]}
