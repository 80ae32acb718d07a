"""learndir's rules over SCIM, on SQLite and PostgreSQL against a real server: the seat limit,
uniqueness, required profile fields, a department administrator's scope, read-only smart
groups, revoked tokens, `roles` that grant nothing, and the audit trail. Every refusal is
checked for its status and scimType, and for having changed nothing."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import select

from learndir.core import webhooks
from learndir.core.auth import actor_for_login
from learndir.core.groups import create_smart_group
from learndir.core.roles import RoleKind
from learndir.core.scim_tokens import create_scim_token, revoke_scim_token
from learndir.core.users.changes import INACTIVE, change_status
from learndir.db.engine import Database
from learndir.db.schema import (
    audit_log,
    events,
    outbox,
    roles,
    user_field_values,
    user_roles,
    users,
    webhook_deliveries,
    webhook_subscribers,
)
from tests.api.scim.support import (
    ENTERPRISE,
    ERROR_URN,
    LEARNDIR,
    USER_URN,
    Scim,
    demo_spec,
    open_scim,
    patch_body,
)
from tests.support import Server, account_snapshot, acme_spec

SEATS_EXCEEDED = "Number of user accounts is exceeded"
DEMO_ACTIVE = 2  # owner and sales.admin


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def _body(user_name: str, **extra: Any) -> dict[str, Any]:
    return {
        "schemas": [USER_URN],
        "userName": user_name,
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"value": f"{user_name}@example.com", "type": "work", "primary": True}],
        **extra,
    }


def assert_error(response: httpx.Response, status: int, scim_type: str | None = None) -> str:
    """The SCIM Error of a refusal; answers its detail."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/scim+json")
    body = response.json()
    assert body["schemas"] == [ERROR_URN]
    assert body["status"] == str(status)
    assert body.get("scimType") == scim_type, body
    return str(body["detail"])


def _snapshot(scim: Scim) -> dict[str, int]:
    return account_snapshot(scim.world.db, scim.world.account_id)


# ---- seat limit -------------------------------------------------------------------------


def test_seat_limit_over_scim(db: Database, server: Server) -> None:
    scim = open_scim(db, server, demo_spec(seatLimit=DEMO_ACTIVE + 1))
    tag = _tag()
    first = scim.user(f"seat1.{tag}")
    before = _snapshot(scim)
    refused = scim.client.post("/Users", json=_body(f"seat2.{tag}", active=True))
    assert SEATS_EXCEEDED in assert_error(refused, 403)
    assert _snapshot(scim) == before

    # Deactivating frees the seat; reactivating the first user over the limit is refused.
    off = scim.client.patch(
        f"/Users/{first['id']}",
        json=patch_body({"op": "replace", "path": "active", "value": False}),
    )
    assert off.status_code == 200, off.text
    assert off.json()["active"] is False
    second = scim.user(f"seat2.{tag}")
    before = _snapshot(scim)
    on = scim.client.patch(
        f"/Users/{first['id']}", json=patch_body({"op": "replace", "path": "active", "value": True})
    )
    assert SEATS_EXCEEDED in assert_error(on, 403)
    assert _snapshot(scim) == before
    assert scim.client.get(f"/Users/{first['id']}").json()["active"] is False

    # Decided: an inactive user takes no seat, so a full account still accepts one (a
    # provider pushes its suspended people too); activating them later needs a seat.
    inactive = scim.client.post("/Users", json=_body(f"seat3.{tag}", active=False))
    assert inactive.status_code == 201, inactive.text
    assert inactive.json()["active"] is False
    after = _snapshot(scim)
    assert after["users"] == before["users"] + 1
    assert after["active_users"] == before["active_users"] == DEMO_ACTIVE + 1
    on = scim.client.patch(
        f"/Users/{inactive.json()['id']}",
        json=patch_body({"op": "replace", "path": "active", "value": True}),
    )
    assert SEATS_EXCEEDED in assert_error(on, 403)
    # Freeing a seat lets it in.
    assert scim.client.delete(f"/Users/{second['id']}").status_code == 204
    on = scim.client.patch(
        f"/Users/{inactive.json()['id']}",
        json=patch_body({"op": "replace", "path": "active", "value": True}),
    )
    assert on.status_code == 200, on.text
    assert _snapshot(scim)["active_users"] == DEMO_ACTIVE + 1


# ---- uniqueness -------------------------------------------------------------------------


def test_duplicates_are_409_uniqueness(db: Database, server: Server) -> None:
    scim = open_scim(db, server, demo_spec(seatLimit=None))
    tag = _tag()
    taken = scim.user(f"Dup.{tag}", **{ENTERPRISE: {"employeeNumber": f"E-{tag}"}})
    other = scim.user(f"other.{tag}")
    before = _snapshot(scim)

    same_login = _body(f"dUP.{tag}".upper())
    same_login["emails"][0]["value"] = f"fresh1.{tag}@example.com"
    assert_error(scim.client.post("/Users", json=same_login), 409, "uniqueness")

    same_email = _body(f"fresh2.{tag}")
    same_email["emails"][0]["value"] = f"DUP.{tag}@EXAMPLE.COM"
    assert_error(scim.client.post("/Users", json=same_email), 409, "uniqueness")

    same_number = _body(f"fresh3.{tag}", **{ENTERPRISE: {"employeeNumber": f"E-{tag}"}})
    assert_error(scim.client.post("/Users", json=same_number), 409, "uniqueness")
    assert _snapshot(scim) == before

    # A PUT renaming a user onto a taken userName.
    current = scim.client.get(f"/Users/{other['id']}").json()
    renamed = {k: v for k, v in current.items() if k != "meta"}
    renamed["userName"] = taken["userName"].upper()
    assert_error(scim.client.put(f"/Users/{other['id']}", json=renamed), 409, "uniqueness")
    assert _snapshot(scim) == before
    assert scim.client.get(f"/Users/{other['id']}").json()["userName"] == f"other.{tag}"


# ---- required profile fields ------------------------------------------------------------


def test_required_profile_fields(db: Database, server: Server) -> None:
    """acme's employee_id (the Enterprise employeeNumber) and country are required. As over
    REST (tests/api/test_add_user_scenarios.py, country-field-not-required), addUser does not
    require a field of the country type; a required field of another type (cost_center,
    added here) is, under its name in learndir's extension."""
    spec = acme_spec(seatLimit=None)
    spec["profileFields"].append(
        {"name": "cost_center", "label": "Cost center", "type": "string", "required": True}
    )
    for person in spec["users"]:
        person.setdefault("fields", {})["cost_center"] = "CC-0"
    scim = open_scim(db, server, spec)
    tag = _tag()
    complete = {ENTERPRISE: {"employeeNumber": f"E-{tag}"}, LEARNDIR: {"cost_center": "CC-1"}}
    before = _snapshot(scim)
    no_number = _body(f"req.{tag}", **{LEARNDIR: {"country": "DE", "cost_center": "CC-1"}})
    detail = assert_error(scim.client.post("/Users", json=no_number), 400, "invalidValue")
    assert f"{ENTERPRISE}:employeeNumber" in detail
    no_center = _body(f"req.{tag}", **{ENTERPRISE: complete[ENTERPRISE]})
    detail = assert_error(scim.client.post("/Users", json=no_center), 400, "invalidValue")
    assert f"{LEARNDIR}:cost_center" in detail
    bad_country = _body(
        f"req.{tag}", **{**complete, LEARNDIR: {"country": "Atlantis", "cost_center": "CC-1"}}
    )
    detail = assert_error(scim.client.post("/Users", json=bad_country), 400, "invalidValue")
    assert f"{LEARNDIR}:country" in detail
    assert _snapshot(scim) == before

    created = scim.client.post(
        "/Users",
        json=_body(
            f"req.{tag}",
            **{**complete, LEARNDIR: {"country": "DE", "cost_center": "CC-1"}},
        ),
    )
    assert created.status_code == 201, created.text
    doc = created.json()
    assert doc[ENTERPRISE]["employeeNumber"] == f"E-{tag}"
    assert doc[LEARNDIR] == {"country": "DE", "cost_center": "CC-1"}
    with db.read() as conn:
        values = set(
            conn.execute(
                select(user_field_values.c.value).where(user_field_values.c.user_id == doc["id"])
            ).scalars()
        )
    assert values == {f"E-{tag}", "DE", "CC-1"}
    # Without a country, as over REST.
    no_country = scim.client.post(
        "/Users",
        json=_body(f"req2.{tag}", **{**complete, ENTERPRISE: {"employeeNumber": f"F-{tag}"}}),
    )
    assert no_country.status_code == 201, no_country.text


# ---- a department administrator's scope -------------------------------------------------


def test_department_administrator_scope(db: Database, server: Server) -> None:
    owner = open_scim(db, server, demo_spec(seatLimit=None))
    world = owner.world
    tag = _tag()
    eng_user = owner.user(f"eng.{tag}", **{ENTERPRISE: {"department": "eng"}})
    eu_user = owner.user(f"eu.{tag}", **{ENTERPRISE: {"department": "sales-eu"}})
    admin_token = create_scim_token(db, world.account_url, "sales.admin").token
    admin = owner.as_token(admin_token)

    listed = admin.get("/Users", params={"count": 1000})
    assert listed.status_code == 200, listed.text
    ids = {r["id"] for r in listed.json()["Resources"]}
    assert ids == {world.users["sales.admin"], eu_user["id"]}
    assert listed.json()["totalResults"] == 2

    assert_error(admin.get(f"/Users/{eng_user['id']}"), 404)
    found = admin.get("/Users", params={"filter": f'userName eq "eng.{tag}"'})
    assert found.status_code == 200, found.text
    assert found.json()["totalResults"] == 0
    before = _snapshot(owner)
    for response in (
        admin.patch(
            f"/Users/{eng_user['id']}",
            json=patch_body({"op": "replace", "path": "title", "value": "x"}),
        ),
        admin.put(f"/Users/{eng_user['id']}", json=_body(f"eng.{tag}")),
        admin.delete(f"/Users/{eng_user['id']}"),
    ):
        assert_error(response, 404)
    refused = admin.post(
        "/Users", json=_body(f"in-eng.{tag}", **{ENTERPRISE: {"department": "eng"}})
    )
    assert_error(refused, 403)
    assert _snapshot(owner) == before

    made = admin.post("/Users", json=_body(f"in-sales.{tag}"))
    assert made.status_code == 201, made.text
    with db.read() as conn:
        department = conn.execute(
            select(users.c.department_id).where(users.c.id == made.json()["id"])
        ).scalar_one()
    assert department == world.departments["sales"]
    # Moving a user of its scope out of it is refused.
    before = _snapshot(owner)
    moved = admin.patch(
        f"/Users/{eu_user['id']}",
        json=patch_body({"op": "replace", "path": f"{ENTERPRISE}:department", "value": "eng"}),
    )
    assert_error(moved, 403)
    assert _snapshot(owner) == before
    with db.read() as conn:
        department = conn.execute(
            select(users.c.department_id).where(users.c.id == eu_user["id"])
        ).scalar_one()
    assert department == world.departments["sales-eu"]

    # Group members outside the administrator's scope cannot be added.
    group = world.groups["Newcomers"]
    before = _snapshot(owner)
    add_eng = admin.patch(
        f"/Groups/{group}",
        json=patch_body({"op": "add", "path": "members", "value": [{"value": eng_user["id"]}]}),
    )
    assert_error(add_eng, 403)
    new_group = admin.post(
        "/Groups",
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": f"Mixed {tag}",
            "members": [{"value": eu_user["id"]}, {"value": eng_user["id"]}],
        },
    )
    assert_error(new_group, 403)
    assert _snapshot(owner) == before
    add_eu = admin.patch(
        f"/Groups/{group}",
        json=patch_body({"op": "add", "path": "members", "value": [{"value": eu_user["id"]}]}),
    )
    assert add_eu.status_code == 200, add_eu.text
    admin.close()
    owner.client.close()


# ---- smart groups -----------------------------------------------------------------------


def test_smart_groups_are_read_only(db: Database, server: Server) -> None:
    scim = open_scim(db, server, demo_spec(seatLimit=None))
    world = scim.world
    tag = _tag()
    engineer = scim.user(f"eng.{tag}", **{ENTERPRISE: {"department": "eng"}})
    outsider = scim.user(f"out.{tag}", **{ENTERPRISE: {"department": "sales"}})
    rule = {"rule": {"attributeType": 1, "operator": 2, "value": world.departments["eng"]}}
    owner = actor_for_login(db, world.account_url, "owner")
    smart = create_smart_group(db, owner, "Engineers", {"and": [{"or": [rule]}]})

    listed = scim.client.get("/Groups", params={"filter": 'displayName eq "Engineers"'})
    assert listed.status_code == 200, listed.text
    (doc,) = listed.json()["Resources"]
    assert doc["id"] == smart
    assert [m["value"] for m in doc["members"]] == [engineer["id"]]
    before = _snapshot(scim)

    add = scim.client.patch(
        f"/Groups/{smart}",
        json=patch_body({"op": "add", "path": "members", "value": [{"value": outsider["id"]}]}),
    )
    assert_error(add, 400, "mutability")
    put = {k: v for k, v in doc.items() if k != "meta"} | {"displayName": "Renamed"}
    assert_error(scim.client.put(f"/Groups/{smart}", json=put), 400, "mutability")
    assert_error(scim.client.delete(f"/Groups/{smart}"), 400, "mutability")
    assert _snapshot(scim) == before
    again = scim.client.get(f"/Groups/{smart}").json()
    assert again["displayName"] == "Engineers"
    assert [m["value"] for m in again["members"]] == [engineer["id"]]


# ---- tokens -----------------------------------------------------------------------------


def test_revoked_token_and_deactivated_user(db: Database, server: Server) -> None:
    scim = open_scim(db, server, demo_spec(seatLimit=None))
    world = scim.world
    made = create_scim_token(db, world.account_url, "sales.admin")
    client = scim.as_token(made.token)
    assert client.get("/Users").status_code == 200
    revoke_scim_token(db, made.token_id)
    assert_error(client.get("/Users"), 401)
    assert_error(client.post("/Users", json=_body(f"r.{_tag()}")), 401)

    again = scim.as_token(create_scim_token(db, world.account_url, "sales.admin").token)
    assert again.get("/Users").status_code == 200
    owner = actor_for_login(db, world.account_url, "owner")
    change_status(db, owner, [world.users["sales.admin"]], INACTIVE)
    assert_error(again.get("/Users"), 401)
    client.close()
    again.close()


# ---- roles ------------------------------------------------------------------------------


def _role_kinds(db: Database, user_id: str) -> set[str]:
    with db.read() as conn:
        return set(
            conn.execute(
                select(roles.c.kind)
                .join(user_roles, user_roles.c.role_id == roles.c.id)
                .where(user_roles.c.user_id == user_id)
            ).scalars()
        )


def test_roles_never_grant_administration(db: Database, server: Server) -> None:
    scim = open_scim(db, server, demo_spec(seatLimit=None))
    sent = [{"value": "account_administrator", "primary": True}]
    created = scim.client.post("/Users", json=_body(f"role.{_tag()}", roles=sent))
    assert created.status_code == 201, created.text
    assert created.json()["roles"] == sent
    assert _role_kinds(db, created.json()["id"]) == {RoleKind.LEARNER.value}
    # Nor does a PATCH adding one.
    patched = scim.client.patch(
        f"/Users/{created.json()['id']}",
        json=patch_body(
            {"op": "add", "path": "roles", "value": [{"value": "owner", "primary": False}]}
        ),
    )
    assert patched.status_code == 200, patched.text
    assert _role_kinds(db, created.json()["id"]) == {RoleKind.LEARNER.value}


# ---- audit ------------------------------------------------------------------------------


def test_changes_are_audited_as_the_tokens_user(db: Database, server: Server) -> None:
    """Audit records and webhook events, as a REST change leaves them."""
    scim = open_scim(db, server, demo_spec(seatLimit=None))
    world = scim.world
    owner = actor_for_login(db, world.account_url, "owner")
    webhooks.register(db, owner, "hook", "https://example.com/hook", None)
    with db.write() as conn:
        conn.execute(
            webhook_subscribers.update()
            .where(webhook_subscribers.c.account_id == world.account_id)
            .values(confirmed=True)
        )
    for kind in ("USER_REGISTERED", "USER_UPDATED", "USER_DELETED"):
        webhooks.subscribe(db, owner, "hook", {"subscriptionType": kind})
    created = scim.user(f"audit.{_tag()}")
    user_id = created["id"]
    patched = scim.client.patch(
        f"/Users/{user_id}", json=patch_body({"op": "replace", "path": "title", "value": "Chef"})
    )
    assert patched.status_code == 200, patched.text
    assert scim.client.delete(f"/Users/{user_id}").status_code == 204
    with db.read() as conn:
        rows = conn.execute(
            select(
                audit_log.c.operation,
                audit_log.c.actor_user_id,
                audit_log.c.actor_login,
                audit_log.c.interface,
                audit_log.c.credential,
            )
            .where(audit_log.c.target_id == user_id)
            .order_by(audit_log.c.id)
        ).all()
        queued = conn.execute(
            select(events.c.type, events.c.payload)
            .join(webhook_deliveries, webhook_deliveries.c.event_id == events.c.id)
            .where(events.c.account_id == world.account_id)
            .order_by(events.c.occurred_at)
        ).all()
    assert [e.type for e in queued] == ["USER_REGISTERED", "USER_UPDATED", "USER_DELETED"]
    assert all(user_id in e.payload for e in queued)
    operations = [r.operation for r in rows]
    assert operations[0] == "USER_REGISTERED"
    assert operations == ["USER_REGISTERED", "USER_UPDATED", "USER_DELETED"]
    assert operations[-1] == "USER_DELETED"
    for row in rows:
        assert row.actor_user_id == world.users["owner"]
        assert row.actor_login == "owner"
        assert row.interface == "scim"
        assert (row.credential or "").startswith("scim:")


def test_a_token_made_with_invite_invites_the_users_it_creates(
    db: Database, server: Server
) -> None:
    """`learndir scim-token create --invite`: an active user with an e-mail is sent the
    account's invitation through the outbox, as addUser's sendLoginEmail; a user without an
    e-mail or created inactive is not, and a token made without it invites nobody."""
    scim = open_scim(db, server, demo_spec(seatLimit=None))
    inviting = create_scim_token(db, scim.world.account_url, "owner", invite=True).token
    with scim.as_token(inviting) as client:
        tag = _tag()
        invited = client.post("/Users", json=_body(f"inv-{tag}")).json()["id"]
        bare = _body(f"noemail-{tag}")
        bare.pop("emails")
        no_email = client.post("/Users", json=bare).json()["id"]
        inactive = client.post("/Users", json=_body(f"off-{tag}", active=False)).json()["id"]
    quiet = scim.client.post("/Users", json=_body(f"quiet-{tag}")).json()["id"]
    with db.read() as conn:
        queued = dict(
            conn.execute(
                select(outbox.c.user_id, outbox.c.recipient).where(
                    outbox.c.user_id.in_([invited, no_email, inactive, quiet])
                )
            ).all()
        )
    assert queued == {invited: f"inv-{tag}@example.com"}
    scim.client.close()
