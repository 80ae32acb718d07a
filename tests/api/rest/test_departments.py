"""Departments over REST JSON and XML, on SQLite and PostgreSQL: listing and paging, update,
move (subtree paths rewritten), delete, subordination and moving users, with every rejected
call leaving the account exactly as it was."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from lxml import etree

from learndir.core.departments import all_in_account
from learndir.db.engine import Database
from tests.api.rest.directory_support import (
    auth,
    department_row,
    directory_snapshot,
    new_department,
    user_department,
)
from tests.support import Server, World, acme_spec, make_world
from tests.transports import Outcome, RestJson, RestXml

Transport = RestJson | RestXml


@pytest.fixture(scope="module")
def world(db: Database) -> World:
    """Acme of its own: these tests move and delete departments."""
    return make_world(db, acme_spec())


@pytest.fixture(scope="module")
def other(db: Database) -> World:
    return make_world(db, acme_spec(users=[]))


@pytest.fixture(params=["rest-json", "rest-xml"])
def t(request: pytest.FixtureRequest, server: Server) -> Transport:
    return RestJson(server.base_url) if request.param == "rest-json" else RestXml(server.base_url)


def new_user(server: Server, world: World, department_id: str) -> str:
    uid = uuid.uuid4().hex[:10]
    outcome = RestJson(server.base_url).add_user(
        {
            "login": f"u{uid}",
            "departmentId": department_id,
            "fields": {"employee_id": f"E{uid}", "country": "DE"},
        },
        auth(world),
    )
    assert outcome.status == 201, outcome
    assert outcome.user_id is not None
    return outcome.user_id


def page(t: Transport, outcome: Outcome) -> tuple[list[str], str | None]:
    """(department ids, nextPageToken) of a DepartmentsPage in either format."""
    assert outcome.status == 200, outcome
    if isinstance(t, RestJson):
        return [d["departmentId"] for d in outcome.data["departments"]], outcome.data.get(
            "nextPageToken"
        )
    doc: etree._Element = outcome.data
    holder = doc.find("departments")
    assert holder is not None
    ids = [d.findtext("departmentId") or "" for d in holder.findall("department")]
    return ids, doc.findtext("nextPageToken")


def get_department(t: Transport, world: World, dept_id: str) -> dict[str, Any]:
    outcome = t.request("GET", f"/department/{dept_id}", auth(world))
    assert outcome.status == 200, outcome
    if isinstance(t, RestJson):
        return dict(outcome.data)
    doc: etree._Element = outcome.data

    def value(e: etree._Element) -> Any:
        return {c.tag: value(c) for c in e} if len(e) else (e.text or "")

    return {c.tag: value(c) for c in doc}


# ---- rejected calls: one table, both transports, nothing changes ------------------------------

Ids = Callable[[World, World], str]


def d(name: str) -> Ids:
    return lambda w, o: w.root_id if name == "root" else w.departments[name]


def u(login: str) -> Ids:
    return lambda w, o: w.users[login]


def other_root(w: World, o: World) -> str:
    return o.root_id


def other_owner(w: World, o: World) -> str:
    return o.users["owner"]


def unknown(w: World, o: World) -> str:
    return "00000000-0000-4000-8000-000000000000"


@dataclass(frozen=True)
class Row:
    id: str
    method: str
    path: str  # with {0}, {1}: the ids of `path_ids`
    status: int
    code: str
    parameter: str | None
    path_ids: tuple[Ids, ...] = ()
    body: Callable[[World, World], dict[str, Any]] | None = None
    params: dict[str, Any] | None = None
    actor: str | None = "owner"
    reason_has: tuple[str, ...] = ()


BAD = "invalid_parameters"
DENIED = "permission_denied"
NOT_FOUND = "not_found"

ROWS = [
    # POST /department/{id}
    Row("update-unauthenticated", "POST", "/department/{0}", 401, "unauthenticated", None,
        (d("eng"),), lambda w, o: {"name": "X"}, actor=None),
    Row("update-learner", "POST", "/department/{0}", 403, DENIED, None,
        (d("eng"),), lambda w, o: {"name": "X"}, actor="jane.doe"),
    Row("update-out-of-scope", "POST", "/department/{0}", 403, DENIED, "departmentId",
        (d("eng"),), lambda w, o: {"name": "X"}, actor="sales.admin"),
    Row("update-move-out-of-scope", "POST", "/department/{0}", 403, DENIED,
        "parentDepartmentId", (d("sales-eu"),),
        lambda w, o: {"parentDepartmentId": w.departments["eng"]}, actor="sales.admin"),
    Row("update-move-own-top", "POST", "/department/{0}", 403, DENIED, "departmentId",
        (d("sales"),), lambda w, o: {"parentDepartmentId": w.root_id}, actor="sales.admin"),
    Row("update-empty-name", "POST", "/department/{0}", 400, BAD, "name",
        (d("eng"),), lambda w, o: {"name": "  "}),
    Row("update-long-name", "POST", "/department/{0}", 400, BAD, "name",
        (d("eng"),), lambda w, o: {"name": "n" * 256}),
    Row("update-code-taken", "POST", "/department/{0}", 400, BAD, "code",
        (d("eng"),), lambda w, o: {"code": "SALES"}, reason_has=("already used",)),
    Row("update-nothing", "POST", "/department/{0}", 400, BAD, "request",
        (d("eng"),), lambda w, o: {}),
    Row("update-unknown", "POST", "/department/{0}", 404, NOT_FOUND, "departmentId",
        (unknown,), lambda w, o: {"name": "X"}),
    Row("update-other-account", "POST", "/department/{0}", 404, NOT_FOUND, "departmentId",
        (other_root,), lambda w, o: {"name": "X"}),
    Row("update-under-itself", "POST", "/department/{0}", 400, BAD, "parentDepartmentId",
        (d("sales"),), lambda w, o: {"parentDepartmentId": w.departments["sales"]},
        reason_has=("under itself",)),
    Row("update-under-descendant", "POST", "/department/{0}", 400, BAD, "parentDepartmentId",
        (d("sales"),), lambda w, o: {"parentDepartmentId": w.departments["sales-eu"]}),
    Row("update-move-root", "POST", "/department/{0}", 400, BAD, "departmentId",
        (d("root"),), lambda w, o: {"parentDepartmentId": w.departments["eng"]},
        reason_has=("root",)),
    Row("update-unknown-parent", "POST", "/department/{0}", 400, BAD, "parentDepartmentId",
        (d("eng"),), lambda w, o: {"parentDepartmentId": o.root_id}),
    # DELETE /department/{id}
    Row("delete-unauthenticated", "DELETE", "/department/{0}", 401, "unauthenticated", None,
        (d("support"),), actor=None),
    Row("delete-root", "DELETE", "/department/{0}", 400, BAD, "departmentId", (d("root"),),
        reason_has=("root",)),
    Row("delete-not-empty", "DELETE", "/department/{0}", 409, "department_not_empty",
        "departmentId", (d("sales"),), reason_has=("1 user", "2 sub-departments")),
    Row("delete-unknown", "DELETE", "/department/{0}", 404, NOT_FOUND, "departmentId",
        (unknown,)),
    Row("delete-other-account", "DELETE", "/department/{0}", 404, NOT_FOUND, "departmentId",
        (other_root,)),
    Row("delete-out-of-scope", "DELETE", "/department/{0}", 403, DENIED, "departmentId",
        (d("support"),), actor="sales.admin"),
    Row("delete-own-top", "DELETE", "/department/{0}", 403, DENIED, "departmentId",
        (d("sales"),), actor="sales.admin"),
    # GET /departments and /department/{id}
    Row("page-size-zero", "GET", "/departments", 400, BAD, "pageSize", params={"pageSize": 0}),
    Row("page-size-big", "GET", "/departments", 400, BAD, "pageSize",
        params={"pageSize": 1001}),
    Row("page-size-text", "GET", "/departments", 400, BAD, "pageSize",
        params={"pageSize": "ten"}),
    Row("page-token-bad", "GET", "/departments", 400, BAD, "pageToken",
        params={"pageToken": "not-a-token"}),
    Row("page-learner", "GET", "/departments", 403, DENIED, None, actor="jane.doe"),
    Row("page-unauthenticated", "GET", "/departments", 401, "unauthenticated", None,
        actor=None),
    Row("get-other-account", "GET", "/department/{0}", 404, NOT_FOUND, "departmentId",
        (other_root,)),
    Row("get-out-of-scope", "GET", "/department/{0}", 403, DENIED, "departmentId",
        (d("eng"),), actor="sales.admin"),
    # POST /department/{id}/subordination
    Row("sub-nothing", "POST", "/department/{0}/subordination", 400, BAD, "subordination",
        (d("eng"),), lambda w, o: {}),
    Row("sub-bad-type", "POST", "/department/{0}/subordination", 400, BAD,
        "subordination.subordinationType", (d("eng"),),
        lambda w, o: {"subordination": {"subordinationType": "boss"}}),
    Row("sub-manual-no-supervisor", "POST", "/department/{0}/subordination", 400, BAD,
        "subordination.supervisorId", (d("eng"),),
        lambda w, o: {"subordination": {"subordinationType": "manual"}}),
    Row("sub-unknown-supervisor", "POST", "/department/{0}/subordination", 400, BAD,
        "subordination.supervisorId", (d("eng"),),
        lambda w, o: {"subordination": {"subordinationType": "manual",
                                        "supervisorId": o.users["owner"]}}),
    Row("sub-inherit-with-supervisor", "POST", "/department/{0}/subordination", 400, BAD,
        "subordination.supervisorId", (d("eng"),),
        lambda w, o: {"subordination": {"subordinationType": "inherit",
                                        "supervisorId": w.users["owner"]}}),
    Row("co-sub-bad-type", "POST", "/department/{0}/subordination", 400, BAD,
        "coSubordination.subordinationType", (d("eng"),),
        lambda w, o: {"subordination": {"subordinationType": "inherit"},
                      "coSubordination": {"subordinationType": "x"}}),
    Row("sub-out-of-scope", "POST", "/department/{0}/subordination", 403, DENIED,
        "departmentId", (d("eng"),),
        lambda w, o: {"subordination": {"subordinationType": "no_supervisor"}},
        actor="sales.admin"),
    Row("sub-unknown", "POST", "/department/{0}/subordination", 404, NOT_FOUND,
        "departmentId", (other_root,),
        lambda w, o: {"subordination": {"subordinationType": "no_supervisor"}}),
    # POST /department/{id}/user/move
    Row("users-none", "POST", "/department/{0}/user/move", 400, BAD, "userIds",
        (d("eng"),), lambda w, o: {}),
    Row("users-unknown", "POST", "/department/{0}/user/move", 404, NOT_FOUND, "userIds",
        (d("eng"),), lambda w, o: {"userIds": [unknown(w, o)]}),
    Row("users-other-account", "POST", "/department/{0}/user/move", 404, NOT_FOUND,
        "userIds", (d("eng"),), lambda w, o: {"userIds": [o.users["owner"]]}),
    Row("users-all-or-nothing", "POST", "/department/{0}/user/move", 404, NOT_FOUND,
        "userIds", (d("eng"),),
        lambda w, o: {"userIds": [w.users["jane.doe"], unknown(w, o)]}),
    Row("users-unknown-target", "POST", "/department/{0}/user/move", 404, NOT_FOUND,
        "departmentId", (other_root,), lambda w, o: {"userIds": [w.users["jane.doe"]]}),
    Row("users-target-out-of-scope", "POST", "/department/{0}/user/move", 403, DENIED,
        "departmentId", (d("eng"),), lambda w, o: {"userIds": [w.users["jane.doe"]]},
        actor="sales.admin"),
    Row("users-user-out-of-scope", "POST", "/department/{0}/user/move", 403, DENIED,
        "userIds", (d("sales-us"),), lambda w, o: {"userIds": [w.users["admin"]]},
        actor="sales.admin"),
    Row("users-learner", "POST", "/department/{0}/user/move", 403, DENIED, None,
        (d("sales-us"),), lambda w, o: {"userIds": [w.users["jane.doe"]]}, actor="jane.doe"),
    Row("users-no-edit-right", "POST", "/department/{0}/user/move", 403, DENIED, None,
        (d("eng"),), lambda w, o: {"userIds": [w.users["hr.partner"]]}, actor="hr.partner"),
    # POST /department/{parentId}/department/move
    Row("move-none", "POST", "/department/{0}/department/move", 400, BAD, "departmentIds",
        (d("eng"),), lambda w, o: {}),
    Row("move-cycle", "POST", "/department/{0}/department/move", 400, BAD, "parentId",
        (d("sales-eu"),), lambda w, o: {"departmentIds": [w.departments["sales"]]},
        reason_has=("under itself or its own sub-departments",)),
    Row("move-root", "POST", "/department/{0}/department/move", 400, BAD, "departmentIds",
        (d("eng"),), lambda w, o: {"departmentIds": [w.root_id]}),
    Row("move-unknown-parent", "POST", "/department/{0}/department/move", 404, NOT_FOUND,
        "parentId", (other_root,), lambda w, o: {"departmentIds": [w.departments["eng"]]}),
    Row("move-unknown-department", "POST", "/department/{0}/department/move", 404, NOT_FOUND,
        "departmentIds", (d("eng"),), lambda w, o: {"departmentIds": [o.root_id]}),
    Row("move-all-or-nothing", "POST", "/department/{0}/department/move", 400, BAD, "parentId",
        (d("eng"),),
        lambda w, o: {"departmentIds": [w.departments["support"], w.departments["eng"]]}),
    Row("move-out-of-scope", "POST", "/department/{0}/department/move", 403, DENIED,
        "departmentIds", (d("sales-us"),), lambda w, o: {"departmentIds": [w.departments["eng"]]},
        actor="sales.admin"),
    Row("move-parent-out-of-scope", "POST", "/department/{0}/department/move", 403, DENIED,
        "parentId", (d("eng"),), lambda w, o: {"departmentIds": [w.departments["sales-eu"]]},
        actor="sales.admin"),
    Row("move-unauthenticated", "POST", "/department/{0}/department/move", 401,
        "unauthenticated", None, (d("eng"),),
        lambda w, o: {"departmentIds": [w.departments["support"]]}, actor=None),
]  # fmt: skip


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_rejected(t: Transport, world: World, other: World, row: Row) -> None:
    before = directory_snapshot(world.db, world.account_id)
    path = row.path.format(*(f(world, other) for f in row.path_ids))
    body = row.body(world, other) if row.body else None
    actor = auth(world, row.actor) if row.actor else None
    outcome = t.request(row.method, path, actor, body, row.params)
    assert (outcome.status, outcome.code, outcome.parameter) == (
        row.status,
        row.code,
        row.parameter,
    ), outcome
    for text in row.reason_has:
        assert text in (outcome.reason or ""), outcome
    assert directory_snapshot(world.db, world.account_id) == before


# ---- valid calls --------------------------------------------------------------------------------


def test_page_through_all_departments(t: Transport, world: World) -> None:
    seen: list[str] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {"pageSize": 2}
        if token:
            params["pageToken"] = token
        ids, token = page(t, t.request("GET", "/departments", auth(world), params=params))
        assert len(ids) <= 2
        seen.extend(ids)
        if not token:
            break
    with world.db.read() as conn:
        everything = {dep.id for dep in all_in_account(conn, world.account_id)}
    assert len(seen) == len(set(seen))
    assert set(seen) == everything
    assert seen == sorted(seen)


def test_department_admin_pages_only_their_subtree(t: Transport, world: World) -> None:
    ids, token = page(t, t.request("GET", "/departments", auth(world, "sales.admin")))
    assert token is None
    assert world.departments["sales"] in ids
    assert world.departments["sales-eu"] in ids
    assert world.departments["eng"] not in ids
    assert world.root_id not in ids


def test_update_name_and_code(t: Transport, world: World) -> None:
    dept = new_department(world, world.departments["eng"], "Platform", f"pl-{uuid.uuid4().hex}")
    code = f"PF-{uuid.uuid4().hex[:6]}"
    outcome = t.request("POST", f"/department/{dept}", auth(world), {"name": "Core", "code": code})
    assert outcome.status == 204, outcome
    got = get_department(t, world, dept)
    assert (got["name"], got["code"]) == ("Core", code)
    # Its own code again, in another case, is no conflict; an empty code removes it.
    assert (
        t.request("POST", f"/department/{dept}", auth(world), {"code": code.lower()}).status == 204
    )
    assert t.request("POST", f"/department/{dept}", auth(world), {"code": ""}).status == 204
    assert "code" not in get_department(t, world, dept)


def test_move_rewrites_the_subtree(t: Transport, world: World) -> None:
    a = new_department(world, world.root_id, "A")
    a1 = new_department(world, a, "A1")
    a11 = new_department(world, a1, "A11")
    b = new_department(world, world.departments["support"], "B")
    outcome = t.request("POST", f"/department/{a}", auth(world), {"parentDepartmentId": b})
    assert outcome.status == 204, outcome
    b_path = department_row(world.db, b).path
    assert department_row(world.db, a).parent_id == b
    assert department_row(world.db, a).path == f"{b_path}{a}/"
    assert department_row(world.db, a11).path == f"{b_path}{a}/{a1}/{a11}/"
    assert get_department(t, world, a)["parentDepartmentId"] == b


def test_move_departments_under_a_parent(t: Transport, world: World) -> None:
    c = new_department(world, world.root_id, "C")
    c1 = new_department(world, c, "C1")
    e = new_department(world, world.root_id, "E")
    parent = new_department(world, world.departments["eng"], "P")
    for key in ("departmentIds", "departmnetIds"):  # the OpenAPI's own spelling works too
        target = parent if key == "departmentIds" else world.root_id
        outcome = t.request(
            "POST", f"/department/{target}/department/move", auth(world), {key: [c, e]}
        )
        assert outcome.status == 204, outcome
        target_path = department_row(world.db, target).path
        assert department_row(world.db, c).path == f"{target_path}{c}/"
        assert department_row(world.db, c1).path == f"{target_path}{c}/{c1}/"
        assert department_row(world.db, e).parent_id == target


def test_department_admin_works_inside_their_subtree(t: Transport, world: World) -> None:
    admin = auth(world, "sales.admin")
    f = new_department(world, world.departments["sales-eu"], "F")
    moved = t.request(
        "POST",
        f"/department/{world.departments['sales-us']}/department/move",
        admin,
        {"departmentIds": [f]},
    )
    assert moved.status == 204, moved
    assert department_row(world.db, f).parent_id == world.departments["sales-us"]
    assert t.request("POST", f"/department/{f}", admin, {"name": "F2"}).status == 204
    assert t.request("DELETE", f"/department/{f}", admin).status == 204
    assert department_row(world.db, f) is None


def test_delete_empty_department(t: Transport, world: World) -> None:
    dept = new_department(world, world.departments["support"], "Gone")
    outcome = t.request("DELETE", f"/department/{dept}", auth(world))
    assert outcome.status == 204, outcome
    assert t.request("GET", f"/department/{dept}", auth(world)).status == 404


def test_delete_department_someone_manages(t: Transport, world: World, server: Server) -> None:
    dept = new_department(world, world.departments["support"], "Managed")
    uid = uuid.uuid4().hex[:10]
    added = RestJson(server.base_url).add_user(
        {
            "login": f"m{uid}",
            "departmentId": world.root_id,
            "role": "department_administrator",
            "manageableDepartmentIds": [dept],
            "fields": {"employee_id": f"M{uid}", "country": "DE"},
        },
        auth(world),
    )
    assert added.status == 201, added
    before = directory_snapshot(world.db, world.account_id)
    outcome = t.request("DELETE", f"/department/{dept}", auth(world))
    assert (outcome.status, outcome.parameter) == (400, "departmentId"), outcome
    assert "manage" in (outcome.reason or "")
    assert directory_snapshot(world.db, world.account_id) == before


def test_subordination(t: Transport, world: World) -> None:
    dept = new_department(world, world.departments["support"], "Sub")
    supervisor = world.users["jane.doe"]
    outcome = t.request(
        "POST",
        f"/department/{dept}/subordination",
        auth(world),
        {
            "subordination": {"subordinationType": "manual", "supervisorId": supervisor},
            "coSubordination": {"subordinationType": "no_supervisor"},
        },
    )
    assert outcome.status == 204, outcome
    got = get_department(t, world, dept)
    assert got["subordination"] == {"subordinationType": "manual", "supervisorId": supervisor}
    assert got["coSubordination"] == {"subordinationType": "no_supervisor"}
    reset = t.request(
        "POST",
        f"/department/{dept}/subordination",
        auth(world),
        {"subordination": {"subordinationType": "inherit"}},
    )
    assert reset.status == 204, reset
    got = get_department(t, world, dept)
    assert got["subordination"] == {"subordinationType": "inherit"}
    assert got["coSubordination"] == {"subordinationType": "no_supervisor"}
    assert department_row(world.db, dept).subordination_type is None


def test_move_users(t: Transport, world: World, server: Server) -> None:
    source = new_department(world, world.departments["sales-eu"], "Src")
    users = [new_user(server, world, source) for _ in range(2)]
    outcome = t.request(
        "POST",
        f"/department/{world.departments['sales-us']}/user/move",
        auth(world, "sales.admin"),
        {"userIds": users},
    )
    assert outcome.status == 204, outcome
    assert {user_department(world.db, x) for x in users} == {world.departments["sales-us"]}
    # A single id in XML (<userIds><id>..</id></userIds>) is a list too.
    back = t.request("POST", f"/department/{source}/user/move", auth(world), {"userIds": users[:1]})
    assert back.status == 204, back
    assert user_department(world.db, users[0]) == source
