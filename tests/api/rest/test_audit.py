"""The audit trail against a real `learndir serve`, on SQLite and PostgreSQL: a scripted day of
changes through REST and SOAP (users, departments, groups, passwords, invitations, webhook
subscribers), each found with who, from where and the values before and after; a rejected
call leaves no record; who may read it; the filters and paging of `GET /audit`; the scheduler's
changes; `learndir audit`; retention."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
import requests
import zeep
from sqlalchemy import func, select, update

from learndir.core.audit import purge_audit
from learndir.core.common import utcnow
from learndir.db.engine import Database
from learndir.db.schema import audit_log
from learndir.delivery.worker import scheduled_changes
from tests.invitations import invite_new_user, outbox_ids, send
from tests.support import Server, World, acme_spec, make_world


@pytest.fixture(scope="module")
def world(db: Database) -> World:
    return make_world(db, acme_spec())


class Client:
    """REST JSON calls as one actor, each with its own request id."""

    def __init__(self, server: Server, world: World, login: str = "owner") -> None:
        self.http = httpx.Client(
            base_url=server.base_url,
            headers={"Authorization": f"Bearer {world.token(login)}", "Accept": "application/json"},
            timeout=30,
        )
        self.last_request_id = ""

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> httpx.Response:
        self.last_request_id = uuid.uuid4().hex
        return self.http.request(
            method,
            path,
            json=body,
            params=params or None,
            headers={"X-Request-Id": self.last_request_id},
        )

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        answer = self.call(method, path, body)
        assert answer.status_code < 300, answer.text
        return answer.json() if answer.content else None

    def audit(self, **params: Any) -> dict[str, Any]:
        answer = self.call("GET", "/audit", **params)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


def records(owner: Client, target_id: str) -> list[dict[str, Any]]:
    """The target's records, oldest first."""
    return list(reversed(owner.audit(targetId=target_id)["records"]))


def change_of(record: dict[str, Any], field: str) -> tuple[Any, Any]:
    for change in record["changes"]:
        if change["field"] == field:
            return change["before"], change["after"]
    raise AssertionError(f"{field} not among {record['changes']}")


def new_user(owner: Client, world: World, **fields: str) -> str:
    uid = uuid.uuid4().hex[:10]
    body = {
        "login": f"u{uid}",
        "email": f"u{uid}@acme.test",
        "departmentId": world.departments["eng"],
        "fields": {"employee_id": f"E{uid}", "country": "DE", **fields},
    }
    return str(owner.ok("POST", "/user", body))


def test_a_day_of_user_changes_is_recorded_with_before_and_after(
    server: Server, world: World
) -> None:
    owner = Client(server, world)
    user = new_user(owner, world, first_name="Ada")
    added_by = owner.last_request_id
    owner.ok("POST", f"/user/{user}", {"fields": {"first_name": "Adele"}})
    updated_by = owner.last_request_id
    owner.ok("POST", f"/user/{user}/status", {"status": 3})
    owner.ok("POST", f"/department/{world.departments['sales']}/user/move", {"userIds": [user]})
    owner.ok("POST", f"/user/{user}/password", {"password": "Secret-Pass-77"})
    owner.ok("DELETE", f"/user/{user}")

    trail = records(owner, user)
    assert [r["operation"] for r in trail] == [
        "USER_REGISTERED",
        "USER_UPDATED",
        "USER_STATUS_CHANGED",
        "USER_MOVED",
        "USER_PASSWORD_CHANGED",
        "USER_DELETED",
    ]
    registered, updated, status, moved, password, deleted = trail
    for record in trail:
        assert record["userId"] == world.users["owner"]
        assert record["login"] == "owner"
        assert record["interface"] == "rest"
        assert record["clientAddress"] == "127.0.0.1"
        assert record["credential"].startswith("token:") or "key:" in record["credential"]
        assert record["targetType"] == "user" and record["targetId"] == user
        assert record["time"].endswith("Z")
    assert registered["requestId"] == added_by and updated["requestId"] == updated_by
    assert change_of(registered, "FIRST_NAME") == (None, "Ada")
    assert change_of(registered, "departmentId") == (None, world.departments["eng"])
    assert change_of(updated, "FIRST_NAME") == ("Ada", "Adele")
    assert change_of(status, "status") == (1, 3)
    assert change_of(moved, "departmentId") == (
        world.departments["eng"],
        world.departments["sales"],
    )
    assert change_of(password, "password") == ("(old, not shown)", "(new, not shown)")
    assert change_of(deleted, "FIRST_NAME") == ("Adele", None)
    text = json.dumps(trail)
    assert "Secret-Pass-77" not in text and "argon2" not in text


def test_departments_groups_and_subscribers_are_recorded(server: Server, world: World) -> None:
    owner = Client(server, world)
    name = f"Dept {uuid.uuid4().hex[:6]}"
    dept = str(owner.ok("POST", "/department", {"name": name, "parentDepartmentId": world.root_id}))
    owner.ok("POST", f"/department/{dept}", {"name": name + " renamed"})
    owner.ok("DELETE", f"/department/{dept}")
    trail = records(owner, dept)
    assert [r["operation"] for r in trail] == [
        "DEPARTMENT_CREATED",
        "DEPARTMENT_UPDATED",
        "DEPARTMENT_DELETED",
    ]
    assert change_of(trail[1], "name") == (name, name + " renamed")
    assert trail[0]["targetType"] == "department"

    member = new_user(owner, world)
    group = str(owner.ok("POST", "/group", {"name": f"G {uuid.uuid4().hex[:6]}"}))
    owner.ok("POST", f"/group/{group}/members", {"userIds": [member]})
    trail = records(owner, group)
    assert [r["operation"] for r in trail] == ["GROUP_CREATED", "GROUP_MEMBERS_CHANGED"]
    assert trail[1]["details"] == {"addedUserIds": [member], "removedUserIds": []}

    subscriber = f"hr-{uuid.uuid4().hex[:6]}"
    owner.ok(
        "POST",
        "/webhook/register",
        {
            "subscriberName": subscriber,
            "callbackUrl": "http://127.0.0.1:9/hook",
            "secret": "s3cr3t",
        },
    )
    found = owner.audit(operation="WEBHOOK_SUBSCRIBER_CHANGED")["records"]
    mine = [r for r in found if change_of(r, "subscriberName") == (None, subscriber)]
    assert len(mine) == 1
    assert change_of(mine[0], "secretSet") == (None, True)
    assert "s3cr3t" not in json.dumps(mine[0])


def test_soap_changes_are_recorded_as_soap(server: Server, world: World) -> None:
    session = requests.Session()
    session.headers["X-Request-Id"] = request_id = uuid.uuid4().hex
    soap = zeep.Client(
        f"{server.base_url}/soap?wsdl", transport=zeep.Transport(session=session)
    ).service
    login = f"soap{uuid.uuid4().hex[:8]}"
    user_id = soap.AddUser(
        credentials={
            "accountUrl": world.account_url,
            "email": "owner",
            "password": world.passwords["owner"],
        },
        login=login,
        password="Soap-Pass-123",
        departmentId=world.departments["eng"],
        fields={"field": [{"name": "employee_id", "value": f"S{login}"}]},
    )
    owner = Client(server, world)
    (record,) = records(owner, user_id)
    assert record["operation"] == "USER_REGISTERED"
    assert record["interface"] == "soap" and record["credential"] == "password"
    assert record["requestId"] == request_id
    assert change_of(record, "LOGIN") == (None, login)
    assert "Soap-Pass-123" not in json.dumps(record)


def test_a_rejected_call_leaves_no_record(server: Server, world: World, db: Database) -> None:
    owner = Client(server, world)
    before = _count(db, world)
    answer = owner.call(
        "POST",
        "/user",
        {"login": "owner", "departmentId": world.departments["eng"], "fields": {"country": "DE"}},
    )
    assert answer.status_code in (400, 409), answer.text
    answer = owner.call("POST", "/department", {"name": "", "parentDepartmentId": world.root_id})
    assert answer.status_code == 400
    assert _count(db, world) == before


def _count(db: Database, world: World) -> int:
    with db.read() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(audit_log)
                .where(audit_log.c.account_id == world.account_id)
            ).scalar_one()
        )


def test_only_the_owner_and_account_administrators_read_it(server: Server, world: World) -> None:
    assert Client(server, world, "admin").call("GET", "/audit").status_code == 200
    for login in ("sales.admin", "jane.doe", "hr.partner"):
        answer = Client(server, world, login).call("GET", "/audit")
        assert answer.status_code == 403, (login, answer.text)
    assert httpx.get(f"{server.base_url}/audit").status_code == 401


def test_filters_paging_and_xml(server: Server, world: World) -> None:
    owner = Client(server, world)
    users = [new_user(owner, world) for _ in range(3)]
    start = owner.audit(operation="USER_REGISTERED", pageSize=1)
    assert len(start["records"]) == 1 and start["records"][0]["targetId"] == users[-1]
    seen: list[str] = []
    token = None
    while len(seen) < 3:
        page = owner.audit(
            operation="user_registered", pageSize=2, **({"pageToken": token} if token else {})
        )
        seen.extend(r["targetId"] for r in page["records"])
        token = page["nextPageToken"]
    assert seen[:3] == list(reversed(users))

    everything = owner.audit(pageSize=1000)["records"]
    assert {r["operation"] for r in everything} >= {"ACCOUNT_CREATED", "USER_REGISTERED"}
    assert [r["id"] for r in everything] == sorted((r["id"] for r in everything), reverse=True)
    newest = everything[0]["time"]
    assert owner.audit(since=newest)["records"][-1]["time"] >= newest
    assert all(r["time"] < newest for r in owner.audit(until=newest)["records"])
    by_admin = owner.audit(userId=world.users["admin"])["records"]
    assert all(r["userId"] == world.users["admin"] for r in by_admin)

    for params, parameter in (
        ({"since": "yesterday"}, "since"),
        ({"userId": "nobody"}, "userId"),
        ({"pageToken": "bm9wZQ"}, "pageToken"),
        ({"pageSize": "0"}, "pageSize"),
    ):
        answer = owner.call("GET", "/audit", **params)
        assert answer.status_code == 400, (params, answer.text)
        assert answer.json()["parameter"] == parameter

    xml = owner.http.get("/audit", params={"pageSize": 1}, headers={"Accept": "application/xml"})
    assert xml.status_code == 200
    assert b"<records><record><id>" in xml.content


def test_cli_reads_the_trail(server: Server, world: World, database_url: str) -> None:
    owner = Client(server, world)
    user = new_user(owner, world, first_name="Cli")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "learndir",
            "audit",
            "--account-url",
            world.account_url,
            "--target",
            user,
            "--database-url",
            database_url,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert [r["operation"] for r in listed] == ["USER_REGISTERED"]
    assert change_of(listed[0], "FIRST_NAME") == (None, "Cli")
    table = subprocess.run(
        [
            sys.executable,
            "-m",
            "learndir",
            "audit",
            "--account-url",
            world.account_url,
            "--database-url",
            database_url,
            "--limit",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert table.returncode == 0 and "USER_REGISTERED" in table.stdout
    unknown = subprocess.run(
        [
            sys.executable,
            "-m",
            "learndir",
            "audit",
            "--account-url",
            "http://nowhere.test",
            "--database-url",
            database_url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unknown.returncode != 0 and "account" in unknown.stderr


def test_retention_deletes_only_older_records(db: Database) -> None:
    world = make_world(db, acme_spec())
    with db.write() as conn:
        ids = (
            conn.execute(select(audit_log.c.id).where(audit_log.c.account_id == world.account_id))
            .scalars()
            .all()
        )
        assert ids
        old = ids[: len(ids) // 2 or 1]
        conn.execute(
            update(audit_log)
            .where(audit_log.c.id.in_(old))
            .values(occurred_at=utcnow() - timedelta(days=400))
        )
    assert purge_audit(db, 0) == 0
    assert purge_audit(db, 365) >= len(old)
    with db.read() as conn:
        left = (
            conn.execute(select(audit_log.c.id).where(audit_log.c.account_id == world.account_id))
            .scalars()
            .all()
        )
    assert sorted(left) == sorted(set(ids) - set(old))


def test_scheduled_changes_are_recorded_as_the_schedulers(server: Server, world: World) -> None:
    owner = Client(server, world)
    user = new_user(owner, world)
    today = utcnow().date().isoformat()
    owner.ok("POST", f"/user/{user}/scheduled_deactivation", {"date": today})
    assert scheduled_changes(world.db, "test-worker") >= 1
    last = records(owner, user)[-1]
    assert last["operation"] == "USER_STATUS_CHANGED"
    assert last["interface"] == "scheduler" and last["userId"] is None
    assert change_of(last, "status") == (1, 3)


def test_invitations_are_recorded(server: Server, world: World) -> None:
    owner = Client(server, world)
    user = invite_new_user(world)
    owner.ok("POST", f"/user/{user}/invitation/revoke")
    owner.ok("POST", f"/user/{user}/invitation/resend", {"channel": "email"})
    raw = send(world.db, outbox_ids(world.db, user)[0])
    accepted = httpx.post(
        f"{server.base_url}/invite/{raw}",
        data={"password": "Chosen-Pass-42", "confirmation": "Chosen-Pass-42"},
        headers={"X-Request-Id": "accept-1"},
        timeout=30,
    )
    assert accepted.status_code == 200, accepted.text
    trail = records(owner, user)
    assert [r["operation"] for r in trail] == [
        "USER_REGISTERED",
        "INVITATION_REVOKED",
        "INVITATION_RESENT",
        "INVITATION_ACCEPTED",
    ]
    _, revoked, resent, accept = trail
    assert revoked["details"] == {"revoked": 1}
    assert [i["channel"] for i in resent["details"]["invitations"]] == ["email"]
    assert accept["interface"] == "invite" and accept["credential"] == "invitation"
    assert accept["userId"] == user and accept["requestId"] == "accept-1"
    assert change_of(accept, "password") == (None, "(new, not shown)")
    assert "Chosen-Pass-42" not in json.dumps(trail) and raw not in json.dumps(trail)
