"""Okta's SCIM 2.0 sequence (its Runscope spec test and provisioning docs), black-box against the
real server on both databases, with learndir-side checks of what each request changed."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from learndir.db.engine import Database
from tests.api.scim.support import (  # noqa: F401
    ERROR_URN,
    GROUP_URN,
    LIST_URN,
    PATCH_OP,
    SCIM_JSON,
    USER_URN,
    Scim,
    demo_spec,
    open_scim,
    patch_body,
    shared_scim,
    unique,
    user_row,
)
from tests.support import Server

PASSWORD = "Okta-Sync-Pass-1"


def _okta_user(user_name: str, **extra: Any) -> dict[str, Any]:
    """The body of Okta's POST /Users."""
    return {
        "schemas": [USER_URN],
        "userName": user_name,
        "name": {"givenName": "Jane", "familyName": "Doe"},
        "emails": [{"primary": True, "value": f"{user_name}@example.com", "type": "work"}],
        "externalId": f"00u{uuid.uuid4().hex[:17]}",
        "locale": "en-US",
        "active": True,
        "groups": [],
        **extra,
    }


def _lookup(scim: Scim, user_name: str) -> dict[str, Any]:
    response = scim.client.get(
        "/Users",
        params={"filter": f'userName eq "{user_name}"', "startIndex": 1, "count": 100},
    )
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def test_connection_test_lists_a_page_of_two(shared_scim: Scim) -> None:  # noqa: F811
    response = shared_scim.client.get("/Users", params={"startIndex": 1, "count": 2})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(SCIM_JSON)
    body = response.json()
    assert body["schemas"] == [LIST_URN]
    assert isinstance(body["totalResults"], int) and body["totalResults"] >= 2
    assert body["startIndex"] == 1
    assert body["itemsPerPage"] == len(body["Resources"]) == 2


def test_create_lookup_duplicate_and_replace(shared_scim: Scim) -> None:  # noqa: F811
    scim = shared_scim
    user_name = f"Jane.Doe.{uuid.uuid4().hex[:6]}"
    empty = _lookup(scim, user_name)
    assert empty["totalResults"] == 0
    assert empty["Resources"] == []

    body = _okta_user(user_name, password=PASSWORD)
    created = scim.client.post("/Users", json=body)
    assert created.status_code == 201, created.text
    assert created.headers["content-type"].startswith(SCIM_JSON)
    assert PASSWORD not in created.text
    user = created.json()
    assert created.headers["location"] == user["meta"]["location"]
    assert created.headers["location"].endswith(f"/Users/{user['id']}")
    assert created.headers["etag"] == user["meta"]["version"]
    assert user["userName"] == user_name
    assert user["externalId"] == body["externalId"]
    assert user["active"] is True
    assert "password" not in user
    row = user_row(scim, user["id"])
    assert (row.login, row.first_name, row.last_name) == (user_name, "Jane", "Doe")
    assert row.password_hash and PASSWORD not in row.password_hash

    # userName filters are case-insensitive.
    found = _lookup(scim, user_name.lower())
    assert found["totalResults"] == 1
    assert [r["id"] for r in found["Resources"]] == [user["id"]]

    duplicate = scim.client.post("/Users", json=_okta_user(user_name.upper()))
    assert duplicate.status_code == 409, duplicate.text
    error = duplicate.json()
    assert error["schemas"] == [ERROR_URN]
    assert error["status"] == "409"
    assert error["scimType"] == "uniqueness"

    # PUT the whole object as read, with a new name and title.
    read = scim.client.get(f"/Users/{user['id']}")
    assert read.status_code == 200, read.text
    whole = read.json()
    whole["name"] = {"givenName": "Janet", "familyName": "Doe-Smith"}
    whole["title"] = "Account Executive"
    replaced = scim.client.put(f"/Users/{user['id']}", json=whole)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["name"]["givenName"] == "Janet"
    assert replaced.json()["title"] == "Account Executive"
    row = user_row(scim, user["id"])
    assert (row.first_name, row.last_name, row.job_title) == (
        "Janet",
        "Doe-Smith",
        "Account Executive",
    )


def test_deactivate_reactivate_and_password_sync(shared_scim: Scim) -> None:  # noqa: F811
    scim = shared_scim
    user = scim.user(unique("okta.status"))
    uid = user["id"]
    before = user_row(scim, uid).password_hash

    off = scim.client.patch(
        f"/Users/{uid}", json=patch_body({"op": "replace", "value": {"active": False}})
    )
    assert off.status_code == 200, off.text
    assert off.json()["active"] is False
    assert user_row(scim, uid).status == 3
    assert scim.client.get(f"/Users/{uid}").json()["active"] is False
    # A deactivated user is still found by Okta's lookup.
    found = _lookup(scim, user["userName"])
    assert [r["id"] for r in found["Resources"]] == [uid]
    assert found["Resources"][0]["active"] is False

    on = scim.client.patch(
        f"/Users/{uid}", json=patch_body({"op": "replace", "value": {"active": True}})
    )
    assert on.status_code == 200, on.text
    assert on.json()["active"] is True
    assert user_row(scim, uid).status == 1

    synced = scim.client.patch(
        f"/Users/{uid}", json=patch_body({"op": "replace", "value": {"password": PASSWORD}})
    )
    assert synced.status_code == 200, synced.text
    assert PASSWORD not in synced.text
    assert "password" not in synced.json()
    after = user_row(scim, uid).password_hash
    assert after is not None and after != before and PASSWORD not in after
    assert PASSWORD not in scim.client.get(f"/Users/{uid}").text

    # Okta's PUT may carry the password too.
    whole = {**scim.client.get(f"/Users/{uid}").json(), "password": "Okta-Put-Pass-2"}
    put = scim.client.put(f"/Users/{uid}", json=whole)
    assert put.status_code == 200, put.text
    assert "Okta-Put-Pass-2" not in put.text
    assert user_row(scim, uid).password_hash not in (None, after)


@pytest.fixture(scope="module")
def crowded(db: Database, server: Server) -> Any:
    """An account with 250 more users than the demo's, made in one go."""
    spec = demo_spec(seatLimit=None)
    spec["users"] = [
        *spec.get("users", []),
        *({"login": f"import.{i:03}", "email": f"import.{i:03}@example.com"} for i in range(250)),
    ]
    opened = open_scim(db, server, spec)
    yield opened
    opened.client.close()


def test_import_pages_of_100_are_stable_without_gaps(crowded: Scim) -> None:
    total = len(crowded.world.users)
    assert total >= 251
    seen: list[str] = []
    start = 1
    while True:
        response = crowded.client.get("/Users", params={"startIndex": start, "count": 100})
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["totalResults"] == total
        assert isinstance(page["itemsPerPage"], int)
        assert page["itemsPerPage"] == len(page["Resources"]) == min(100, total - start + 1)
        assert page["startIndex"] == start
        seen += [r["id"] for r in page["Resources"]]
        start += 100
        if start > total:
            break
    assert len(seen) == len(set(seen)) == total
    assert set(seen) == set(crowded.world.users.values())
    # The same page read again is the same page.
    again = crowded.client.get("/Users", params={"startIndex": 101, "count": 100}).json()
    assert [r["id"] for r in again["Resources"]] == seen[100:200]


def test_group_lifecycle(shared_scim: Scim) -> None:  # noqa: F811
    scim = shared_scim
    a, b, c = (scim.user(unique(f"okta.member{i}"))["id"] for i in range(3))
    created = scim.client.post(
        "/Groups", json={"schemas": [GROUP_URN], "displayName": unique("Okta"), "members": []}
    )
    assert created.status_code == 201, created.text
    group = created.json()
    gid = group["id"]
    assert created.headers["location"].endswith(f"/Groups/{gid}")
    assert group.get("members", []) == []

    def members() -> list[str]:
        read = scim.client.get(f"/Groups/{gid}")
        assert read.status_code == 200, read.text
        return sorted(m["value"] for m in read.json().get("members", []))

    new_name = unique("Okta Renamed")
    renamed = scim.client.patch(
        f"/Groups/{gid}",
        json=patch_body({"op": "replace", "value": {"id": gid, "displayName": new_name}}),
    )
    assert renamed.status_code in (200, 204), renamed.text
    assert scim.client.get(f"/Groups/{gid}").json()["displayName"] == new_name

    added = scim.client.patch(
        f"/Groups/{gid}",
        json=patch_body({"op": "add", "path": "members", "value": [{"value": a}, {"value": b}]}),
    )
    assert added.status_code in (200, 204), added.text
    assert members() == sorted([a, b])

    removed = scim.client.patch(
        f"/Groups/{gid}",
        json=patch_body(
            {"op": "remove", "path": f'members[value eq "{a}"]'},
            {"op": "add", "path": "members", "value": [{"value": c}]},
        ),
    )
    assert removed.status_code in (200, 204), removed.text
    assert members() == sorted([b, c])

    replaced = scim.client.patch(
        f"/Groups/{gid}",
        json=patch_body({"op": "replace", "path": "members", "value": [{"value": a}]}),
    )
    assert replaced.status_code in (200, 204), replaced.text
    assert members() == [a]

    deleted = scim.client.delete(f"/Groups/{gid}")
    assert deleted.status_code == 204, deleted.text
    gone = scim.client.get(f"/Groups/{gid}")
    assert gone.status_code == 404
    assert gone.json()["schemas"] == [ERROR_URN]
    assert gone.json()["status"] == "404"
