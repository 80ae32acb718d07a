"""RFC 7644's protocol on the real server, both databases: SCIM errors (status as a string, the
right scimType), authentication, ETags, projection, sorting, every filter operator, paging and
discovery."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from learndir.db.engine import Database
from tests.api.scim.support import (  # noqa: F401
    ENTERPRISE,
    ERROR_URN,
    GROUP_URN,
    PATCH_OP,
    SCIM_JSON,
    SEARCH_URN,
    USER_URN,
    Scim,
    demo_spec,
    open_scim,
    patch_body,
    shared_scim,
    user_row,
)
from tests.support import Server


def _error(response: httpx.Response, status: int, scim_type: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(SCIM_JSON)
    body = response.json()
    assert body["schemas"] == [ERROR_URN]
    assert body["status"] == str(status)
    if scim_type is not None:
        assert body.get("scimType") == scim_type, body


@pytest.fixture(scope="module")
def people(db: Database, server: Server) -> Iterator[tuple[Scim, dict[str, dict[str, Any]]]]:
    """A demo account holding five users with known names, for filters and sorting: the demo's
    own users are told apart by the `pf.` prefix."""
    scim = open_scim(db, server, demo_spec(seatLimit=None))
    made = {}
    for login, ext, title in (
        ("pf.alice", "Ext-A", "Alpha"),
        ("pf.bob", "Ext-B", "Beta"),
        ("pf.carol", "Ext-C", "Gamma"),
        ("pf.dave", "Ext-D", "Delta"),
        ("pf.eve", "Ext-E", "Epsilon"),
    ):
        made[login] = scim.user(login, externalId=ext, title=title)
    off = scim.client.patch(
        f"/Users/{made['pf.eve']['id']}",
        json=patch_body({"op": "replace", "path": "active", "value": False}),
    )
    assert off.status_code == 200, off.text
    yield scim, made
    scim.client.close()


def _names(scim: Scim, flt: str, **params: Any) -> list[str]:
    response = scim.client.get("/Users", params={"filter": flt, **params})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["totalResults"] == len(body["Resources"])
    return sorted(r["userName"] for r in body["Resources"])


# ---- errors -------------------------------------------------------------------------------


def test_errors_carry_the_scim_type(shared_scim: Scim) -> None:  # noqa: F811
    scim = shared_scim
    user = scim.user(f"proto.err.{uuid.uuid4().hex[:6]}")
    uid = user["id"]
    _error(scim.client.get("/Users", params={"filter": "userName eq"}), 400, "invalidFilter")
    _error(scim.client.get("/Users", params={"filter": 'userName zz "x"'}), 400, "invalidFilter")
    _error(scim.client.get("/Users", params={"filter": 'nosuch eq "x"'}), 400, "invalidFilter")
    _error(
        scim.client.patch(
            f"/Users/{uid}", json=patch_body({"op": "replace", "path": "nosuch", "value": "x"})
        ),
        400,
        "invalidPath",
    )
    _error(
        scim.client.patch(
            f"/Users/{uid}",
            json=patch_body({"op": "replace", "path": 'phoneNumbers[type eq "fax"]', "value": {}}),
        ),
        400,
        "noTarget",
    )
    for path, value in (("id", str(uuid.uuid4())), ("meta", {"version": "x"})):
        _error(
            scim.client.patch(
                f"/Users/{uid}", json=patch_body({"op": "replace", "path": path, "value": value})
            ),
            400,
            "mutability",
        )
    _error(
        scim.client.patch(
            f"/Users/{uid}", json=patch_body({"op": "replace", "path": "active", "value": "maybe"})
        ),
        400,
        "invalidValue",
    )
    _error(
        scim.client.post(
            "/Users", content=b'{"userName": "x",', headers={"content-type": SCIM_JSON}
        ),
        400,
        "invalidSyntax",
    )
    # Nothing of the refused PATCHes stuck.
    after = scim.client.get(f"/Users/{uid}").json()
    assert after["active"] is True and after["id"] == uid
    _error(scim.client.get("/NoSuchThing"), 404)
    _error(scim.client.get(f"/Users/{uuid.uuid4()}"), 404)
    _error(scim.client.post("/ServiceProviderConfig", json={}), 405)


def test_authentication_errors(shared_scim: Scim) -> None:  # noqa: F811
    base = str(shared_scim.client.base_url).rstrip("/")
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        response = httpx.get(f"{base}/Users", headers=headers, timeout=30)
        _error(response, 401)
        assert response.headers["www-authenticate"].lower().startswith("bearer")


# ---- ETags --------------------------------------------------------------------------------


def test_etags_and_preconditions(shared_scim: Scim) -> None:  # noqa: F811
    scim = shared_scim
    uid = scim.user(f"proto.etag.{uuid.uuid4().hex[:6]}")["id"]
    read = scim.client.get(f"/Users/{uid}")
    etag = read.headers["etag"]
    assert etag == read.json()["meta"]["version"]
    # If-None-Match compares weakly (RFC 7232 §3.2), and * matches any current version.
    for tag in (etag, etag.removeprefix("W/"), "*", f'W/"other", {etag}'):
        unchanged = scim.client.get(f"/Users/{uid}", headers={"If-None-Match": tag})
        assert unchanged.status_code == 304, tag
        assert unchanged.headers["etag"] == etag and not unchanged.content
    other = scim.client.get(f"/Users/{uid}", headers={"If-None-Match": 'W/"other"'})
    assert other.status_code == 200

    stale = 'W/"0123456789abcdef"'
    whole = {**read.json(), "title": "Stale"}
    _error(scim.client.put(f"/Users/{uid}", json=whole, headers={"If-Match": stale}), 412)
    titled = patch_body({"op": "replace", "path": "title", "value": "Stale"})
    _error(scim.client.patch(f"/Users/{uid}", json=titled, headers={"If-Match": stale}), 412)
    _error(scim.client.delete(f"/Users/{uid}", headers={"If-Match": stale}), 412)
    assert not user_row(scim, uid).job_title
    assert scim.client.get(f"/Users/{uid}").headers["etag"] == etag

    put = scim.client.put(f"/Users/{uid}", json=whole, headers={"If-Match": etag})
    assert put.status_code == 200, put.text
    assert put.headers["etag"] != etag and user_row(scim, uid).job_title == "Stale"
    patched = scim.client.patch(
        f"/Users/{uid}",
        json=patch_body({"op": "replace", "path": "title", "value": "Fresh"}),
        headers={"If-Match": put.headers["etag"]},
    )
    assert patched.status_code == 200, patched.text
    assert user_row(scim, uid).job_title == "Fresh"
    deleted = scim.client.delete(f"/Users/{uid}", headers={"If-Match": patched.headers["etag"]})
    assert deleted.status_code == 204, deleted.text
    assert user_row(scim, uid) is None


# ---- projection, search and sorting --------------------------------------------------------


def test_attributes_and_excluded_attributes(people: tuple[Scim, dict[str, Any]]) -> None:
    scim, made = people
    uid = made["pf.alice"]["id"]
    only = scim.client.get(f"/Users/{uid}", params={"attributes": "userName"}).json()
    assert set(only) == {"id", "schemas", "userName"}
    listed = scim.client.get(
        "/Users", params={"attributes": "userName", "filter": 'userName sw "pf."'}
    ).json()
    assert all(set(r) == {"id", "schemas", "userName"} for r in listed["Resources"])
    dropped = scim.client.get(f"/Users/{uid}", params={"excludedAttributes": "emails"}).json()
    assert "emails" not in dropped and dropped["userName"] == "pf.alice"


def test_search_and_sort(people: tuple[Scim, dict[str, Any]]) -> None:
    scim, _ = people
    searched = scim.client.post(
        "/Users/.search",
        json={
            "schemas": [SEARCH_URN],
            "filter": 'userName sw "pf."',
            "attributes": ["userName"],
            "sortBy": "userName",
            "sortOrder": "descending",
            "startIndex": 1,
            "count": 3,
        },
    )
    assert searched.status_code == 200, searched.text
    body = searched.json()
    assert body["totalResults"] == 5
    assert [r["userName"] for r in body["Resources"]] == ["pf.eve", "pf.dave", "pf.carol"]
    descending = scim.client.get(
        "/Users", params={"sortBy": "userName", "sortOrder": "descending"}
    ).json()
    names = [r["userName"] for r in descending["Resources"]]
    assert names == sorted(names, key=str.casefold, reverse=True)
    by_title = scim.client.get(
        "/Users", params={"filter": 'userName sw "pf."', "sortBy": "title"}
    ).json()
    assert [r["title"] for r in by_title["Resources"]] == [
        "Alpha",
        "Beta",
        "Delta",
        "Epsilon",
        "Gamma",
    ]


# ---- filters ------------------------------------------------------------------------------


def test_every_filter_operator(people: tuple[Scim, dict[str, Any]]) -> None:
    scim, made = people
    pf = 'userName sw "pf." and '
    assert _names(scim, 'userName eq "PF.ALICE"') == ["pf.alice"]
    assert _names(scim, pf + 'userName ne "pf.alice"') == [
        "pf.bob",
        "pf.carol",
        "pf.dave",
        "pf.eve",
    ]
    assert _names(scim, 'userName co "aro"') == ["pf.carol"]
    assert _names(scim, 'userName sw "PF.B"') == ["pf.bob"]
    assert _names(scim, pf + 'userName ew "ve"') == ["pf.dave", "pf.eve"]
    assert _names(scim, pf + "userName pr") == [
        "pf.alice",
        "pf.bob",
        "pf.carol",
        "pf.dave",
        "pf.eve",
    ]
    assert _names(scim, pf + 'userName gt "pf.carol"') == ["pf.dave", "pf.eve"]
    assert _names(scim, pf + 'userName ge "pf.carol"') == ["pf.carol", "pf.dave", "pf.eve"]
    assert _names(scim, pf + 'userName lt "pf.carol"') == ["pf.alice", "pf.bob"]
    assert _names(scim, pf + 'userName le "pf.bob"') == ["pf.alice", "pf.bob"]
    created = made["pf.carol"]["meta"]["created"]
    # Times carry their zone (SQLite hands them back without one), and compare with zoned ones.
    assert datetime.fromisoformat(created.replace("Z", "+00:00")).tzinfo is not None
    everyone = ["pf.alice", "pf.bob", "pf.carol", "pf.dave", "pf.eve"]
    assert _names(scim, pf + 'meta.created gt "2000-01-01T00:00:00Z"') == everyone
    assert _names(scim, pf + 'meta.lastModified ge "2000-01-01T00:00:00+02:00"') == everyone
    assert _names(scim, pf + 'meta.created lt "2000-01-01T00:00:00Z"') == []
    _error(
        scim.client.get("/Users", params={"filter": 'meta.created gt "yesterday"'}),
        400,
        "invalidFilter",
    )
    later = _names(scim, pf + f'meta.created gt "{created}"')
    assert "pf.carol" not in later and "pf.alice" not in later
    assert _names(scim, pf + f'meta.created ge "{created}"')[0] == "pf.carol"
    assert _names(scim, 'userName eq "pf.alice" or userName eq "pf.bob"') == [
        "pf.alice",
        "pf.bob",
    ]
    assert _names(scim, pf + 'not (userName co "a")') == ["pf.bob", "pf.eve"]
    assert _names(
        scim, pf + '(userName eq "pf.alice" or userName eq "pf.bob") and title eq "Beta"'
    ) == ["pf.bob"]
    assert _names(scim, 'emails.value co "pf.dave@"') == ["pf.dave"]
    assert _names(scim, 'emails[type eq "work" and value co "pf.bob@"]') == ["pf.bob"]
    assert _names(scim, 'externalId eq "Ext-C"') == ["pf.carol"]
    assert _names(scim, 'externalId eq "ext-c"') == []  # externalId is case-exact
    assert _names(scim, f'id eq "{made["pf.dave"]["id"]}"') == ["pf.dave"]
    assert _names(scim, pf + "active eq false") == ["pf.eve"]
    assert _names(scim, pf + "active eq true") == ["pf.alice", "pf.bob", "pf.carol", "pf.dave"]
    assert _names(scim, pf + 'title eq "alpha"') == ["pf.alice"]  # title is caseExact false


def test_paging_limits(people: tuple[Scim, dict[str, Any]]) -> None:
    scim, _ = people
    counted = scim.client.get("/Users", params={"count": 0}).json()
    assert counted["totalResults"] >= 5
    assert counted["itemsPerPage"] == 0 and counted.get("Resources", []) == []
    past = scim.client.get("/Users", params={"startIndex": 10_000}).json()
    assert past["Resources"] == [] and past["totalResults"] == counted["totalResults"]
    assert past["startIndex"] == 10_000
    big = scim.client.get("/Users", params={"count": 5000}).json()
    assert big["itemsPerPage"] == min(1000, counted["totalResults"])
    page = scim.client.get(
        "/Users", params={"filter": 'userName sw "pf."', "startIndex": 2, "count": 2}
    ).json()
    assert (page["totalResults"], page["startIndex"], page["itemsPerPage"]) == (5, 2, 2)


# ---- discovery and media types --------------------------------------------------------------


def test_discovery(shared_scim: Scim) -> None:  # noqa: F811
    scim = shared_scim
    schemas = scim.client.get("/Schemas")
    assert schemas.status_code == 200, schemas.text
    assert schemas.headers["content-type"].startswith(SCIM_JSON)
    by_id = {s["id"]: s for s in schemas.json()["Resources"]}
    learndir = [urn for urn in by_id if "learndir" in urn.casefold()]
    assert len(learndir) == 1
    for urn in (
        USER_URN,
        ENTERPRISE,
        GROUP_URN,
        "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig",
        "urn:ietf:params:scim:schemas:core:2.0:ResourceType",
        "urn:ietf:params:scim:schemas:core:2.0:Schema",
    ):
        assert urn in by_id, urn
    custom = {a["name"]: a for a in by_id[learndir[0]]["attributes"]}
    assert "country" in custom
    assert "DE" in custom["country"]["canonicalValues"]
    # employee_id is the Enterprise User's employeeNumber, not a second attribute.
    assert not any("employee" in name.casefold() for name in custom)
    assert "employeeNumber" in {a["name"] for a in by_id[ENTERPRISE]["attributes"]}

    one = scim.client.get(f"/Schemas/{USER_URN}")
    assert one.status_code == 200 and one.json()["id"] == USER_URN
    assert "userName" in {a["name"] for a in one.json()["attributes"]}
    _error(scim.client.get("/Schemas/urn:nope"), 404)

    user_type = scim.client.get("/ResourceTypes/User")
    assert user_type.status_code == 200, user_type.text
    described = user_type.json()
    assert described["endpoint"] == "/Users" and described["schema"] == USER_URN
    extensions = {e["schema"] for e in described["schemaExtensions"]}
    assert {ENTERPRISE, learndir[0]} <= extensions

    config = scim.client.get("/ServiceProviderConfig")
    assert config.status_code == 200 and config.headers["content-type"].startswith(SCIM_JSON)
    spc = config.json()
    assert spc["patch"]["supported"] is True
    assert spc["filter"] == {"supported": True, "maxResults": 1000}
    assert spc["etag"]["supported"] is True
    assert spc["sort"]["supported"] is True
    assert spc["changePassword"]["supported"] is True
    assert spc["bulk"]["supported"] is False


def test_plain_json_is_accepted(shared_scim: Scim) -> None:  # noqa: F811
    scim = shared_scim
    name = f"proto.json.{uuid.uuid4().hex[:6]}"
    created = scim.client.post(
        "/Users",
        json={"schemas": [USER_URN], "userName": name},
        headers={"Content-Type": "application/json"},
    )
    assert created.status_code == 201, created.text
    assert created.headers["content-type"].startswith(SCIM_JSON)
    patched = scim.client.patch(
        f"/Users/{created.json()['id']}",
        json=patch_body({"op": "add", "path": "title", "value": "Plain"}),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["title"] == "Plain"


def test_search_at_the_root_covers_users_then_groups(db: Database, server: Server) -> None:
    """POST /.search: one list of every resource type, Users first, paged across the border;
    a filter on an attribute one type lacks matches none of that type."""
    scim = open_scim(db, server, demo_spec(seatLimit=None))
    for name in ("rs.a", "rs.b"):
        scim.user(name)
    group = scim.client.post("/Groups", json={"schemas": [GROUP_URN], "displayName": "rs.g"})
    assert group.status_code == 201, group.text

    def search(**body: Any) -> dict[str, Any]:
        answer = scim.client.post("/.search", json={"schemas": [SEARCH_URN], **body})
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    everything = search()
    users = [r for r in everything["Resources"] if USER_URN in r["schemas"]]
    groups = [r for r in everything["Resources"] if GROUP_URN in r["schemas"]]
    # The demo's owner and sales.admin, the two new users; Newcomers and the new group.
    assert (len(users), len(groups), everything["totalResults"]) == (4, 2, 6)
    assert everything["Resources"] == users + groups
    border = search(startIndex=4, count=2)
    assert [r["id"] for r in border["Resources"]] == [users[3]["id"], groups[0]["id"]]
    by_name = search(filter='userName sw "rs."', attributes=["userName"])
    assert by_name["totalResults"] == 2
    assert all(set(r) == {"id", "schemas", "userName"} for r in by_name["Resources"])
    assert search(filter='displayName eq "rs.g"')["Resources"][0]["id"] == group.json()["id"]
    scim.client.close()
