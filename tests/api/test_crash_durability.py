"""What a server acknowledged survives its death: addUser load from several clients against a
real `learndir serve`, the process killed with SIGKILL mid-load (no shutdown of any kind), a
new server started on the same database. Every user whose addUser was answered 201 is there,
whole, and the database is consistent: each user has its role, fields and audit record, the
seat counter matches the active users, and SQLite's own checks pass. A request in flight at
the kill may have happened or not, but never half."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, text

from learndir.db.engine import Database
from learndir.db.schema import account_seats, audit_log, user_field_values, user_roles, users
from tests.conftest import BACKENDS, migrated_database
from tests.support import World, acme_spec, make_world, start_server, stop_server

CLIENTS = 4
# Load runs until this many users are acknowledged (or this long), then the server is killed.
ACKNOWLEDGED_BEFORE_KILL = 150
LOAD_SECONDS = 5.0


@pytest.fixture(params=BACKENDS)
def own_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, _pg_ok: bool
) -> Iterator[str]:
    """A database of its own: the servers killed here share it with nothing else."""
    yield from migrated_database(request.param, tmp_path_factory, _pg_ok, "learndir_crash")


class Load:
    """Clients adding users until the server dies under them."""

    def __init__(self, base_url: str, w: World) -> None:
        self.base_url = base_url
        self.w = w
        self.acknowledged: dict[str, str] = {}  # login -> id, answered 201
        self.in_flight: set[str] = set()  # sent, but the server died before answering
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client) for _ in range(CLIENTS)]

    def _client(self) -> None:
        headers = {
            "Authorization": f"Bearer {self.w.token('owner')}",
            "Accept": "application/json",
        }
        with httpx.Client(base_url=self.base_url, headers=headers, timeout=10) as client:
            while not self.stop.is_set():
                login = f"crash.{uuid.uuid4().hex[:12]}"
                body = {
                    "departmentId": self.w.root_id,
                    "fields": {"login": login, "employee_id": login},
                }
                try:
                    response = client.post("/user", json=body)
                except httpx.TransportError:
                    with self.lock:
                        self.in_flight.add(login)
                    return
                with self.lock:
                    if response.status_code == 201:
                        self.acknowledged[login] = response.json()
                    else:
                        self.failures.append(f"{response.status_code} {response.text[:200]}")

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


def _check_consistent(db: Database, w: World) -> dict[str, str]:
    """Every user of the account is whole; returns login -> id of them all."""
    with db.read() as conn:
        rows = conn.execute(
            select(users.c.id, users.c.login, users.c.status).where(
                users.c.account_id == w.account_id
            )
        ).all()
        in_account = select(users.c.id).where(users.c.account_id == w.account_id)
        with_role = set(
            conn.execute(
                select(user_roles.c.user_id).where(user_roles.c.user_id.in_(in_account))
            ).scalars()
        )
        with_fields = set(
            conn.execute(
                select(user_field_values.c.user_id).where(
                    user_field_values.c.user_id.in_(in_account)
                )
            ).scalars()
        )
        audited = dict(
            conn.execute(
                select(audit_log.c.target_id, func.count())
                .where(audit_log.c.account_id == w.account_id)
                .where(audit_log.c.target_kind == "user")
                .group_by(audit_log.c.target_id)
            ).all()
        )
        seats = conn.execute(
            select(account_seats.c.active_users).where(account_seats.c.account_id == w.account_id)
        ).scalar_one()
        if db.url.startswith("sqlite"):
            assert conn.execute(text("PRAGMA integrity_check")).scalar_one() == "ok"
            assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
    added = {r.login: str(r.id) for r in rows if r.login.startswith("crash.")}
    for user_id in added.values():
        assert user_id in with_role, f"user {user_id} has no role"
        assert user_id in with_fields, f"user {user_id} has no field values"
        assert audited.get(user_id, 0) >= 1, f"user {user_id} has no audit record"
    assert seats == sum(1 for r in rows if r.status == 1)
    return added


def test_acknowledged_users_survive_a_killed_server(own_database: str, tmp_path: Path) -> None:
    db = Database(own_database)
    try:
        w = make_world(db, acme_spec(seatLimit=100_000))
        before = w.snapshot()["users"]
        server = start_server(own_database, tmp_path)
        load = Load(server.base_url, w)
        load.start()
        deadline = time.monotonic() + LOAD_SECONDS
        while len(load.acknowledged) < ACKNOWLEDGED_BEFORE_KILL and time.monotonic() < deadline:
            time.sleep(0.02)
        server.process.kill()  # SIGKILL: no shutdown, no flush, no goodbye
        server.process.wait(timeout=10)
        load.join()
        assert load.failures == []
        assert len(load.acknowledged) >= 50, "the load barely ran before the kill"

        restarted = start_server(own_database, tmp_path)
        try:
            present = _check_consistent(db, w)
            lost = {login for login in load.acknowledged if login not in present}
            assert lost == set(), f"{len(lost)} acknowledged users lost"
            for login, user_id in load.acknowledged.items():
                assert present[login] == user_id
            # Nothing else appeared but what was in flight at the kill.
            assert set(present) - set(load.acknowledged) <= load.in_flight
            assert w.snapshot()["users"] == before + len(present)
            print(
                f"{len(load.acknowledged)} acknowledged before the kill, all present; "
                f"{len(load.in_flight)} in flight, {len(set(present) & load.in_flight)} of "
                "them committed"
            )
            # The new server reads them and goes on adding.
            owner = {"Authorization": f"Bearer {w.token('owner')}", "Accept": "application/json"}
            with httpx.Client(base_url=restarted.base_url, headers=owner, timeout=10) as client:
                for user_id in list(load.acknowledged.values())[:: max(1, len(present) // 20)]:
                    assert client.get(f"/user/{user_id}").status_code == 200
                login = f"after.{uuid.uuid4().hex[:8]}"
                added = client.post(
                    "/user",
                    json={
                        "departmentId": w.root_id,
                        "fields": {"login": login, "employee_id": login},
                    },
                )
                assert added.status_code == 201, added.text
        finally:
            stop_server(restarted)
    finally:
        db.dispose()
