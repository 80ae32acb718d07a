"""The SOAP directory operations against a running server, through zeep reading the served WSDL:
each with its valid case in both generations (credentials and token), unauthenticated,
forbidden (a department administrator outside the subtree they manage), invalid input and
unknown ids, on SQLite and PostgreSQL. Rejected calls must change nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from lxml import etree
from sqlalchemy import update as sa_update

from learndir.core.auth import authenticate_token
from learndir.core.users.changes import change_status, change_subordination, set_work_leaves
from learndir.core.users.commands import ChangeSubordination, WorkLeaveItem
from learndir.core.users.queries import get_user
from learndir.db.engine import Database
from learndir.db.schema import users
from tests.api.soap.helpers import (
    GENERATIONS,
    SERVICE_NS,
    SOAP_ENV,
    WSDL_NS,
    XS_NS,
    assert_denied,
    assert_unknown_user,
    assert_wrong,
    auth,
    fault_of,
    raw,
)
from tests.support import Server, World, acme_spec, make_world

# acme.yaml: the owner and four users; sales.admin manages Sales (with Sales EU and Sales US).
ALL_LOGINS = {"owner", "sales.admin", "hr.partner", "admin", "jane.doe"}


@pytest.fixture(scope="module")
def acme(db: Database) -> World:
    """An account of this module's own: lists and counts are exactly the account file's."""
    return make_world(db, acme_spec())


def fields_of(profile: Any) -> dict[str, str]:
    return {f.name: f.value for f in profile.fields.field}


def logins_of(profiles: list[Any]) -> set[str]:
    return {fields_of(p)["LOGIN"] for p in profiles}


# Every operation that authenticates, with parameters that are valid for the owner.
READ_CALLS: dict[str, Callable[[World], dict[str, Any]]] = {
    "GetUserProfile": lambda w: {"userId": w.users["jane.doe"]},
    "GetUsers": lambda w: {},
    "ListUsers": lambda w: {},
    "FindExistingUsers": lambda w: {"userIds": {"id": [w.users["jane.doe"]]}},
    "GetUserProfileFields": lambda w: {},
    "GetGroups": lambda w: {},
    "GetDepartments": lambda w: {},
}


class TestUnauthenticated:
    @pytest.mark.parametrize("operation", sorted(READ_CALLS))
    @pytest.mark.parametrize(
        "who",
        [
            {},
            {"token": "not-a-token"},
            {"credentials": {"accountUrl": "ACCOUNT", "email": "owner", "password": "Wrong-1"}},
        ],
        ids=["nothing", "bad-token", "bad-password"],
    )
    def test_unauthorized(
        self, soap: Any, acme: World, operation: str, who: dict[str, Any]
    ) -> None:
        if "credentials" in who:
            who = {"credentials": {**who["credentials"], "accountUrl": acme.account_url}}
        fault = fault_of(lambda: getattr(soap, operation)(**who, **READ_CALLS[operation](acme)))
        assert (fault["faultcode"], fault["message"], fault["code"]) == (
            "SOAP-ENV:Client",
            "Unauthorized",
            "unauthenticated",
        )

    def test_status_is_401(self, server: Server, acme: World) -> None:
        response = raw(server, "GetUsersRequest", "<token>nope</token>")
        assert response.status_code == 401


class TestGetUserProfile:
    def test_profile(self, soap: Any, acme: World, generation: str) -> None:
        profile = soap.GetUserProfile(**auth(acme, generation), userId=acme.users["jane.doe"])
        assert profile.userId == acme.users["jane.doe"]
        assert profile.departmentId == acme.departments["sales-eu"]
        assert profile.status == 1
        assert profile.role == "learner"
        assert profile.roleId == acme.roles["learner"]
        assert fields_of(profile) == {
            "LOGIN": "jane.doe",
            "EMAIL": "jane.doe@acme.test",
            "FIRST_NAME": "Jane",
            "LAST_NAME": "Doe",
            "JOB_TITLE": "Account Executive",
            "EMPLOYEE_ID": "E-4",
        }
        assert profile.groups.id == [acme.groups["Newcomers"]]
        assert profile.addedDate.tzinfo is not None
        assert profile.lastLoginDate is None
        assert profile.manageableDepartmentIds is None  # zeep reads an empty list as None
        assert [(r.roleId, r.roleType) for r in profile.userRoles.userRole] == [
            (acme.roles["learner"], "learner")
        ]
        assert profile.subordination.subordinationType == "inherit"
        assert profile.coSubordination.subordinationType == "inherit"

    def test_department_administrator(self, soap: Any, acme: World) -> None:
        profile = soap.GetUserProfile(token=acme.token("owner"), userId=acme.users["sales.admin"])
        assert profile.role == "department_administrator"
        assert profile.manageableDepartmentIds.id == [acme.departments["sales"]]
        roles = {r.roleType: r.manageableDepartmentIds.id for r in profile.userRoles.userRole}
        assert roles["department_administrator"] == [acme.departments["sales"]]

    def test_inside_the_managed_subtree(self, soap: Any, acme: World, generation: str) -> None:
        profile = soap.GetUserProfile(
            **auth(acme, generation, "sales.admin"), userId=acme.users["jane.doe"]
        )
        assert profile.userId == acme.users["jane.doe"]

    def test_own_profile_without_view_rights(self, soap: Any, acme: World) -> None:
        profile = soap.GetUserProfile(
            **auth(acme, "credentials", "hr.partner"), userId=acme.users["hr.partner"]
        )
        assert fields_of(profile)["LOGIN"] == "hr.partner"

    def test_outside_the_managed_subtree(
        self, soap: Any, server: Server, acme: World, generation: str
    ) -> None:
        fault = fault_of(
            lambda: soap.GetUserProfile(
                **auth(acme, generation, "sales.admin"), userId=acme.users["hr.partner"]
            )
        )
        assert_denied(fault)
        assert fault["parameter"] == "userId"
        inner = f"<token>{acme.token('sales.admin')}</token><userId>{acme.users['admin']}</userId>"
        assert raw(server, "GetUserProfileRequest", inner).status_code == 403

    @pytest.mark.parametrize("user_id", ["unknown-id", "0f8fad5b-d9cb-469f-a165-70867728950e"])
    def test_unknown_user(
        self, soap: Any, server: Server, acme: World, generation: str, user_id: str
    ) -> None:
        assert_unknown_user(
            fault_of(lambda: soap.GetUserProfile(**auth(acme, generation), userId=user_id))
        )
        inner = f"<token>{acme.token('owner')}</token><userId>{user_id}</userId>"
        assert raw(server, "GetUserProfileRequest", inner).status_code == 404

    def test_user_of_another_account_is_unknown(self, soap: Any, acme: World, world: World) -> None:
        assert_unknown_user(
            fault_of(
                lambda: soap.GetUserProfile(
                    token=acme.token("owner"), userId=world.users["jane.doe"]
                )
            )
        )

    def test_user_id_is_required(self, soap: Any, acme: World, generation: str) -> None:
        assert_wrong(fault_of(lambda: soap.GetUserProfile(**auth(acme, generation))), "userId")

    def test_undeclared_parameter(self, server: Server, acme: World) -> None:
        inner = (
            f"<token>{acme.token('owner')}</token><userId>{acme.users['admin']}</userId>"
            "<login>admin</login>"
        )
        response = raw(server, "GetUserProfileRequest", inner)
        assert response.status_code == 400
        assert "Wrong parameters" in response.text and "<parameter>login</parameter>" in (
            response.text
        )


class TestGetUsers:
    def test_everyone(self, soap: Any, acme: World, generation: str) -> None:
        profiles = soap.GetUsers(**auth(acme, generation))
        assert logins_of(profiles) == ALL_LOGINS
        assert {p.userId for p in profiles} == {*acme.users.values()}

    def test_only_the_managed_subtree(self, soap: Any, acme: World, generation: str) -> None:
        profiles = soap.GetUsers(**auth(acme, generation, "sales.admin"))
        assert logins_of(profiles) == {"sales.admin", "jane.doe"}

    @pytest.mark.parametrize(
        ("filters", "expected"),
        [
            ({"logins": {"login": ["jane.doe", "ADMIN", "nobody"]}}, {"jane.doe", "admin"}),
            ({"emails": {"email": ["Owner@acme.test"]}}, {"owner"}),
            ({"departments": {"id": ["sales"]}}, {"sales.admin"}),
            ({"groups": {"id": ["Newcomers"]}}, {"jane.doe"}),
            (
                {"departments": {"id": ["sales", "sales-eu"]}, "logins": {"login": ["jane.doe"]}},
                {"jane.doe"},
            ),
            ({"departments": {"id": ["eng"]}, "logins": {"login": ["jane.doe"]}}, set()),
        ],
    )
    def test_filters(
        self, soap: Any, acme: World, filters: dict[str, Any], expected: set[str]
    ) -> None:
        names = {**acme.departments, **acme.groups}
        resolved = {
            key: {kind: [names.get(v, v) for v in values] for kind, values in value.items()}
            for key, value in filters.items()
        }
        assert logins_of(soap.GetUsers(token=acme.token("owner"), **resolved)) == expected

    def test_filter_outside_the_subtree_finds_nothing(self, soap: Any, acme: World) -> None:
        profiles = soap.GetUsers(
            token=acme.token("sales.admin"), logins={"login": ["hr.partner", "jane.doe"]}
        )
        assert logins_of(profiles) == {"jane.doe"}

    def test_without_view_rights(self, soap: Any, acme: World) -> None:
        assert_denied(fault_of(lambda: soap.GetUsers(token=acme.token("hr.partner"))))

    @pytest.mark.parametrize("parameter", ["departments", "groups"])
    def test_not_an_id(self, soap: Any, acme: World, parameter: str) -> None:
        fault = fault_of(
            lambda: soap.GetUsers(token=acme.token("owner"), **{parameter: {"id": ["x y"]}})
        )
        assert_wrong(fault, parameter)


class TestListUsers:
    def test_pages_through_everyone(self, soap: Any, acme: World, generation: str) -> None:
        seen: list[str] = []
        token: str | None = None
        pages = 0
        while True:
            page = soap.ListUsers(**auth(acme, generation), pageSize=2, pageToken=token)
            pages += 1
            assert len(page.userProfile) <= 2
            seen.extend(p.userId for p in page.userProfile)
            token = page.nextPageToken
            if token is None:
                break
        assert pages == 3
        assert sorted(seen) == seen and set(seen) == set(acme.users.values())
        assert len(seen) == len(acme.users)

    def test_default_page_and_filters(self, soap: Any, acme: World) -> None:
        page = soap.ListUsers(
            token=acme.token("owner"),
            userIds={"id": [acme.users["admin"], acme.users["jane.doe"], str(uuid.uuid4())]},
        )
        assert page.nextPageToken is None
        assert logins_of(page.userProfile) == {"admin", "jane.doe"}

    def test_only_the_managed_subtree(self, soap: Any, acme: World) -> None:
        page = soap.ListUsers(token=acme.token("sales.admin"), pageSize=1000)
        assert logins_of(page.userProfile) == {"sales.admin", "jane.doe"}

    @pytest.mark.parametrize("size", ["0", "1001", "-3", "many"])
    def test_wrong_page_size(self, server: Server, acme: World, size: str) -> None:
        inner = f"<token>{acme.token('owner')}</token><pageSize>{size}</pageSize>"
        response = raw(server, "ListUsersRequest", inner)
        assert response.status_code == 400
        assert "<parameter>pageSize</parameter>" in response.text

    def test_wrong_page_token(self, soap: Any, acme: World) -> None:
        fault = fault_of(lambda: soap.ListUsers(token=acme.token("owner"), pageToken="!!"))
        assert_wrong(fault, "pageToken")


class TestFindExistingUsers:
    def test_existing_ids_in_order(self, soap: Any, acme: World, generation: str) -> None:
        wanted = [acme.users["jane.doe"], str(uuid.uuid4()), acme.users["owner"]]
        found = soap.FindExistingUsers(**auth(acme, generation), userIds={"id": wanted})
        assert found == [acme.users["jane.doe"], acme.users["owner"]]

    def test_none_exist(self, soap: Any, acme: World) -> None:
        found = soap.FindExistingUsers(
            token=acme.token("owner"), userIds={"id": [str(uuid.uuid4())]}
        )
        assert not found

    def test_only_the_managed_subtree(self, soap: Any, acme: World, world: World) -> None:
        wanted = [acme.users["jane.doe"], acme.users["hr.partner"], world.users["jane.doe"]]
        found = soap.FindExistingUsers(token=acme.token("sales.admin"), userIds={"id": wanted})
        assert found == [acme.users["jane.doe"]]

    def test_not_an_id(self, soap: Any, acme: World) -> None:
        fault = fault_of(
            lambda: soap.FindExistingUsers(token=acme.token("owner"), userIds={"id": ["x"]})
        )
        assert_wrong(fault, "userIds")


class TestGetUserProfileFields:
    def test_fields(self, soap: Any, acme: World, generation: str) -> None:
        fields = {f.name: f for f in soap.GetUserProfileFields(**auth(acme, generation))}
        assert {"login", "email", "first_name", "employee_id", "country"} <= set(fields)
        employee_id = fields["employee_id"]
        assert (employee_id.label, employee_id.type) == ("Employee ID", "string")
        assert employee_id.isUnique is True and employee_id.isRequired is True
        assert fields["birthday"].isRequired is False
        assert isinstance(employee_id.orderPriority, int)


class TestGetGroups:
    def test_groups(self, soap: Any, acme: World, generation: str) -> None:
        found = {g.name: g for g in soap.GetGroups(**auth(acme, generation))}
        assert set(found) == {"Newcomers", "Managers"}
        assert found["Newcomers"].groupId == acme.groups["Newcomers"]
        assert found["Newcomers"].isSmart is False


class TestGetDepartments:
    def test_every_department(self, soap: Any, acme: World, generation: str) -> None:
        found = {d.departmentId: d for d in soap.GetDepartments(**auth(acme, generation))}
        assert set(found) == set(acme.departments.values())
        eu = found[acme.departments["sales-eu"]]
        assert (eu.name, eu.code, eu.parentDepartmentId) == (
            "Sales EU",
            "sales-eu",
            acme.departments["sales"],
        )
        assert eu.subordination.subordinationType == "inherit"
        assert found[acme.root_id].parentDepartmentId is None

    def test_by_code(self, soap: Any, acme: World) -> None:
        found = soap.GetDepartments(token=acme.token("owner"), code="SALES-US")
        assert [d.departmentId for d in found] == [acme.departments["sales-us"]]

    def test_only_the_managed_subtree(self, soap: Any, acme: World) -> None:
        found = soap.GetDepartments(token=acme.token("sales.admin"))
        assert {d.departmentId for d in found} == {
            acme.departments[c] for c in ("sales", "sales-eu", "sales-us")
        }


class TestLearner:
    """A learner sees their own profile and nothing else of the directory."""

    @pytest.mark.parametrize(
        "operation",
        [
            "GetUsers",
            "ListUsers",
            "FindExistingUsers",
            "GetUserProfileFields",
            "GetGroups",
            "GetDepartments",
        ],
    )
    def test_denied(self, soap: Any, acme: World, operation: str) -> None:
        params = READ_CALLS[operation](acme)
        fault = fault_of(lambda: getattr(soap, operation)(token=acme.token("jane.doe"), **params))
        assert_denied(fault)

    def test_other_profiles_denied_own_profile_read(self, soap: Any, acme: World) -> None:
        jane = acme.token("jane.doe")
        assert_denied(fault_of(lambda: soap.GetUserProfile(token=jane, userId=acme.users["admin"])))
        own = soap.GetUserProfile(token=jane, userId=acme.users["jane.doe"])
        assert fields_of(own)["LOGIN"] == "jane.doe"


@pytest.mark.parametrize("operation", ["GetGroups", "GetUserProfileFields", "GetDepartments"])
def test_undeclared_parameter_is_wrong(server: Server, acme: World, operation: str) -> None:
    inner = f"<token>{acme.token('owner')}</token><shoe_size>44</shoe_size>"
    response = raw(server, f"{operation}Request", inner)
    assert response.status_code == 400
    assert "<parameter>shoe_size</parameter>" in response.text


def test_profiles_read_by_zeep_match_the_core(soap: Any, acme: World) -> None:
    """Every user the owner lists carries what the core holds for them."""
    actor = authenticate_token(acme.db, acme.token("owner"))
    for profile in soap.GetUsers(token=acme.token("owner")):
        view = get_user(acme.db, actor, profile.userId)
        assert profile.departmentId == view.department_id
        listed = {k.lower(): v for k, v in fields_of(profile).items()}
        assert listed == {"email": None, **view.fields}  # EMAIL is listed, empty or not
        assert (profile.groups.id if profile.groups else []) == view.groups


class TestResultsFollowTheSchema:
    """Every answer's result element validates against the served WSDL's own XSD, with the
    optional parts present: a last login, a manual supervisor, a work leave, a terminated
    user (read in both generations)."""

    @pytest.fixture(scope="class")
    def schema(self, server: Server) -> etree.XMLSchema:
        wsdl = etree.fromstring(httpx.get(f"{server.base_url}/soap?wsdl").content)
        return etree.XMLSchema(wsdl.find(f"{{{WSDL_NS}}}types/{{{XS_NS}}}schema"))

    @pytest.fixture(scope="class")
    def detailed(self, db: Database) -> World:
        w = make_world(db, acme_spec())
        owner = authenticate_token(db, w.token("owner"))
        jane = w.users["jane.doe"]
        change_subordination(
            db,
            owner,
            jane,
            ChangeSubordination.model_validate(
                {
                    "subordination": {
                        "subordinationType": "manual",
                        "supervisorId": w.users["sales.admin"],
                    },
                    "coSubordination": {"subordinationType": "no_supervisor"},
                }
            ),
        )
        set_work_leaves(
            db,
            owner,
            [
                WorkLeaveItem.model_validate(
                    {
                        "userId": jane,
                        "workLeaveReason": "OnVacation",
                        "startDate": "2030-01-02",
                        "endDate": "2030-01-20",
                    }
                )
            ],
        )
        change_status(db, owner, [w.users["hr.partner"]], 5)
        with db.write() as conn:
            conn.execute(
                sa_update(users)
                .where(users.c.id == jane)
                .values(last_login_at=datetime(2030, 1, 1, 8, 30, tzinfo=UTC))
            )
        return w

    @pytest.mark.parametrize("generation", GENERATIONS)
    @pytest.mark.parametrize(
        ("operation", "inner"),
        [
            ("GetUserProfile", "<userId>{jane}</userId>"),
            ("GetUserProfile", "<userId>{hr}</userId>"),
            ("GetUsers", ""),
            ("ListUsers", "<pageSize>2</pageSize>"),
            ("FindExistingUsers", "<userIds><id>{jane}</id></userIds>"),
            ("GetUserProfileFields", ""),
            ("GetGroups", ""),
            ("GetDepartments", ""),
        ],
    )
    def test_valid(
        self,
        server: Server,
        detailed: World,
        schema: etree.XMLSchema,
        generation: str,
        operation: str,
        inner: str,
    ) -> None:
        w = detailed
        who = (
            f"<token>{w.token('owner')}</token>"
            if generation == "token"
            else f"<credentials><accountUrl>{w.account_url}</accountUrl><email>owner</email>"
            f"<password>{w.passwords['owner']}</password></credentials>"
        )
        inner = inner.format(jane=w.users["jane.doe"], hr=w.users["hr.partner"])
        response = raw(server, f"{operation}Request", who + inner)
        assert response.status_code == 200, response.text
        body = etree.fromstring(response.content).find(f"{{{SOAP_ENV}}}Body")
        assert body is not None
        (result,) = body
        assert result.tag == f"{{{SERVICE_NS}}}{operation}Result"
        assert schema.validate(result), schema.error_log
        if operation == "GetUserProfile" and "jane" in inner:
            profile = result.find(f"{{{SERVICE_NS}}}userProfile")
            assert profile is not None
            assert profile.findtext(f"{{{SERVICE_NS}}}lastLoginDate") == "2030-01-01T08:30:00Z"
            leave = profile.find(f"{{{SERVICE_NS}}}workLeaveStatus")
            assert leave is not None
            assert leave.findtext(f"{{{SERVICE_NS}}}workLeaveReason") == "OnVacation"
            assert (
                profile.findtext(f"{{{SERVICE_NS}}}subordination/{{{SERVICE_NS}}}supervisorId")
                == (w.users["sales.admin"])
            )

    def test_zeep_reads_the_optional_parts(self, soap: Any, detailed: World) -> None:
        w = detailed
        profile = soap.GetUserProfile(token=w.token("owner"), userId=w.users["jane.doe"])
        assert profile.lastLoginDate == datetime(2030, 1, 1, 8, 30, tzinfo=UTC)
        assert (profile.workLeaveStatus.startDate, profile.workLeaveStatus.endDate) == (
            date(2030, 1, 2),
            date(2030, 1, 20),
        )
        assert (profile.subordination.subordinationType, profile.subordination.supervisorId) == (
            "manual",
            w.users["sales.admin"],
        )
        assert profile.coSubordination.subordinationType == "no_supervisor"
        hr = w.users["hr.partner"]
        assert soap.GetUserProfile(token=w.token("owner"), userId=hr).status == 5
        assert soap.GetUserProfile(**auth(w, "credentials"), userId=hr).status == 3
