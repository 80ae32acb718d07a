"""Reading users over REST, in XML and JSON, on SQLite and PostgreSQL: profiles, filtered lists,
keyset pages (stable under inserts), numbered pages, id lookups, and the permission scope."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from sqlalchemy import update

from learndir.api.ispring_rest import present
from learndir.api.ispring_rest.users_read import xml_document
from learndir.api.ispring_rest.wire import to_xml
from learndir.core.auth import authenticate_token
from learndir.core.users.commands import AddUser
from learndir.core.users.queries import UserFilter, get_user, list_users
from learndir.core.users.service import add_user
from learndir.db.schema import users
from tests.support import Server, World, acme_spec, make_world
from tests.transports import Auth, Outcome, RestJson, RestXml, field_map

Transport = RestJson | RestXml


@pytest.fixture(scope="module", params=["rest-json", "rest-xml"])
def rest(request: pytest.FixtureRequest, server: Server) -> Iterator[Transport]:
    transport: Transport = (
        RestJson(server.base_url) if request.param == "rest-json" else RestXml(server.base_url)
    )
    yield transport
    transport.client.close()


class Directory:
    """An account of its own: acme plus a known set of users, ids by login."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.ids: dict[str, str] = dict(world.users)

    def auth(self, login: str = "owner") -> Auth:
        return Auth(token=self.world.token(login))

    def add(self, login: str, department: str, **extra: Any) -> str:
        owner = authenticate_token(self.world.db, self.world.token("owner"))
        fields = {"employee_id": f"E-{login}", **extra.pop("fields", {})}
        cmd = AddUser.model_validate(
            {
                "login": login,
                "departmentId": self.world.departments[department],
                "fields": fields,
                **extra,
            }
        )
        self.ids[login] = add_user(self.world.db, owner, cmd)
        return self.ids[login]

    def logins(self, profiles: list[dict[str, Any]]) -> list[str]:
        """Logins of `profiles`, leaving out the newcomers the concurrent-insert test adds."""
        logins = [field_map(p)["LOGIN"] for p in profiles]
        return [login for login in logins if not login.startswith("new-")]


@pytest.fixture(scope="module")
def d(db: Any) -> Directory:
    spec = acme_spec()
    spec.pop("seatLimit", None)
    directory = Directory(make_world(db, spec))
    w = directory.world
    for i, (country, birthday) in enumerate(
        [("DE", "1980-01-15"), ("FR", "1990-06-01"), ("DE", "2000-12-31")]
    ):
        directory.add(
            f"eu{i}",
            "sales-eu",
            email=f"eu{i}@acme.test",
            fields={"country": country, "birthday": birthday},
            groups=[w.groups["Managers"]] if i < 2 else [],
        )
    directory.add("us0", "sales-us", email="us0@acme.test", fields={"country": "US"})
    directory.add("top0", "sales", fields={"country": "US"})
    directory.add("eng0", "eng", email="Eng0@Acme.test", groups=[w.groups["Managers"]])
    directory.add("eng1", "eng", fields={"first_name": "Ada"})
    gone = directory.add("gone", "support")
    with db.write() as conn:
        conn.execute(
            update(users)
            .where(users.c.id == gone)
            .values(
                status=5,
                subordination_type="manual",
                supervisor_id=directory.ids["admin"],
                work_leave_reason="OnVacation",
                work_leave_start=date(2030, 1, 1),
                work_leave_end=date(2030, 1, 10),
            )
        )
    return directory


def ok(outcome: Outcome) -> Any:
    assert outcome.status == 200, outcome
    return outcome.data


def refused(outcome: Outcome, status: int, parameter: str | None = None) -> None:
    assert outcome.status == status, outcome
    if parameter is not None:
        assert outcome.parameter == parameter, outcome


EVERYONE = {"owner", "sales.admin", "hr.partner", "admin", "jane.doe"} | {
    "eu0",
    "eu1",
    "eu2",
    "us0",
    "top0",
    "eng0",
    "eng1",
    "gone",
}
SALES = {"sales.admin", "jane.doe", "eu0", "eu1", "eu2", "us0", "top0"}


class TestProfile:
    def test_v1_and_v2(self, rest: Transport, d: Directory) -> None:
        v1 = ok(rest.get_user(d.ids["gone"], d.auth()))
        v2 = ok(rest.get_user(d.ids["gone"], d.auth(), v2=True))
        assert v1["status"] == 3 and v2["status"] == 5
        assert v2["subordination"] == {
            "subordinationType": "manual",
            "supervisorId": d.ids["admin"],
        }
        assert v2["coSubordination"] == {"subordinationType": "inherit"}
        assert v2["workLeaveStatus"] == {
            "workLeaveReason": "OnVacation",
            "startDate": "2030-01-01",
            "endDate": "2030-01-10",
        }
        # LOGIN and EMAIL come first, EMAIL empty when there is none.
        assert v2["fields"][:2] == [
            {"name": "LOGIN", "value": "gone"},
            {"name": "EMAIL", "value": ""},
        ]
        assert v2["addedDate"].endswith("Z") and len(v2["addedDate"]) == 20
        assert v2["lastLoginDate"] == ""

    def test_roles_groups_and_fields(self, rest: Transport, d: Directory) -> None:
        admin = ok(rest.get_user(d.ids["sales.admin"], d.auth()))
        sales = d.world.departments["sales"]
        assert admin["role"] == "department_administrator"
        assert admin["roleId"] == d.world.roles["department_administrator"]
        assert admin["manageableDepartmentIds"] == [sales]
        assert admin["userRoles"] == [
            {
                "roleId": d.world.roles["department_administrator"],
                "manageableDepartmentIds": [sales],
                "roleType": "department_administrator",
            }
        ]
        eu0 = ok(rest.get_user(d.ids["eu0"], d.auth()))
        assert eu0["groups"] == [d.world.groups["Managers"]]
        fields = field_map(eu0)
        assert fields["COUNTRY"] == "DE" and fields["BIRTHDAY"] == "1980-01-15"
        assert fields["EMAIL"] == "eu0@acme.test"

    def test_unknown_malformed_and_foreign_ids_are_404(
        self, rest: Transport, d: Directory, world: World
    ) -> None:
        for user_id in (str(uuid.uuid4()), "not-an-id", world.users["jane.doe"]):
            refused(rest.get_user(user_id, d.auth()), 404, "userId")

    def test_scope(self, rest: Transport, d: Directory) -> None:
        refused(rest.get_user(d.ids["eng0"], d.auth("sales.admin")), 403, "userId")
        ok(rest.get_user(d.ids["eu0"], d.auth("sales.admin"), v2=True))
        # A learner reads their own profile only.
        assert (
            ok(rest.get_user(d.ids["jane.doe"], d.auth("jane.doe")))["userId"]
            == (d.ids["jane.doe"])
        )
        refused(rest.get_user(d.ids["eu0"], d.auth("jane.doe")), 403)

    def test_unauthenticated_and_api_v2_prefix(self, rest: Transport, d: Directory) -> None:
        refused(rest.get_user(d.ids["eu0"], None), 401)
        refused(rest.get_user(d.ids["eu0"], Auth(token="nope")), 401)
        v2 = ok(rest.get_user(d.ids["eu0"], d.auth(), v2=True, prefix="/api/v2"))
        assert v2["userId"] == d.ids["eu0"]


class TestList:
    def test_everyone_and_status_by_version(self, rest: Transport, d: Directory) -> None:
        v1 = ok(rest.list_users({}, d.auth()))
        assert set(d.logins(v1)) == EVERYONE
        assert len({p["userId"] for p in v1}) == len(v1)
        by_login = {field_map(p)["LOGIN"]: p for p in v1}
        assert by_login["gone"]["status"] == 3
        v2 = {field_map(p)["LOGIN"]: p for p in ok(rest.list_users({}, d.auth(), v2=True))}
        assert v2["gone"]["status"] == 5

    @pytest.mark.parametrize(
        ("filters", "expected"),
        [
            ({"logins": ["EU0", "eng1", "nobody"]}, {"eu0", "eng1"}),
            ({"emails": ["eng0@acme.TEST", "us0@acme.test"]}, {"eng0", "us0"}),
            (
                {"departments": ["sales-eu", "eng"]},
                {"eu0", "eu1", "eu2", "jane.doe"} | {"eng0", "eng1", "hr.partner"},
            ),
            ({"departments": ["sales"]}, {"sales.admin", "top0"}),
            ({"groups": ["Managers"]}, {"eu0", "eu1", "eng0"}),
            ({"groups": ["Managers"], "departments": ["eng"]}, {"eng0"}),
            ({"groups": ["Newcomers"], "logins": ["eu0", "jane.doe"]}, {"jane.doe"}),
            ({"departments": [str(uuid.uuid4())]}, set()),
            ({"logins": []}, EVERYONE),
        ],
    )
    def test_filters(
        self, rest: Transport, d: Directory, filters: dict[str, Any], expected: set[str]
    ) -> None:
        resolved = {
            key: [
                d.world.departments.get(v, d.world.groups.get(v, v))
                if key in ("departments", "groups")
                else v
                for v in values
            ]
            for key, values in filters.items()
        }
        assert set(d.logins(ok(rest.list_users(resolved, d.auth())))) == expected
        page = ok(rest.page_users(resolved, d.auth()))
        assert set(d.logins(page["userProfiles"])) == expected
        posted = ok(rest.page_users(resolved, d.auth(), post=True))
        assert set(d.logins(posted["userProfiles"])) == expected

    def test_single_value_without_brackets(self, rest: Transport, d: Directory) -> None:
        assert d.logins(ok(rest.list_users({"logins": "eu1"}, d.auth()))) == ["eu1"]

    def test_foreign_group_matches_nothing(
        self, rest: Transport, d: Directory, world: World
    ) -> None:
        found = ok(rest.list_users({"groups": [world.groups["Newcomers"]]}, d.auth()))
        assert found == []

    @pytest.mark.parametrize("parameter", ["departments", "groups", "userIds"])
    def test_malformed_ids(self, rest: Transport, d: Directory, parameter: str) -> None:
        refused(rest.page_users({parameter: ["nope"]}, d.auth()), 400, parameter)

    def test_department_administrator_sees_their_subtrees(
        self, rest: Transport, d: Directory
    ) -> None:
        admin = d.auth("sales.admin")
        assert set(d.logins(ok(rest.list_users({}, admin)))) == SALES
        assert set(d.logins(ok(rest.page_users({}, admin))["userProfiles"])) == SALES
        assert set(d.logins(ok(rest.user_list({}, admin))["userProfiles"])) == SALES
        outside = {"logins": ["eng0", "eu0"]}
        assert d.logins(ok(rest.list_users(outside, admin))) == ["eu0"]
        eng = {"departments": [d.world.departments["eng"]]}
        assert ok(rest.page_users(eng, admin))["userProfiles"] == []

    def test_learner_and_anonymous_cannot_list(self, rest: Transport, d: Directory) -> None:
        learner = d.auth("jane.doe")
        refused(rest.list_users({}, learner), 403)
        refused(rest.page_users({}, learner), 403)
        refused(rest.user_list({}, learner), 403)
        refused(rest.find_existing([d.ids["eu0"]], learner), 403)
        # A role without view_users (HR Partner: add_users only) cannot list either.
        refused(rest.list_users({}, d.auth("hr.partner")), 403)
        refused(rest.list_users({}, None), 401)
        refused(rest.page_users({}, None), 401)

    def test_api_v2_prefix(self, rest: Transport, d: Directory) -> None:
        found = ok(rest.list_users({"logins": ["eu2"]}, d.auth(), v2=True, prefix="/api/v2"))
        assert d.logins(found) == ["eu2"]
        page = ok(rest.page_users({"logins": ["eu2"]}, d.auth(), prefix="/api/v2"))
        assert d.logins(page["userProfiles"]) == ["eu2"]


class TestPages:
    def test_page_through(self, rest: Transport, d: Directory) -> None:
        seen: list[str] = []
        token = None
        sizes = []
        while True:
            page = ok(rest.page_users({}, d.auth(), page_size=3, page_token=token))
            sizes.append(len(page["userProfiles"]))
            seen.extend(p["userId"] for p in page["userProfiles"])
            token = page.get("nextPageToken")
            if token is None:
                break
        assert seen == sorted(seen) and len(seen) == len(set(seen))
        assert {d.ids[login] for login in EVERYONE} <= set(seen)
        assert all(s == 3 for s in sizes[:-1]) and 1 <= sizes[-1] <= 3

    def test_exact_last_page_has_no_token(self, rest: Transport, d: Directory) -> None:
        logins = ["eu0", "eu1", "eu2", "us0"]
        first = ok(rest.page_users({"logins": logins}, d.auth(), page_size=2))
        assert len(first["userProfiles"]) == 2 and first["nextPageToken"]
        last = ok(
            rest.page_users(
                {"logins": logins}, d.auth(), page_size=2, page_token=first["nextPageToken"]
            )
        )
        assert len(last["userProfiles"]) == 2 and "nextPageToken" not in last
        assert set(d.logins(first["userProfiles"] + last["userProfiles"])) == set(logins)

    def test_v1_pages_report_status_5_as_3(self, rest: Transport, d: Directory) -> None:
        page = ok(rest.page_users({"logins": ["gone"]}, d.auth(), v2=False))
        assert page["userProfiles"][0]["status"] == 3
        page = ok(rest.page_users({"logins": ["gone"]}, d.auth()))
        assert page["userProfiles"][0]["status"] == 5

    @pytest.mark.parametrize("size", [0, -1, 1001, "abc", "1.5"])
    def test_bad_page_size(self, rest: Transport, d: Directory, size: Any) -> None:
        refused(rest.page_users({}, d.auth(), page_size=size), 400, "pageSize")
        refused(rest.user_list({"pageSize": size}, d.auth()), 400, "pageSize")

    @pytest.mark.parametrize(
        "token", ["nope", "!!!", "bm90LWFuLWlk", "6f1c1f0e-0d3c-4f57-9a51-7f2d2b9d6a10"]
    )
    def test_bad_token(self, rest: Transport, d: Directory, token: str) -> None:
        refused(rest.page_users({}, d.auth(), page_token=token), 400, "pageToken")

    def test_stable_under_concurrent_inserts(self, rest: Transport, d: Directory) -> None:
        before = {p["userId"] for p in ok(rest.list_users({}, d.auth()))}
        seen: list[str] = []
        token = None
        while True:
            page = ok(rest.page_users({}, d.auth(), page_size=2, page_token=token))
            seen.extend(p["userId"] for p in page["userProfiles"])
            token = page.get("nextPageToken")
            if token is None:
                break
            # Two newcomers per page: ids are random, so they land before and after the cursor.
            for _ in range(2):
                d.add(f"new-{uuid.uuid4().hex[:8]}", "support")
        assert len(seen) == len(set(seen))
        assert before <= set(seen)


class TestNumberedPages:
    def test_pages_and_total(self, rest: Transport, d: Directory) -> None:
        everyone = [p["userId"] for p in ok(rest.list_users({}, d.auth()))]
        first = ok(rest.user_list({"pageSize": 3}, d.auth()))
        assert first["pageNumber"] == 1 and first["totalUsersNumber"] == len(everyone)
        second = ok(rest.user_list({"pageNumber": 2, "pageSize": 3}, d.auth()))
        assert [p["userId"] for p in first["userProfiles"] + second["userProfiles"]] == sorted(
            everyone
        )[:6]
        from_query = ok(rest.user_list({}, d.auth(), params={"pageNumber": 2, "pageSize": 3}))
        assert from_query["userProfiles"] == second["userProfiles"]
        beyond = ok(rest.user_list({"pageNumber": 999}, d.auth()))
        assert beyond["userProfiles"] == [] and beyond["totalUsersNumber"] == len(everyone)

    def test_filters_and_total(self, rest: Transport, d: Directory) -> None:
        body = {"logins": ["eu0", "eu1", "eu2"], "pageSize": 2}
        page = ok(rest.user_list(body, d.auth()))
        assert page["totalUsersNumber"] == 3 and len(page["userProfiles"]) == 2

    def test_status_5_reads_as_3(self, rest: Transport, d: Directory) -> None:
        page = ok(rest.user_list({"logins": ["gone"]}, d.auth()))
        assert page["userProfiles"][0]["status"] == 3

    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            ({"profileFields": [{"name": "country", "values": ["de"]}]}, {"eu0", "eu2", "admin"}),
            (
                {"profileFields": [{"name": "COUNTRY", "values": ["France", "us"]}]},
                {"eu1", "us0", "top0"},
            ),
            ({"profileFields": [{"name": "first_name", "values": ["ADA"]}]}, {"eng1"}),
            (
                {
                    "profileFields": [
                        {"name": "country", "values": ["DE", "US"]},
                        {"name": "employee_id", "values": ["E-eu0", "E-us0"]},
                    ]
                },
                {"eu0", "us0"},
            ),
            (
                {
                    "profileFieldsDateRange": [
                        {"name": "birthday", "from": "1985-01-01", "to": "2000-12-31"}
                    ]
                },
                {"eu1", "eu2"},
            ),
            (
                {
                    "profileFieldsDateRange": [
                        {"name": "birthday", "from": "1980-01-15", "to": "1980-01-15"}
                    ]
                },
                {"eu0"},
            ),
            (
                {
                    "departments": ["sales-eu"],
                    "profileFieldsDateRange": [
                        {"name": "birthday", "from": "1900-01-01", "to": "1995-01-01"}
                    ],
                },
                {"eu0", "eu1"},
            ),
        ],
    )
    def test_profile_field_filters(
        self, rest: Transport, d: Directory, body: dict[str, Any], expected: set[str]
    ) -> None:
        if "departments" in body:
            body = {**body, "departments": [d.world.departments[c] for c in body["departments"]]}
        page = ok(rest.user_list(body, d.auth()))
        assert set(d.logins(page["userProfiles"])) == expected
        assert page["totalUsersNumber"] == len(expected)

    def test_added_date_range(self, rest: Transport, d: Directory) -> None:
        everyone = ok(rest.user_list({"pageSize": 1000}, d.auth()))["totalUsersNumber"]
        body = {
            "profileFieldsDateRange": [
                {"name": "addedDate", "from": "2000-01-01", "to": "2999-12-31"}
            ]
        }
        assert ok(rest.user_list(body, d.auth()))["totalUsersNumber"] == everyone
        body = {
            "profileFieldsDateRange": [
                {"name": "addedDate", "from": "2000-01-01", "to": "2000-12-31"}
            ]
        }
        assert ok(rest.user_list(body, d.auth()))["totalUsersNumber"] == 0

    @pytest.mark.parametrize(
        ("body", "parameter"),
        [
            ({"pageNumber": 0}, "pageNumber"),
            ({"pageNumber": "x"}, "pageNumber"),
            ({"profileFields": [{"name": "shoe_size", "values": ["9"]}]}, "profileFields[0].name"),
            ({"profileFields": [{"values": ["9"]}]}, "profileFields[0].name"),
            (
                {
                    "profileFieldsDateRange": [
                        {"name": "country", "from": "2000-01-01", "to": "2001-01-01"}
                    ]
                },
                "profileFieldsDateRange[0].name",
            ),
            (
                {
                    "profileFieldsDateRange": [
                        {"name": "birthday", "from": "yesterday", "to": "2001-01-01"}
                    ]
                },
                "profileFieldsDateRange[0].from",
            ),
            (
                {
                    "profileFieldsDateRange": [
                        {"name": "birthday", "from": "2001-01-01", "to": "2000-01-01"}
                    ]
                },
                "profileFieldsDateRange[0].from",
            ),
        ],
    )
    def test_wrong_parameters(
        self, rest: Transport, d: Directory, body: dict[str, Any], parameter: str
    ) -> None:
        refused(rest.user_list(body, d.auth()), 400, parameter)


class TestFindExisting:
    def test_body_and_header(self, rest: Transport, d: Directory, world: World) -> None:
        asked = [d.ids["eu0"], str(uuid.uuid4()), world.users["jane.doe"], d.ids["eng0"]]
        assert ok(rest.find_existing(asked, d.auth())) == [d.ids["eu0"], d.ids["eng0"]]
        assert ok(rest.find_existing(asked, d.auth(), header=True)) == [
            d.ids["eu0"],
            d.ids["eng0"],
        ]
        assert ok(rest.find_existing([str(uuid.uuid4())], d.auth())) == []

    def test_scope(self, rest: Transport, d: Directory) -> None:
        asked = [d.ids["eu0"], d.ids["eng0"], d.ids["top0"]]
        assert ok(rest.find_existing(asked, d.auth("sales.admin"))) == [
            d.ids["eu0"],
            d.ids["top0"],
        ]

    def test_wrong_parameters(self, rest: Transport, d: Directory) -> None:
        refused(rest.find_existing(["nope"], d.auth()), 400, "userIds")
        refused(rest.request("POST", "/users/find_existing", d.auth(), body={}), 400, "userIds")
        refused(rest.find_existing([d.ids["eu0"]], None), 401)

    def test_api_v2_prefix(self, rest: Transport, d: Directory) -> None:
        found = ok(rest.find_existing([d.ids["eu1"]], d.auth(), prefix="/api/v2"))
        assert found == [d.ids["eu1"]]


class TestCore:
    """What the SOAP interface and the REST one share, called directly."""

    def test_get_user_and_lists_agree(self, d: Directory) -> None:
        owner = authenticate_token(d.world.db, d.world.token("owner"))
        listed = {u.id: u for u in list_users(d.world.db, owner, UserFilter())}
        for login in ("eu0", "gone", "sales.admin"):
            assert listed[d.ids[login]] == get_user(d.world.db, owner, d.ids[login])

    def test_fast_xml_writer_matches_the_element_tree(self, d: Directory) -> None:
        owner = authenticate_token(d.world.db, d.world.token("owner"))
        profiles = [present.user(u, v2=True) for u in list_users(d.world.db, owner, UserFilter())]
        profiles[0]["fields"].append({"name": "NOTE", "value": "a < b & c > d\r\n\u00e9"})
        body = {"userProfiles": profiles, "nextPageToken": "abc"}
        names = {**present.ITEM_NAMES, "userProfiles": "userProfile"}
        assert xml_document(body) == to_xml(body, item_names=names)
        assert xml_document(profiles, "userProfile") == to_xml(
            profiles, items="userProfile", item_names=names
        )
        assert xml_document([], "id") == to_xml([], items="id")
