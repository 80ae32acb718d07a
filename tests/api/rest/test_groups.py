"""Groups and smart groups over REST JSON and XML, on SQLite and PostgreSQL: listing and
paging, details within the actor's scope, rename, delete, replacing members, smart group rules
and the membership that follows them as users are added and moved."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from learndir.core.smart_groups import SMART_MEMBERSHIP
from learndir.db.engine import Database
from tests.api.rest.directory_support import (
    auth,
    directory_snapshot,
    members_of,
    new_department,
)
from tests.support import Server, World, acme_spec, make_world
from tests.transports import Outcome, RestJson, RestXml

Transport = RestJson | RestXml


@pytest.fixture(scope="module")
def world(db: Database) -> World:
    return make_world(db, acme_spec())


@pytest.fixture(scope="module")
def other(db: Database) -> World:
    return make_world(db, acme_spec(users=[]))


@pytest.fixture(params=["rest-json", "rest-xml"])
def t(request: pytest.FixtureRequest, server: Server) -> Transport:
    return RestJson(server.base_url) if request.param == "rest-json" else RestXml(server.base_url)


def rule(kind: int, value: str, operator: int = 1, attribute: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"attributeType": kind, "operator": operator, "value": value}
    if attribute is not None:
        body["attributeId"] = attribute
    return {"rule": body}


def rules(*ands: list[dict[str, Any]]) -> dict[str, Any]:
    return {"and": [{"or": ors} for ors in ands]}


def json_call(server: Server, world: World, method: str, path: str, body: Any = None) -> Outcome:
    outcome = RestJson(server.base_url).request(method, path, auth(world), body)
    assert outcome.status < 300, outcome
    return outcome


def new_user(server: Server, world: World, department_id: str, **fields: str) -> str:
    uid = uuid.uuid4().hex[:10]
    outcome = RestJson(server.base_url).add_user(
        {
            "login": f"u{uid}",
            "departmentId": department_id,
            "fields": {"employee_id": f"E{uid}", "country": "DE", **fields},
        },
        auth(world),
    )
    assert outcome.status == 201, outcome
    assert outcome.user_id is not None
    return outcome.user_id


@dataclass(frozen=True)
class Fixture:
    smart: str  # users under Sales and its sub-departments
    mixed: str  # plain group: the account administrator and jane.doe
    followed: str  # plain group named by the rules of `follower`
    follower: str


@pytest.fixture(scope="module")
def f(server: Server, world: World) -> Fixture:
    smart = json_call(
        server,
        world,
        "POST",
        "/group/smart",
        {"name": "Sales people", "rules": rules([rule(1, world.departments["sales"], 2)])},
    ).user_id
    mixed = json_call(
        server,
        world,
        "POST",
        "/group",
        {"name": "Mixed", "userIds": [world.users["admin"], world.users["jane.doe"]]},
    ).user_id
    followed = json_call(server, world, "POST", "/group", {"name": "Followed"}).user_id
    assert followed is not None
    follower = json_call(
        server,
        world,
        "POST",
        "/group/smart",
        {"name": "Follower", "rules": rules([rule(2, followed)])},
    ).user_id
    assert smart and mixed and follower
    return Fixture(smart, mixed, followed, follower)


def detail(t: Transport, outcome: Outcome) -> dict[str, Any]:
    """DetailedGroup: in JSON the object itself, in XML its fields directly under <response>."""
    assert outcome.status == 200, outcome
    if isinstance(t, RestJson):
        assert "response" not in outcome.data
        return dict(outcome.data)
    group = outcome.data
    assert group.find("group") is None
    ids = [e.text for e in group.find("userIds").findall("id")]
    return {
        "usersCount": int(group.findtext("usersCount") or "-1"),
        "groupId": group.findtext("groupId"),
        "userIds": ids,
        "name": group.findtext("name"),
        "isSmart": group.findtext("isSmart") == "true",
    }


# ---- rejected calls -------------------------------------------------------------------------

Value = Callable[[World, World, Fixture], Any]


@dataclass(frozen=True)
class Row:
    id: str
    method: str
    path: str
    status: int
    code: str
    parameter: str | None
    path_id: Value | None = None
    body: Value | None = None
    params: dict[str, Any] | None = None
    actor: str | None = "owner"
    reason_has: str | None = None


BAD = "invalid_parameters"
DENIED = "permission_denied"
NOT_FOUND = "not_found"
UNKNOWN = "00000000-0000-4000-8000-000000000000"


def newcomers(w: World, o: World, f: Fixture) -> str:
    return w.groups["Newcomers"]


def other_group(w: World, o: World, f: Fixture) -> str:
    return o.groups["Newcomers"]


def dept_rule(value: str, operator: int = 2) -> Value:
    return lambda w, o, f: {"name": "S", "rules": rules([rule(1, value, operator)])}


ROWS = [
    Row("page-size-zero", "GET", "/groups", 400, BAD, "pageSize", params={"pageSize": 0}),
    Row("page-token-bad", "GET", "/groups", 400, BAD, "pageToken", params={"pageToken": "x"}),
    Row("page-learner", "GET", "/groups", 403, DENIED, None, actor="jane.doe"),
    Row("page-unauthenticated", "GET", "/groups", 401, "unauthenticated", None, actor=None),
    Row("get-unknown", "GET", "/group/{}", 404, NOT_FOUND, "groupId", lambda w, o, f: UNKNOWN),
    Row("get-other-account", "GET", "/group/{}", 404, NOT_FOUND, "groupId", other_group),
    Row("get-learner", "GET", "/group/{}", 403, DENIED, None, newcomers, actor="jane.doe"),
    Row("rename-no-name", "POST", "/group/{}", 400, BAD, "name", newcomers,
        lambda w, o, f: {"name": " "}),
    Row("rename-long-name", "POST", "/group/{}", 400, BAD, "name", newcomers,
        lambda w, o, f: {"name": "n" * 256}),
    Row("rename-unknown", "POST", "/group/{}", 404, NOT_FOUND, "groupId", other_group,
        lambda w, o, f: {"name": "X"}),
    Row("rename-no-right", "POST", "/group/{}", 403, DENIED, None, newcomers,
        lambda w, o, f: {"name": "X"}, actor="hr.partner"),
    Row("rename-members-outside-scope", "POST", "/group/{}", 403, DENIED, "groupId",
        lambda w, o, f: f.mixed, lambda w, o, f: {"name": "X"}, actor="sales.admin"),
    Row("rename-unauthenticated", "POST", "/group/{}", 401, "unauthenticated", None, newcomers,
        lambda w, o, f: {"name": "X"}, actor=None),
    Row("delete-unknown", "DELETE", "/group/{}", 404, NOT_FOUND, "groupId", other_group),
    Row("delete-members-outside-scope", "DELETE", "/group/{}", 403, DENIED, "groupId",
        lambda w, o, f: f.mixed, actor="sales.admin"),
    Row("rename-smart-department-admin", "POST", "/group/{}", 403, DENIED, "groupId",
        lambda w, o, f: f.follower, lambda w, o, f: {"name": "X"}, actor="sales.admin",
        reason_has="only the owner and account administrators can rename or delete it"),
    Row("delete-smart-department-admin", "DELETE", "/group/{}", 403, DENIED, "groupId",
        lambda w, o, f: f.follower, actor="sales.admin",
        reason_has="only the owner and account administrators can rename or delete it"),
    Row("delete-followed", "DELETE", "/group/{}", 400, BAD, "groupId",
        lambda w, o, f: f.followed, reason_has="Follower"),
    Row("delete-learner", "DELETE", "/group/{}", 403, DENIED, None, newcomers, actor="jane.doe"),
    Row("members-missing", "POST", "/group/{}/members", 400, BAD, "userIds", newcomers,
        lambda w, o, f: {}),
    Row("members-not-an-id", "POST", "/group/{}/members", 400, BAD, "userIds", newcomers,
        lambda w, o, f: {"userIds": ["nope"]}),
    Row("members-unknown-user", "POST", "/group/{}/members", 400, BAD, "userIds", newcomers,
        lambda w, o, f: {"userIds": [UNKNOWN]}),
    Row("members-other-account-user", "POST", "/group/{}/members", 400, BAD, "userIds",
        newcomers, lambda w, o, f: {"userIds": [o.users["owner"]]}),
    Row("members-out-of-scope", "POST", "/group/{}/members", 403, DENIED, "userIds", newcomers,
        lambda w, o, f: {"userIds": [w.users["admin"]]}, actor="sales.admin"),
    Row("members-smart", "POST", "/group/{}/members", 400, BAD, "userIds",
        lambda w, o, f: f.smart, lambda w, o, f: {"userIds": [w.users["jane.doe"]]},
        reason_has=SMART_MEMBERSHIP),
    Row("members-unknown-group", "POST", "/group/{}/members", 404, NOT_FOUND, "groupId",
        other_group, lambda w, o, f: {"userIds": []}),
    Row("smart-no-name", "POST", "/group/smart", 400, BAD, "name",
        body=lambda w, o, f: {"rules": rules([rule(1, w.root_id)])}),
    Row("smart-no-rules", "POST", "/group/smart", 400, BAD, "rules.and",
        body=lambda w, o, f: {"name": "S"}),
    Row("smart-empty-and", "POST", "/group/smart", 400, BAD, "rules.and",
        body=lambda w, o, f: {"name": "S", "rules": {"and": []}}),
    Row("smart-no-or", "POST", "/group/smart", 400, BAD, "rules.and[0].or",
        body=lambda w, o, f: {"name": "S", "rules": {"and": [{"x": "1"}]}}),
    Row("smart-bad-type", "POST", "/group/smart", 400, BAD, "rules.and[0].or[0].rule.attributeType",
        body=lambda w, o, f: {"name": "S", "rules": rules([rule(4, w.root_id)])}),
    Row("smart-bad-operator", "POST", "/group/smart", 400, BAD,
        "rules.and[0].or[0].rule.operator", body=dept_rule("x", 3)),
    Row("smart-no-value", "POST", "/group/smart", 400, BAD, "rules.and[0].or[0].rule.value",
        body=lambda w, o, f: {"name": "S",
                              "rules": rules([{"rule": {"attributeType": 1, "operator": 1}}])}),
    Row("smart-unknown-department", "POST", "/group/smart", 400, BAD,
        "rules.and[1].or[1].rule.value",
        body=lambda w, o, f: {"name": "S", "rules": rules(
            [rule(1, w.root_id)], [rule(1, w.root_id), rule(1, o.root_id)])}),
    Row("smart-not-a-department-id", "POST", "/group/smart", 400, BAD,
        "rules.and[0].or[0].rule.value", body=dept_rule("sales")),
    Row("smart-unknown-group", "POST", "/group/smart", 400, BAD, "rules.and[0].or[0].rule.value",
        body=lambda w, o, f: {"name": "S", "rules": rules([rule(2, o.groups["Newcomers"])])}),
    Row("smart-follows-smart", "POST", "/group/smart", 400, BAD, "rules.and[0].or[0].rule.value",
        body=lambda w, o, f: {"name": "S", "rules": rules([rule(2, f.smart)])}),
    Row("smart-profile-no-field", "POST", "/group/smart", 400, BAD,
        "rules.and[0].or[0].rule.attributeId",
        body=lambda w, o, f: {"name": "S", "rules": rules([rule(3, "x")])}),
    Row("smart-profile-unknown-field", "POST", "/group/smart", 400, BAD,
        "rules.and[0].or[0].rule.attributeId",
        body=lambda w, o, f: {"name": "S", "rules": rules([rule(3, "x", 1, "shoe_size")])}),
    Row("smart-department-admin", "POST", "/group/smart", 403, DENIED, None,
        body=dept_rule("x"), actor="sales.admin"),
    Row("smart-learner", "POST", "/group/smart", 403, DENIED, None, body=dept_rule("x"),
        actor="jane.doe"),
    Row("smart-unauthenticated", "POST", "/group/smart", 401, "unauthenticated", None,
        body=dept_rule("x"), actor=None),
    Row("smart-update-plain", "POST", "/group/smart/{}", 400, BAD, "groupId", newcomers,
        lambda w, o, f: {"rules": rules([rule(1, w.root_id)])}),
    Row("smart-update-unknown", "POST", "/group/smart/{}", 404, NOT_FOUND, "groupId",
        other_group, lambda w, o, f: {"rules": rules([rule(1, w.root_id)])}),
    Row("smart-update-itself", "POST", "/group/smart/{}", 400, BAD,
        "rules.and[0].or[0].rule.value", lambda w, o, f: f.smart,
        lambda w, o, f: {"rules": rules([rule(2, f.smart)])}),
    Row("smart-update-bad-rules", "POST", "/group/smart/{}", 400, BAD, "rules.and",
        lambda w, o, f: f.smart, lambda w, o, f: {"rules": {"and": []}}),
    Row("smart-update-department-admin", "POST", "/group/smart/{}", 403, DENIED, None,
        lambda w, o, f: f.smart, lambda w, o, f: {"rules": rules([rule(1, w.root_id)])},
        actor="sales.admin"),
    Row("rules-plain", "GET", "/group/smart/{}/rules", 400, BAD, "groupId", newcomers),
    Row("rules-unknown", "GET", "/group/smart/{}/rules", 404, NOT_FOUND, "groupId", other_group),
    Row("create-no-name", "POST", "/group", 400, BAD, "name", body=lambda w, o, f: {"name": ""}),
    Row("create-unknown-user", "POST", "/group", 400, BAD, "userIds",
        body=lambda w, o, f: {"name": "G", "userIds": [o.users["owner"]]}),
    Row("create-out-of-scope", "POST", "/group", 403, DENIED, "userIds",
        body=lambda w, o, f: {"name": "G", "userIds": [w.users["admin"]]}, actor="sales.admin"),
    Row("create-no-right", "POST", "/group", 403, DENIED, None,
        body=lambda w, o, f: {"name": "G"}, actor="hr.partner"),
    Row("create-unauthenticated", "POST", "/group", 401, "unauthenticated", None,
        body=lambda w, o, f: {"name": "G"}, actor=None),
    Row("list-learner", "GET", "/group", 403, DENIED, None, actor="jane.doe"),
    Row("add-user-into-smart", "POST", "/user", 400, BAD, "groups",
        body=lambda w, o, f: {"departmentId": w.root_id, "groupIds": [f.smart],
                              "fields": {"login": f"s{uuid.uuid4().hex[:8]}",
                                         "employee_id": f"S{uuid.uuid4().hex[:8]}",
                                         "country": "DE"}}),
]  # fmt: skip


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_rejected(t: Transport, world: World, other: World, f: Fixture, row: Row) -> None:
    before = directory_snapshot(world.db, world.account_id)
    path = row.path.format(row.path_id(world, other, f)) if row.path_id else row.path
    body = row.body(world, other, f) if row.body else None
    actor = auth(world, row.actor) if row.actor else None
    outcome = t.request(row.method, path, actor, body, row.params)
    assert (outcome.status, outcome.code, outcome.parameter) == (
        row.status,
        row.code,
        row.parameter,
    ), outcome
    if row.reason_has:
        assert row.reason_has in (outcome.reason or ""), outcome
    assert directory_snapshot(world.db, world.account_id) == before


# ---- valid calls --------------------------------------------------------------------------------


def test_page_through_groups(t: Transport, world: World, f: Fixture) -> None:
    seen: dict[str, bool] = {}
    token: str | None = None
    while True:
        params: dict[str, Any] = {"pageSize": 2}
        if token:
            params["pageToken"] = token
        outcome = t.request("GET", "/groups", auth(world), params=params)
        assert outcome.status == 200, outcome
        if isinstance(t, RestJson):
            items = [(g["groupId"], g["isSmart"]) for g in outcome.data["groups"]]
            token = outcome.data.get("nextPageToken")
        else:
            holder = outcome.data.find("groups")
            items = [
                (g.findtext("groupId"), g.findtext("isSmart") == "true")
                for g in holder.findall("group")
            ]
            token = outcome.data.findtext("nextPageToken")
        assert len(items) <= 2
        for group_id, is_smart in items:
            assert group_id not in seen
            seen[group_id] = is_smart
        if not token:
            break
    assert seen[world.groups["Newcomers"]] is False
    assert seen[f.smart] is True
    assert {world.groups["Managers"], f.mixed, f.followed, f.follower} <= set(seen)


def test_details_show_members_within_scope(t: Transport, world: World, f: Fixture) -> None:
    owner_view = detail(t, t.request("GET", f"/group/{f.mixed}", auth(world)))
    assert owner_view["usersCount"] == 2
    assert set(owner_view["userIds"]) == {world.users["admin"], world.users["jane.doe"]}
    assert (owner_view["groupId"], owner_view["name"], owner_view["isSmart"]) == (
        f.mixed,
        "Mixed",
        False,
    )
    admin_view = detail(t, t.request("GET", f"/group/{f.mixed}", auth(world, "sales.admin")))
    assert admin_view["usersCount"] == 1
    assert admin_view["userIds"] == [world.users["jane.doe"]]


def test_rename_and_delete(t: Transport, world: World, server: Server) -> None:
    group = json_call(server, world, "POST", "/group", {"name": "Temp"}).user_id
    assert t.request("POST", f"/group/{group}", auth(world), {"name": "Renamed"}).status == 200
    assert detail(t, t.request("GET", f"/group/{group}", auth(world)))["name"] == "Renamed"
    assert t.request("DELETE", f"/group/{group}", auth(world)).status == 204
    assert t.request("GET", f"/group/{group}", auth(world)).status == 404


def test_department_admin_changes_groups_within_scope(
    t: Transport, world: World, server: Server
) -> None:
    admin = auth(world, "sales.admin")
    inside = new_user(server, world, world.departments["sales-eu"])
    group = json_call(
        server, world, "POST", "/group", {"name": "Team", "userIds": [inside]}
    ).user_id
    assert t.request("POST", f"/group/{group}", admin, {"name": "Team EU"}).status == 200
    assert t.request("DELETE", f"/group/{group}", admin).status == 204


def test_members_are_replaced(t: Transport, world: World, server: Server) -> None:
    a, b, c = (new_user(server, world, world.departments["sales-eu"]) for _ in range(3))
    group = json_call(
        server, world, "POST", "/group", {"name": "Replace", "userIds": [a, b]}
    ).user_id
    assert (
        t.request("POST", f"/group/{group}/members", auth(world), {"userIds": [b, c]}).status == 200
    )
    assert members_of(world.db, group) == {b, c}
    assert t.request("POST", f"/group/{group}/members", auth(world), {"userIds": [c]}).status == 200
    assert members_of(world.db, group) == {c}
    assert t.request("POST", f"/group/{group}/members", auth(world), {"userIds": []}).status == 200
    assert members_of(world.db, group) == set()


def test_department_admin_replaces_only_members_within_scope(
    t: Transport, world: World, server: Server
) -> None:
    inside = new_user(server, world, world.departments["sales-us"])
    outside = new_user(server, world, world.departments["eng"])
    group = json_call(
        server, world, "POST", "/group", {"name": "Both", "userIds": [outside]}
    ).user_id
    outcome = t.request(
        "POST", f"/group/{group}/members", auth(world, "sales.admin"), {"userIds": [inside]}
    )
    assert outcome.status == 200, outcome
    assert members_of(world.db, group) == {inside, outside}


def smart_rules(t: Transport, outcome: Outcome) -> dict[str, Any]:
    """The SmartGroupRules answer decoded to plain data in either format."""
    assert outcome.status == 200, outcome
    if isinstance(t, RestJson):
        return dict(outcome.data["smartGroupRules"])
    holder = outcome.data.find("smartGroupRules")
    ands = []
    for and_item in holder.find("rules").find("and"):
        ors = []
        for or_item in and_item.find("or"):
            r = or_item.find("rule")
            found = {c.tag: c.text for c in r}
            found["attributeType"] = int(found["attributeType"])
            found["operator"] = int(found["operator"])
            ors.append({"rule": found})
        ands.append({"or": ors})
    return {"groupId": holder.findtext("groupId"), "rules": {"and": ands}}


def test_smart_group_rules_and_membership(t: Transport, world: World, server: Server) -> None:
    top = new_department(world, world.root_id, "Smart top")
    child = new_department(world, top, "Smart child")
    in_top = new_user(server, world, top, job_title="Engineer")
    in_child = new_user(server, world, child, job_title="engineer")
    side = new_department(world, world.root_id, "Smart side")
    elsewhere = new_user(server, world, side, job_title="ENGINEER")
    new_user(server, world, side, job_title="Engineering manager")
    body = {"name": "Smart", "rules": rules([rule(1, top, 2)])}
    created = t.request("POST", "/group/smart", auth(world), body)
    assert created.status == 201, created
    group = created.user_id
    assert group is not None
    assert members_of(world.db, group) == {in_top, in_child}
    got = smart_rules(t, t.request("GET", f"/group/smart/{group}/rules", auth(world)))
    assert got == {"groupId": group, "rules": body["rules"]}
    # Only that department; then (department only OR anywhere) AND job title, any case.
    changed = t.request(
        "POST", f"/group/smart/{group}", auth(world), {"rules": rules([rule(1, top)])}
    )
    assert changed.status == 200, changed
    assert members_of(world.db, group) == {in_top}
    profile = rules(
        [rule(1, top), rule(1, side)],
        [rule(3, "engineer", 1, "JOB_TITLE")],
    )
    renamed = t.request(
        "POST", f"/group/smart/{group}", auth(world), {"name": "Engineers", "rules": profile}
    )
    assert renamed.status == 200, renamed
    assert members_of(world.db, group) == {in_top, elsewhere}
    assert detail(t, t.request("GET", f"/group/{group}", auth(world)))["name"] == "Engineers"
    # The rules read back name the field by its id.
    got = smart_rules(t, t.request("GET", f"/group/smart/{group}/rules", auth(world)))
    assert got["rules"]["and"][1]["or"][0]["rule"]["attributeId"] == "JOB_TITLE"


def test_smart_membership_follows_users(t: Transport, world: World, server: Server) -> None:
    top = new_department(world, world.root_id, "Follow top")
    child = new_department(world, top, "Follow child")
    away = new_department(world, world.root_id, "Away")
    plain = json_call(server, world, "POST", "/group", {"name": "Plain"}).user_id
    assert plain is not None
    smart = json_call(
        server,
        world,
        "POST",
        "/group/smart",
        {"name": "Follow", "rules": rules([rule(1, top, 2), rule(2, plain)])},
    ).user_id
    assert smart is not None
    # Added by POST /user: a member at once.
    added = new_user(server, world, child)
    assert added in members_of(world.db, smart)
    # Moved away: no longer a member; moved back: a member again.
    moved = t.request("POST", f"/department/{away}/user/move", auth(world), {"userIds": [added]})
    assert moved.status == 204, moved
    assert added not in members_of(world.db, smart)
    # Joining the plain group the rules follow makes them a member again.
    joined = t.request("POST", f"/group/{plain}/members", auth(world), {"userIds": [added]})
    assert joined.status == 200, joined
    assert added in members_of(world.db, smart)
    left = t.request("POST", f"/group/{plain}/members", auth(world), {"userIds": []})
    assert left.status == 200, left
    assert added not in members_of(world.db, smart)
    # A moved subtree carries its users along under a "this and nested" rule.
    moved_tree = t.request(
        "POST", f"/department/{top}/department/move", auth(world), {"departmentIds": [away]}
    )
    assert moved_tree.status == 204, moved_tree
    assert added in members_of(world.db, smart)


def test_creating_calls_return_the_object(t: Transport, world: World) -> None:
    outcome = t.request(
        "POST",
        "/group/smart",
        auth(world),
        {"name": "Returned", "rules": rules([rule(1, world.root_id)])},
    )
    assert outcome.status == 201
    response = RestJson(t.client.base_url.__str__()).client.post(
        "/group/smart",
        json={"name": "Returned 2", "rules": rules([rule(1, world.root_id)])},
        headers={
            "Authorization": f"Bearer {world.token('owner')}",
            "X-Return-Object": "true",
            "Accept": "application/json",
        },
    )
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "Returned 2" and body["isSmart"] is True


def test_smart_group_rules_in_the_openapi_xml_form(world: World, server: Server) -> None:
    """Unwrapped XML arrays, as the OpenAPI writes them: each <and> is one AND node, each <or>
    inside it one OR node holding a <rule>."""
    eng, support = world.departments["eng"], world.departments["support"]
    body = (
        "<request><name>Engineering or support, with a title</name><rules>"
        f"<and><or><rule><attributeType>1</attributeType><operator>1</operator>"
        f"<value>{eng}</value></rule></or>"
        f"<or><rule><attributeType>1</attributeType><operator>2</operator>"
        f"<value>{support}</value></rule></or></and>"
        "<and><or><rule><attributeType>3</attributeType><attributeId>job_title</attributeId>"
        "<operator>1</operator><value>Engineer</value></rule></or></and>"
        "</rules></request>"
    )
    headers = {"Authorization": f"Bearer {world.token('owner')}"}
    created = RestXml(server.base_url).client.post(
        "/group/smart", content=body, headers={**headers, "Content-Type": "application/xml"}
    )
    assert created.status_code == 201, created.text
    group_id = created.text.split("<response>")[1].split("</response>")[0]
    rules = RestJson(server.base_url).request("GET", f"/group/smart/{group_id}/rules", auth(world))
    assert rules.status == 200, rules
    ands = rules.data["smartGroupRules"]["rules"]["and"]
    assert [len(node["or"]) for node in ands] == [2, 1]
    assert [r["rule"]["value"] for r in ands[0]["or"]] == [eng, support]
    assert ands[1]["or"][0]["rule"]["attributeId"] == "JOB_TITLE"
