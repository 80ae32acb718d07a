"""Microsoft Entra ID's provisioning requests (its SCIM validator and compatibility notes),
black-box against the real server on both databases, with learndir-side checks."""

from __future__ import annotations

import uuid
from typing import Any

from tests.api.scim.support import (  # noqa: F401
    ENTERPRISE,
    GROUP_URN,
    PATCH_OP,
    USER_URN,
    Scim,
    department_of,
    field_value,
    patch_body,
    shared_scim,
    unique,
    user_row,
)

MS_GROUP_URN = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"


def _entra_user(user_name: str, **extra: Any) -> dict[str, Any]:
    """Entra's POST /Users: its default mapping, attribute names in Entra's spelling."""
    return {
        "schemas": [USER_URN, ENTERPRISE],
        "externalId": f"{user_name}-ext",
        "UserName": f"{user_name}@contoso.example",
        "active": True,
        "displayName": "Entra User",
        "emails": [{"Primary": True, "type": "work", "value": f"{user_name}@contoso.example"}],
        "name": {"givenName": "Entra", "familyName": "User"},
        **extra,
    }


def _ids(scim: Scim, flt: str) -> list[str]:
    response = scim.client.get("/Users", params={"filter": flt})
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["Resources"]]


def _ok(response: Any) -> None:
    """Entra takes 200 with the resource or 204 without."""
    assert response.status_code in (200, 204), response.text


def test_connection_test_on_a_random_guid_is_empty(shared_scim: Scim) -> None:  # noqa: F811
    response = shared_scim.client.get("/Users", params={"filter": f'userName eq "{uuid.uuid4()}"'})
    assert response.status_code == 200, response.text
    assert response.json()["totalResults"] == 0
    assert response.json()["Resources"] == []


def test_case_insensitive_post_and_matching_filters(shared_scim: Scim) -> None:  # noqa: F811
    scim = shared_scim
    name = unique("entra.match")
    created = scim.client.post("/Users", json=_entra_user(name))
    assert created.status_code == 201, created.text
    user = created.json()
    uid = user["id"]
    assert user["userName"] == f"{name}@contoso.example"
    assert user["emails"][0]["primary"] is True
    row = user_row(scim, uid)
    assert (row.login, row.email) == (f"{name}@contoso.example", f"{name}@contoso.example")

    mail = f"{name}@contoso.example"
    assert _ids(scim, f'externalId eq "{name}-ext"') == [uid]
    assert _ids(scim, f'userName eq "{mail.upper()}"') == [uid]
    assert _ids(scim, f'emails[type eq "work"].value eq "{mail}"') == [uid]
    assert _ids(scim, f'externalId eq "{name}-ext" and userName eq "{mail}"') == [uid]
    assert _ids(scim, f'externalId eq "{name}-ext" and userName eq "other@x.example"') == []

    # Deactivated with Entra's default job: a string "False", capitalised op.
    off = scim.client.patch(
        f"/Users/{uid}", json=patch_body({"op": "Replace", "path": "active", "value": "False"})
    )
    _ok(off)
    assert user_row(scim, uid).status == 3
    assert scim.client.get(f"/Users/{uid}").json()["active"] is False
    # Still found by every lookup.
    assert _ids(scim, f'externalId eq "{name}-ext"') == [uid]
    assert _ids(scim, f'userName eq "{mail}"') == [uid]
    assert _ids(scim, f'emails[type eq "work"].value eq "{mail}"') == [uid]

    deleted = scim.client.delete(f"/Users/{uid}")
    assert deleted.status_code == 204, deleted.text
    assert user_row(scim, uid) is None
    assert scim.client.get(f"/Users/{uid}").status_code == 404


def test_capitalised_ops_and_dotted_keys(shared_scim: Scim) -> None:  # noqa: F811
    scim = shared_scim
    name = unique("entra.patch")
    user = scim.client.post("/Users", json=_entra_user(name, emails=[])).json()
    uid = user["id"]
    number = uuid.uuid4().hex[:10]
    replaced = scim.client.patch(
        f"/Users/{uid}",
        json=patch_body(
            {
                "op": "Replace",
                "value": {
                    "name.givenName": "Renamed",
                    f"{ENTERPRISE}:employeeNumber": number,
                    "active": False,
                },
            }
        ),
    )
    _ok(replaced)
    row = user_row(scim, uid)
    assert (row.first_name, row.status) == ("Renamed", 3)
    assert field_value(scim, uid, "employee_id") == number
    read = scim.client.get(f"/Users/{uid}").json()
    assert read[ENTERPRISE]["employeeNumber"] == number
    assert read["name"]["givenName"] == "Renamed"

    # A work e-mail added through a filtered path on a user that has none.
    work = f"{name}.work@contoso.example"
    added = scim.client.patch(
        f"/Users/{uid}",
        json=patch_body({"op": "Add", "path": 'emails[type eq "work"].value', "value": work}),
    )
    _ok(added)
    assert user_row(scim, uid).email == work
    emails = scim.client.get(f"/Users/{uid}").json()["emails"]
    assert next(e for e in emails if e.get("type") == "work")["value"] == work

    # Entra changes the work e-mail with Add too; a taken address is a uniqueness conflict.
    changed = f"{name}.new@contoso.example"
    _ok(
        scim.client.patch(
            f"/Users/{uid}",
            json=patch_body(
                {"op": "Add", "path": 'emails[type eq "work"].value', "value": changed}
            ),
        )
    )
    assert user_row(scim, uid).email == changed
    other = scim.user(unique("entra.other"))
    taken = scim.client.patch(
        f"/Users/{other['id']}",
        json=patch_body({"op": "Add", "path": 'emails[type eq "work"].value', "value": changed}),
    )
    assert taken.status_code == 409 and taken.json()["scimType"] == "uniqueness"
    # employeeNumber is the account's unique employee_id field.
    dup = scim.client.patch(
        f"/Users/{other['id']}",
        json=patch_body({"op": "Add", "path": f"{ENTERPRISE}:employeeNumber", "value": number}),
    )
    assert dup.status_code == 409 and dup.json()["scimType"] == "uniqueness"
    assert field_value(scim, other["id"], "employee_id") is None
    found = scim.client.get(
        "/Users", params={"filter": f'{ENTERPRISE}:employeeNumber eq "{number}"'}
    )
    assert [r["id"] for r in found.json()["Resources"]] == [uid]

    titled = scim.client.patch(
        f"/Users/{uid}",
        json=patch_body(
            {"op": "Add", "path": "title", "value": "Engineer"},
            {"op": "Replace", "path": "name.familyName", "value": "Changed"},
        ),
    )
    _ok(titled)
    assert (user_row(scim, uid).job_title, user_row(scim, uid).last_name) == (
        "Engineer",
        "Changed",
    )
    removed = scim.client.patch(f"/Users/{uid}", json=patch_body({"op": "Remove", "path": "title"}))
    _ok(removed)
    assert not user_row(scim, uid).job_title
    assert "title" not in scim.client.get(f"/Users/{uid}").json()


def test_manager_as_a_plain_id(shared_scim: Scim) -> None:  # noqa: F811
    scim = shared_scim
    boss, other, worker = (scim.user(unique(f"entra.mgr{i}"))["id"] for i in range(3))
    path = f"{ENTERPRISE}:manager"

    _ok(
        scim.client.patch(
            f"/Users/{worker}", json=patch_body({"op": "Add", "path": path, "value": boss})
        )
    )
    row = user_row(scim, worker)
    assert (row.subordination_type, row.supervisor_id) == ("manual", boss)
    assert scim.client.get(f"/Users/{worker}").json()[ENTERPRISE]["manager"]["value"] == boss

    _ok(
        scim.client.patch(
            f"/Users/{worker}", json=patch_body({"op": "Replace", "path": path, "value": other})
        )
    )
    row = user_row(scim, worker)
    assert (row.subordination_type, row.supervisor_id) == ("manual", other)

    _ok(
        scim.client.patch(
            f"/Users/{worker}", json=patch_body({"op": "Replace", "path": path, "value": ""})
        )
    )
    row = user_row(scim, worker)
    assert row.subordination_type != "manual" and row.supervisor_id is None
    assert "manager" not in scim.client.get(f"/Users/{worker}").json().get(ENTERPRISE, {})


def test_department_by_name_code_or_created(shared_scim: Scim) -> None:  # noqa: F811
    scim = shared_scim
    by_name = scim.client.post(
        "/Users", json=_entra_user(unique("entra.dn"), **{ENTERPRISE: {"department": "Sales EU"}})
    )
    assert by_name.status_code == 201, by_name.text
    assert department_of(scim, by_name.json()["id"]).code == "sales-eu"

    by_code = scim.client.post(
        "/Users", json=_entra_user(unique("entra.dc"), **{ENTERPRISE: {"department": "eng"}})
    )
    assert by_code.status_code == 201, by_code.text
    assert department_of(scim, by_code.json()["id"]).code == "eng"

    unknown = f"Research {uuid.uuid4().hex[:6]}"
    made = scim.client.post(
        "/Users", json=_entra_user(unique("entra.du"), **{ENTERPRISE: {"department": unknown}})
    )
    assert made.status_code == 201, made.text
    assert made.json()[ENTERPRISE]["department"] == unknown
    dept = department_of(scim, made.json()["id"])
    assert dept.name == unknown
    with scim.world.db.read() as conn:
        from sqlalchemy import select

        from learndir.db.schema import departments

        parent = conn.execute(
            select(departments.c.code, departments.c.name).where(departments.c.id == dept.parent_id)
        ).first()
    assert parent is not None
    assert (parent.code, parent.name) == ("scim-provisioned", "Provisioned users")

    # Changed by PATCH to an existing department's code.
    uid = made.json()["id"]
    _ok(
        scim.client.patch(
            f"/Users/{uid}",
            json=patch_body(
                {"op": "Replace", "path": f"{ENTERPRISE}:department", "value": "sales"}
            ),
        )
    )
    assert department_of(scim, uid).code == "sales"


def test_groups_as_entra_sends_them(shared_scim: Scim) -> None:  # noqa: F811
    scim = shared_scim
    a, b = (scim.user(unique(f"entra.gm{i}"))["id"] for i in range(2))
    created = scim.client.post(
        "/Groups",
        json={
            "schemas": [GROUP_URN, MS_GROUP_URN],
            "externalId": str(uuid.uuid4()),
            "displayName": unique("Entra Group"),
            "members": [{"value": a, "$ref": None}],
        },
    )
    assert created.status_code == 201, created.text
    gid = created.json()["id"]
    assert [m["value"] for m in created.json()["members"]] == [a]

    _ok(
        scim.client.patch(
            f"/Groups/{gid}",
            json=patch_body(
                {"op": "Add", "path": "members", "value": [{"value": b, "$ref": None}]}
            ),
        )
    )
    listed = scim.client.get("/Groups", params={"excludedAttributes": "members"})
    assert listed.status_code == 200, listed.text
    mine = [g for g in listed.json()["Resources"] if g["id"] == gid]
    assert len(mine) == 1 and "members" not in mine[0]
    assert all("members" not in g for g in listed.json()["Resources"])
    one = scim.client.get(f"/Groups/{gid}", params={"excludedAttributes": "members"})
    assert one.status_code == 200 and "members" not in one.json()

    _ok(
        scim.client.patch(
            f"/Groups/{gid}",
            json=patch_body({"op": "Remove", "path": "members", "value": [{"value": a}]}),
        )
    )
    left = scim.client.get(f"/Groups/{gid}").json()
    assert [m["value"] for m in left.get("members", [])] == [b]

    renamed = unique("Entra Renamed")
    _ok(
        scim.client.patch(
            f"/Groups/{gid}",
            json=patch_body({"op": "Replace", "path": "displayName", "value": renamed}),
        )
    )
    assert scim.client.get(f"/Groups/{gid}").json()["displayName"] == renamed
    by_name = scim.client.get("/Groups", params={"filter": f'displayName eq "{renamed}"'})
    assert [g["id"] for g in by_name.json()["Resources"]] == [gid]
