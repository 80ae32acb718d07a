"""SOAP UpdateUserProfile, DeleteUser and ChangeUserStatus against a running server (zeep reading
the served WSDL), in both generations, on SQLite and PostgreSQL: the valid case, unauthenticated,
forbidden, invalid input, unknown users, conflicts and the seat limit. A rejected call changes
nothing."""

from __future__ import annotations

from typing import Any

import pytest

from learndir.core.auth import authenticate_token
from learndir.core.users.queries import UserView, get_user
from learndir.db.engine import Database
from tests.api.soap.helpers import (
    assert_denied,
    assert_unknown_user,
    assert_wrong,
    auth,
    fault_of,
    raw,
    unique,
)
from tests.support import Server, World, acme_spec, make_world

UNKNOWN_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


@pytest.fixture(scope="module")
def acme(db: Database) -> World:
    """acme without its seat limit: this module adds a user or two per test."""
    spec = acme_spec()
    del spec["seatLimit"]
    return make_world(db, spec)


def add(soap: Any, world: World, department: str = "sales-eu", **extra: Any) -> str:
    login = extra.pop("login", None) or unique("u")
    user_id: str = soap.AddUser(
        token=world.token("owner"),
        login=login,
        email=f"{login}@acme.test",
        departmentId=world.departments[department],
        fields={"field": [{"name": "employee_id", "value": unique("E")}]},
        **extra,
    )
    return user_id


def view(world: World, user_id: str) -> UserView:
    return get_user(world.db, authenticate_token(world.db, world.token("owner")), user_id)


def unchanged(world: World, user_id: str, before: UserView) -> None:
    assert view(world, user_id) == before


class TestUnauthenticated:
    @pytest.mark.parametrize("operation", ["UpdateUserProfile", "DeleteUser", "ChangeUserStatus"])
    @pytest.mark.parametrize("who", ["", "<token>nope</token>", "bad-password"])
    def test_unauthorized(self, server: Server, acme: World, operation: str, who: str) -> None:
        if who == "bad-password":
            who = (
                f"<credentials><accountUrl>{acme.account_url}</accountUrl><email>owner</email>"
                "<password>Wrong-Pass-1</password></credentials>"
            )
        user_id = acme.users["jane.doe"]
        before = view(acme, user_id)
        inner = f"{who}<userId>{user_id}</userId><status>3</status><first_name>X</first_name>"
        if operation != "ChangeUserStatus":
            inner = inner.replace("<status>3</status>", "")
        if operation != "UpdateUserProfile":
            inner = inner.replace("<first_name>X</first_name>", "")
        response = raw(server, f"{operation}Request", inner)
        assert response.status_code == 401
        assert "<faultstring>Unauthorized</faultstring>" in response.text
        unchanged(acme, user_id, before)


class TestUpdateUserProfile:
    def test_profile_department_and_groups(self, soap: Any, acme: World, generation: str) -> None:
        user_id = add(soap, acme)
        new_login = unique("renamed")
        result = soap.UpdateUserProfile(
            **auth(acme, generation),
            userId=user_id,
            login=new_login,
            first_name="Ada",
            departmentId=acme.departments["sales-us"],
            groups={"id": [acme.groups["Managers"]]},
            fields={"field": [{"name": "country", "value": "FR"}]},
        )
        assert result is None
        user = view(acme, user_id)
        assert user.fields["login"] == new_login and user.fields["first_name"] == "Ada"
        assert user.fields["country"] == "FR"
        assert user.department_id == acme.departments["sales-us"]
        assert user.groups == [acme.groups["Managers"]]

    def test_only_what_is_given_changes(self, soap: Any, acme: World) -> None:
        user_id = add(soap, acme, first_name="Kept", groups={"id": [acme.groups["Newcomers"]]})
        before = view(acme, user_id)
        soap.UpdateUserProfile(token=acme.token("owner"), userId=user_id, job_title="Lead")
        after = view(acme, user_id)
        assert after.fields == {**before.fields, "job_title": "Lead"}
        assert (after.groups, after.department_id, after.roles) == (
            before.groups,
            before.department_id,
            before.roles,
        )

    def test_empty_groups_clear_them(self, soap: Any, acme: World) -> None:
        user_id = add(soap, acme, groups={"id": [acme.groups["Newcomers"]]})
        soap.UpdateUserProfile(token=acme.token("owner"), userId=user_id, groups={"id": []})
        assert view(acme, user_id).groups == []

    @pytest.mark.parametrize(
        ("element", "kept"),
        [
            ("<groups/>", False),
            ("<groups>  </groups>", False),
            (
                '<groups xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:nil="true"/>',
                True,
            ),
            ("", True),
        ],
    )
    def test_groups_sent_empty_nil_or_not_at_all(
        self, soap: Any, server: Server, acme: World, element: str, kept: bool
    ) -> None:
        user_id = add(soap, acme, groups={"id": [acme.groups["Newcomers"]]})
        inner = (
            f"<token>{acme.token('owner')}</token><userId>{user_id}</userId>{element}"
            "<job_title>Clerk</job_title>"
        )
        assert raw(server, "UpdateUserProfileRequest", inner).status_code == 200
        user = view(acme, user_id)
        assert user.groups == ([acme.groups["Newcomers"]] if kept else [])
        assert user.fields["job_title"] == "Clerk"

    def test_role(self, soap: Any, acme: World) -> None:
        user_id = add(soap, acme, department="sales")
        soap.UpdateUserProfile(
            token=acme.token("owner"),
            userId=user_id,
            role="department_administrator",
            manageableDepartmentIds={"id": [acme.departments["sales-eu"]]},
        )
        profile = soap.GetUserProfile(token=acme.token("owner"), userId=user_id)
        assert profile.role == "department_administrator"
        assert profile.manageableDepartmentIds.id == [acme.departments["sales-eu"]]

    def test_top_level_profile_value_of_a_custom_field(
        self, soap: Any, server: Server, acme: World
    ) -> None:
        user_id = add(soap, acme)
        inner = (
            f"<token>{acme.token('owner')}</token><userId>{user_id}</userId>"
            "<Country>DE</Country><mobile>+49 30 1234567</mobile>"
        )
        assert raw(server, "UpdateUserProfileRequest", inner).status_code == 200
        fields = view(acme, user_id).fields
        assert (fields["country"], fields["mobile"]) == ("DE", "+49 30 1234567")

    def test_department_administrator_inside_the_subtree(self, soap: Any, acme: World) -> None:
        user_id = add(soap, acme)
        soap.UpdateUserProfile(
            **auth(acme, "credentials", "sales.admin"),
            userId=user_id,
            departmentId=acme.departments["sales-us"],
        )
        assert view(acme, user_id).department_id == acme.departments["sales-us"]

    @pytest.mark.parametrize(
        ("target", "change"),
        [
            ("eng", {"first_name": "No"}),
            ("sales-eu", {"departmentId": "eng"}),
            ("sales-eu", {"role": "account_administrator"}),
        ],
    )
    def test_forbidden(
        self,
        soap: Any,
        acme: World,
        generation: str,
        target: str,
        change: dict[str, Any],
    ) -> None:
        user_id = add(soap, acme, department=target)
        change = {k: acme.departments.get(v, v) for k, v in change.items()}
        before = view(acme, user_id)
        fault = fault_of(
            lambda: soap.UpdateUserProfile(
                **auth(acme, generation, "sales.admin"), userId=user_id, **change
            )
        )
        assert_denied(fault)
        unchanged(acme, user_id, before)

    def test_duplicate_login(self, soap: Any, server: Server, acme: World, generation: str) -> None:
        user_id = add(soap, acme)
        before = view(acme, user_id)
        fault = fault_of(
            lambda: soap.UpdateUserProfile(
                **auth(acme, generation), userId=user_id, login="JANE.DOE"
            )
        )
        assert (fault["faultcode"], fault["message"], fault["code"]) == (
            "SOAP-ENV:Client",
            "User with the same login is already registered.",
            "login_taken",
        )
        inner = (
            f"<token>{acme.token('owner')}</token><userId>{user_id}</userId><login>admin</login>"
        )
        assert raw(server, "UpdateUserProfileRequest", inner).status_code == 409
        unchanged(acme, user_id, before)

    @pytest.mark.parametrize(
        ("change", "parameter"),
        [
            ({"departmentId": UNKNOWN_ID}, "departmentId"),
            ({"groups": {"id": [UNKNOWN_ID]}}, "groups"),
            ({"role": "wizard"}, "role"),
            ({"email": "not-an-email"}, "email"),
            ({"fields": {"field": [{"name": "shoe_size", "value": "44"}]}}, "fields.shoe_size"),
            ({"fields": {"field": [{"name": "employee_id", "value": "E-4"}]}}, None),
        ],
    )
    def test_rejected_values(
        self,
        soap: Any,
        acme: World,
        generation: str,
        change: dict[str, Any],
        parameter: str | None,
    ) -> None:
        user_id = add(soap, acme)
        before = view(acme, user_id)
        fault = fault_of(
            lambda: soap.UpdateUserProfile(**auth(acme, generation), userId=user_id, **change)
        )
        if parameter is None:  # the value another user holds in a unique field
            assert fault["message"] == "User with the same employee_id is already registered."
        else:
            assert_wrong(fault, parameter)
        unchanged(acme, user_id, before)

    def test_user_id_is_required(self, soap: Any, acme: World) -> None:
        assert_wrong(
            fault_of(lambda: soap.UpdateUserProfile(token=acme.token("owner"), first_name="X")),
            "userId",
        )

    @pytest.mark.parametrize("user_id", [UNKNOWN_ID, "nonsense"])
    def test_unknown_user(self, soap: Any, acme: World, generation: str, user_id: str) -> None:
        assert_unknown_user(
            fault_of(
                lambda: soap.UpdateUserProfile(
                    **auth(acme, generation), userId=user_id, first_name="X"
                )
            )
        )


class TestDeleteUser:
    def test_deleted_and_login_free_again(self, soap: Any, acme: World, generation: str) -> None:
        login = unique("gone")
        user_id = add(soap, acme, login=login)
        before = acme.snapshot()
        assert soap.DeleteUser(**auth(acme, generation), userId=user_id) is None
        assert acme.snapshot()["users"] == before["users"] - 1
        assert_unknown_user(
            fault_of(lambda: soap.GetUserProfile(token=acme.token("owner"), userId=user_id))
        )
        again = add(soap, acme, login=login)
        assert again != user_id
        assert view(acme, again).fields["email"] == f"{login}@acme.test"

    def test_department_administrator_inside_the_subtree(self, soap: Any, acme: World) -> None:
        user_id = add(soap, acme, department="sales-us")
        soap.DeleteUser(token=acme.token("sales.admin"), userId=user_id)
        assert_unknown_user(
            fault_of(lambda: soap.DeleteUser(token=acme.token("owner"), userId=user_id))
        )

    @pytest.mark.parametrize(
        ("actor", "target"),
        [("sales.admin", "eng"), ("admin", "owner"), ("admin", "admin"), ("sales.admin", "admin")],
    )
    def test_forbidden(
        self, soap: Any, acme: World, generation: str, actor: str, target: str
    ) -> None:
        user_id = acme.users[target] if target in acme.users else add(soap, acme, department=target)
        before = acme.snapshot()
        assert_denied(
            fault_of(lambda: soap.DeleteUser(**auth(acme, generation, actor), userId=user_id))
        )
        assert acme.snapshot() == before

    @pytest.mark.parametrize("user_id", [UNKNOWN_ID, "", "nonsense"])
    def test_unknown_or_missing(
        self, soap: Any, acme: World, generation: str, user_id: str
    ) -> None:
        before = acme.snapshot()
        fault = fault_of(lambda: soap.DeleteUser(**auth(acme, generation), userId=user_id or None))
        if user_id:
            assert_unknown_user(fault)
        else:
            assert_wrong(fault, "userId")
        assert acme.snapshot() == before


class TestChangeUserStatus:
    def test_deactivate_and_activate(self, soap: Any, acme: World, generation: str) -> None:
        user_id = add(soap, acme)
        assert soap.ChangeUserStatus(**auth(acme, generation), userId=user_id, status=3) is None
        assert view(acme, user_id).status == 3
        soap.ChangeUserStatus(**auth(acme, generation), userId=user_id, status="1")
        assert view(acme, user_id).status == 1

    def test_terminated_reads_as_inactive_in_the_older_generation(
        self, soap: Any, acme: World
    ) -> None:
        user_id = add(soap, acme)
        soap.ChangeUserStatus(token=acme.token("owner"), userId=user_id, status=5)
        assert view(acme, user_id).status == 5
        newer = soap.GetUserProfile(token=acme.token("owner"), userId=user_id)
        older = soap.GetUserProfile(**auth(acme, "credentials"), userId=user_id)
        assert (newer.status, older.status) == (5, 3)
        login = view(acme, user_id).fields["login"]
        listed = soap.GetUsers(**auth(acme, "credentials"), logins={"login": [login]})
        paged = soap.ListUsers(token=acme.token("owner"), logins={"login": [login]})
        assert ([p.status for p in listed], [p.status for p in paged.userProfile]) == ([3], [5])

    @pytest.mark.parametrize(
        ("generation", "status", "message"),
        [
            ("credentials", "7", "User status must be 1 or 3, 7 given"),
            ("credentials", "5", "User status must be 1 or 3, 5 given"),
            ("credentials", "active", "User status must be 1 or 3, active given"),
            ("token", "7", "User status must be 1, 3 or 5, 7 given"),
            ("token", "0", "User status must be 1, 3 or 5, 0 given"),
        ],
    )
    def test_wrong_status(
        self, soap: Any, acme: World, generation: str, status: str, message: str
    ) -> None:
        user_id = add(soap, acme)
        before = view(acme, user_id)
        fault = fault_of(
            lambda: soap.ChangeUserStatus(**auth(acme, generation), userId=user_id, status=status)
        )
        assert (fault["faultcode"], fault["message"], fault["code"], fault["parameter"]) == (
            "SOAP-ENV:Client",
            message,
            "invalid_parameters",
            "status",
        )
        unchanged(acme, user_id, before)

    def test_status_is_required(self, soap: Any, acme: World) -> None:
        fault = fault_of(
            lambda: soap.ChangeUserStatus(token=acme.token("owner"), userId=acme.users["jane.doe"])
        )
        assert_wrong(fault, "status")

    @pytest.mark.parametrize(
        ("generation", "actor", "target", "status"),
        [
            ("credentials", "sales.admin", "hr.partner", "3"),
            ("token", "sales.admin", "admin", "1"),
            ("credentials", "admin", "owner", "3"),
            ("token", "admin", "owner", "5"),
            ("token", "admin", "admin", "3"),
            ("credentials", "admin", "admin", "3"),
        ],
    )
    def test_forbidden(
        self, soap: Any, acme: World, generation: str, actor: str, target: str, status: str
    ) -> None:
        before = acme.snapshot()
        fault = fault_of(
            lambda: soap.ChangeUserStatus(
                **auth(acme, generation, actor), userId=acme.users[target], status=status
            )
        )
        assert_denied(fault)
        assert acme.snapshot() == before

    def test_unknown_user(self, soap: Any, acme: World, generation: str) -> None:
        assert_unknown_user(
            fault_of(
                lambda: soap.ChangeUserStatus(**auth(acme, generation), userId=UNKNOWN_ID, status=3)
            )
        )

    def test_seat_limit_on_activation(self, soap: Any, server: Server, db: Database) -> None:
        full = make_world(db, acme_spec(seatLimit=5))  # the owner and the file's four users
        jane = full.users["jane.doe"]
        soap.ChangeUserStatus(token=full.token("owner"), userId=jane, status=3)
        newcomer = add(soap, full)  # takes the seat jane freed
        before = full.snapshot()
        fault = fault_of(
            lambda: soap.ChangeUserStatus(**auth(full, "credentials"), userId=jane, status=1)
        )
        assert (fault["faultcode"], fault["message"], fault["code"]) == (
            "SOAP-ENV:Client",
            "Number of user accounts is exceeded",
            "seat_limit_exceeded",
        )
        inner = f"<token>{full.token('owner')}</token><userId>{jane}</userId><status>1</status>"
        assert raw(server, "ChangeUserStatusRequest", inner).status_code == 403
        assert full.snapshot() == before and view(full, jane).status == 3
        # Freeing a seat again lets jane back in.
        soap.ChangeUserStatus(token=full.token("owner"), userId=newcomer, status=5)
        soap.ChangeUserStatus(token=full.token("owner"), userId=jane, status=1)
        assert view(full, jane).status == 1
