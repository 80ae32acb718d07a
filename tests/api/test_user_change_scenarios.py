"""The rules of changing users (update, delete, status) as one scenario table, played through
REST JSON and REST XML (and SOAP once its transport has these calls), on SQLite and
PostgreSQL.

Each row creates its own target user, calls one operation and states the outcome; a rejected
row must leave the account and the target exactly as they were, with the exact message and the
parameter to blame.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import select

from learndir.core.auth import authenticate_token
from learndir.core.errors import ErrorCode
from learndir.core.users.commands import AddUser, parse_command
from learndir.core.users.service import add_user
from learndir.db.schema import (
    group_members,
    profile_fields,
    user_field_values,
    users,
)
from tests.api.scenarios import Err, assert_error
from tests.api.test_add_user_scenarios import role_kinds
from tests.support import Server, World, acme_spec, make_world
from tests.transports import Auth, Outcome, RestJson, RestXml, Soap

OK = "ok"
E = ErrorCode
IDS = E.INVALID_PARAMETERS
SOAP_CALLS = {"update": "update_user", "delete": "delete_user", "status": "change_status"}


@dataclass
class Ctx:
    uid: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    # Values a row's params or check need, e.g. the id of a second user it created.
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def login(self) -> str:
        return f"t{self.uid}"


Target = Callable[[World, Ctx], dict[str, Any]]
Params = Callable[[World, Ctx, str], Any]
Check = Callable[[World, Ctx, str], None]


def victim(
    department: str = "sales-eu",
    *,
    managed: tuple[str, ...] = (),
    groups: tuple[str, ...] = (),
    fields: dict[str, str] | None = None,
    **extra: Any,
) -> Target:
    """addUser parameters of the row's own target user (a learner in Sales EU by default);
    departments and groups by code and name."""

    def make(w: World, c: Ctx) -> dict[str, Any]:
        params: dict[str, Any] = {
            "login": c.login,
            "email": f"{c.login}@acme.test",
            "departmentId": w.departments[department],
            "fields": {"employee_id": f"E{c.uid}", **(fields or {})},
            **extra,
        }
        if managed:
            params["manageableDepartmentIds"] = [w.departments[d] for d in managed]
        if groups:
            params["groups"] = [w.groups[g] for g in groups]
        return params

    return make


@dataclass(frozen=True)
class Row:
    id: str
    op: str  # update | delete | status
    params: Params
    expect: str | Err
    target: Target | str = field(default_factory=victim)  # or the login of a world user
    actor: str = "owner"
    check: Check | None = None
    # Run on the target before the call (e.g. deactivate it first).
    setup: Check | None = None


# ---- checks -----------------------------------------------------------------------------


def user_row(w: World, user_id: str) -> Any:
    with w.db.read() as conn:
        return conn.execute(select(users).where(users.c.id == user_id)).first()


def stored(**columns: Any) -> Check:
    def check(w: World, c: Ctx, user_id: str) -> None:
        row = user_row(w, user_id)
        for name, value in columns.items():
            expected = value(w, c) if callable(value) else value
            assert getattr(row, name) == expected, (name, getattr(row, name))

    return check


def custom_value(w: World, user_id: str, name: str) -> str | None:
    with w.db.read() as conn:
        return conn.execute(
            select(user_field_values.c.value)
            .join(profile_fields, profile_fields.c.id == user_field_values.c.field_id)
            .where(user_field_values.c.user_id == user_id, profile_fields.c.name == name)
        ).scalar()


def field_is(name: str, value: str | None) -> Check:
    def check(w: World, c: Ctx, user_id: str) -> None:
        assert custom_value(w, user_id, name) == value

    return check


def has_roles(**expected: list[str]) -> Check:
    def check(w: World, c: Ctx, user_id: str) -> None:
        want = {
            name.replace("__", " "): sorted(w.departments[d] for d in depts)
            for name, depts in expected.items()
        }
        assert role_kinds(w, user_id) == want

    return check


def in_groups(*names: str) -> Check:
    def check(w: World, c: Ctx, user_id: str) -> None:
        with w.db.read() as conn:
            got = {
                r.group_id
                for r in conn.execute(
                    select(group_members.c.group_id).where(group_members.c.user_id == user_id)
                )
            }
        assert got == {w.groups[n] for n in names}

    return check


def gone(w: World, c: Ctx, user_id: str) -> None:
    assert user_row(w, user_id) is None
    # The login and e-mail are free again: a new user may take them.
    owner = authenticate_token(w.db, w.token("owner"))
    again = parse_command(
        AddUser,
        {
            "login": c.login.upper(),
            "email": f"{c.login}@acme.test",
            "departmentId": w.root_id,
            "fields": {"employee_id": f"E{c.uid}"},
        },
    )
    assert add_user(w.db, owner, again)


def user_state(w: World, user_id: str) -> tuple[Any, ...]:
    """Everything the operations of this table may change about one user."""
    with w.db.read() as conn:
        row = conn.execute(select(users).where(users.c.id == user_id)).first()
        values = sorted(
            conn.execute(
                select(user_field_values.c.field_id, user_field_values.c.value).where(
                    user_field_values.c.user_id == user_id
                )
            ).all()
        )
        groups = sorted(
            conn.execute(
                select(group_members.c.group_id).where(group_members.c.user_id == user_id)
            ).scalars()
        )
    return (tuple(row) if row else None, values, groups, role_kinds(w, user_id))


def all_of(*checks: Check) -> Check:
    def check(w: World, c: Ctx, user_id: str) -> None:
        for each in checks:
            each(w, c, user_id)

    return check


def deactivated(w: World, c: Ctx, user_id: str) -> None:
    with w.db.write() as conn:
        conn.execute(users.update().where(users.c.id == user_id).values(status=3))


def fresh_uuid() -> str:
    return str(uuid.uuid4())


def dept(name: str) -> Callable[[World, Ctx], str]:
    return lambda w, c: w.departments[name]


# ---- the table --------------------------------------------------------------------------

ROWS: list[Row] = [
    # Profile values: each field kind, addUser's checks on every changed value.
    Row(
        "update-builtin-fields",
        "update",
        lambda w, c, u: {
            "fields": {"first_name": "Kate", "LAST_NAME": "Bell", "phone": "+49 30 1"}
        },
        OK,
        check=stored(first_name="Kate", last_name="Bell", phone="+49 30 1", job_title=None),
    ),
    Row(
        "update-login-and-email",
        "update",
        lambda w, c, u: {"fields": {"login": f"{c.login}.new", "email": f"{c.login}@new.test"}},
        OK,
        check=stored(
            login=lambda w, c: f"{c.login}.new",
            login_key=lambda w, c: f"{c.login}.new",
            email=lambda w, c: f"{c.login}@new.test",
        ),
    ),
    Row(
        "update-own-login-other-case",
        "update",
        lambda w, c, u: {"fields": {"login": c.login.upper()}},
        OK,
        check=stored(login=lambda w, c: c.login.upper()),
    ),
    Row(
        "update-custom-fields",
        "update",
        lambda w, c, u: {"fields": {"birthday": "1990-02-01", "country": "de", "mobile": "+4930"}},
        OK,
        check=all_of(
            field_is("birthday", "1990-02-01"),
            field_is("country", "DE"),
            field_is("mobile", "+4930"),
        ),
    ),
    Row(
        "update-clears-optional-fields",
        "update",
        lambda w, c, u: {"fields": {"mobile": "", "first_name": "", "email": ""}},
        OK,
        target=victim(fields={"mobile": "+4930", "first_name": "Ann"}),
        check=all_of(stored(first_name=None, email=None, email_key=None), field_is("mobile", None)),
    ),
    Row(
        "update-given-fields-only",
        "update",
        lambda w, c, u: {"fields": {"job_title": "Lead"}},
        OK,
        target=victim(fields={"birthday": "1980-01-01"}),
        check=all_of(
            stored(job_title="Lead", email=lambda w, c: f"{c.login}@acme.test"),
            field_is("birthday", "1980-01-01"),
            lambda w, c, u: field_is("employee_id", f"E{c.uid}")(w, c, u),
        ),
    ),
    Row(
        "login-taken",
        "update",
        lambda w, c, u: {"fields": {"login": "JANE.doe"}},
        Err(E.LOGIN_TAKEN, "login"),
    ),
    Row(
        "email-taken",
        "update",
        lambda w, c, u: {"fields": {"email": "Jane.Doe@acme.test"}},
        Err(E.EMAIL_TAKEN, "email"),
    ),
    Row(
        "unique-field-taken",
        "update",
        lambda w, c, u: {"fields": {"employee_id": "E-4"}},
        Err(
            E.FIELD_VALUE_TAKEN,
            "fields.employee_id",
            "User with the same employee_id is already registered.",
        ),
    ),
    Row(
        "required-field-emptied",
        "update",
        lambda w, c, u: {"fields": {"employee_id": " "}},
        Err(IDS, "fields.employee_id"),
    ),
    Row("login-emptied", "update", lambda w, c, u: {"fields": {"login": ""}}, Err(IDS, "login")),
    Row(
        "email-invalid",
        "update",
        lambda w, c, u: {"fields": {"email": "not-an-address"}},
        Err(IDS, "email"),
    ),
    Row(
        "unknown-field",
        "update",
        lambda w, c, u: {"fields": {"shoe_size": "42"}},
        Err(IDS, "fields.shoe_size"),
    ),
    Row(
        "birthdate-invalid",
        "update",
        lambda w, c, u: {"fields": {"birthday": "31/02/1990"}},
        Err(IDS, "fields.birthday"),
    ),
    Row(
        "one-bad-value-changes-nothing",
        "update",
        lambda w, c, u: {
            "fields": {"first_name": "Changed", "phone": "call me"},
            "departmentId": w.departments["eng"],
        },
        Err(IDS, "fields.phone"),
    ),
    # Department.
    Row(
        "move-department",
        "update",
        lambda w, c, u: {"departmentId": w.departments["eng"]},
        OK,
        check=stored(department_id=dept("eng")),
    ),
    Row(
        "department-unknown",
        "update",
        lambda w, c, u: {"departmentId": fresh_uuid()},
        Err(IDS, "departmentId"),
    ),
    Row(
        "department-of-another-account",
        "update",
        lambda w, c, u: {"departmentId": OTHER["world"].root_id},
        Err(IDS, "departmentId"),
    ),
    # Roles and managed departments.
    Row(
        "role-department-admin",
        "update",
        lambda w, c, u: {
            "role": "department_administrator",
            "manageableDepartmentIds": [w.departments["sales-us"]],
        },
        OK,
        check=has_roles(department_administrator=["sales-us"]),
    ),
    Row(
        "role-administrator",
        "update",
        lambda w, c, u: {"role": "administrator"},
        OK,
        check=has_roles(account_administrator=[]),
    ),
    Row(
        "roles-array",
        "update",
        lambda w, c, u: {
            "roles": [
                {"roleId": w.roles["learner"]},
                {
                    "roleId": w.roles["HR Partner"],
                    "manageableDepartmentIds": [w.departments["eng"]],
                },
            ]
        },
        OK,
        check=has_roles(learner=[], HR__Partner=["eng"]),
    ),
    Row(
        "role-needs-departments",
        "update",
        lambda w, c, u: {"role": "department_administrator"},
        Err(IDS, "manageableDepartmentIds"),
    ),
    Row(
        "role-owner-not-assignable",
        "update",
        lambda w, c, u: {"role": "custom", "roleId": w.roles["owner"]},
        Err(IDS, "roleId"),
    ),
    Row(
        "managed-departments-alone-retarget-the-role",
        "update",
        lambda w, c, u: {"manageableDepartmentIds": [w.departments["support"]]},
        OK,
        target=victim(role="department_administrator", managed=("sales",)),
        check=has_roles(department_administrator=["support"]),
    ),
    Row(
        "managed-departments-of-a-learner",
        "update",
        lambda w, c, u: {"manageableDepartmentIds": [w.departments["support"]]},
        Err(IDS, "manageableDepartmentIds"),
    ),
    Row(
        "owner-role-cannot-change",
        "update",
        lambda w, c, u: {"role": "learner"},
        Err(E.PERMISSION_DENIED, "role"),
        target="owner",
        actor="admin",
    ),
    # Groups: the given list is the new set.
    Row(
        "groups-replaced",
        "update",
        lambda w, c, u: {"groupIds": [w.groups["Managers"]]},
        OK,
        target=victim(groups=("Newcomers",)),
        check=in_groups("Managers"),
    ),
    Row(
        "groups-cleared",
        "update",
        lambda w, c, u: {"groupIds": []},
        OK,
        target=victim(groups=("Newcomers",)),
        check=in_groups(),
    ),
    Row(
        "groups-untouched-when-absent",
        "update",
        lambda w, c, u: {"fields": {"first_name": "G"}},
        OK,
        target=victim(groups=("Newcomers",)),
        check=in_groups("Newcomers"),
    ),
    Row(
        "group-unknown",
        "update",
        lambda w, c, u: {"groupIds": [w.groups["Managers"], fresh_uuid()]},
        Err(IDS, "groupIds"),
        target=victim(groups=("Newcomers",)),
    ),
    # Scope: department administrators change only users inside their subtrees.
    Row(
        "department-admin-updates-in-scope",
        "update",
        lambda w, c, u: {"fields": {"job_title": "Rep"}, "departmentId": w.departments["sales"]},
        OK,
        actor="sales.admin",
        check=stored(job_title="Rep", department_id=dept("sales")),
    ),
    Row(
        "department-admin-moves-user-out-of-scope",
        "update",
        lambda w, c, u: {"departmentId": w.departments["eng"]},
        Err(E.PERMISSION_DENIED, "departmentId"),
        actor="sales.admin",
    ),
    Row(
        "department-admin-user-out-of-scope",
        "update",
        lambda w, c, u: {"fields": {"job_title": "X"}},
        Err(E.PERMISSION_DENIED, "userId"),
        target=victim("eng"),
        actor="sales.admin",
    ),
    Row(
        "department-admin-cannot-grant-administrator",
        "update",
        lambda w, c, u: {"role": "administrator"},
        Err(E.PERMISSION_DENIED, "role"),
        actor="sales.admin",
    ),
    Row(
        "department-admin-grants-within-scope",
        "update",
        lambda w, c, u: {
            "role": "department_administrator",
            "manageableDepartmentIds": [w.departments["sales-eu"]],
        },
        OK,
        actor="sales.admin",
        check=has_roles(department_administrator=["sales-eu"]),
    ),
    Row(
        "department-admin-cannot-grant-outside-scope",
        "update",
        lambda w, c, u: {
            "role": "department_administrator",
            "manageableDepartmentIds": [w.departments["eng"]],
        },
        Err(E.PERMISSION_DENIED, "manageableDepartmentIds"),
        actor="sales.admin",
    ),
    Row(
        "department-admin-cannot-touch-an-administrator",
        "update",
        lambda w, c, u: {"fields": {"job_title": "X"}},
        Err(E.PERMISSION_DENIED, "userId"),
        target=victim("sales", role="administrator"),
        actor="sales.admin",
    ),
    Row(
        "learner-cannot-update",
        "update",
        lambda w, c, u: {"fields": {"job_title": "X"}},
        Err(E.PERMISSION_DENIED),
        actor="jane.doe",
    ),
    Row(
        "custom-role-without-edit-rights",
        "update",
        lambda w, c, u: {"fields": {"job_title": "X"}},
        Err(E.PERMISSION_DENIED),
        target=victim("eng"),
        actor="hr.partner",
    ),
    Row(
        "unknown-user",
        "update",
        lambda w, c, u: {"fields": {"job_title": "X"}},
        Err(E.NOT_FOUND, "userId", "Unknown user"),
        target="unknown",
    ),
    Row(
        "user-of-another-account",
        "update",
        lambda w, c, u: {"fields": {"job_title": "X"}},
        Err(E.NOT_FOUND, "userId", "Unknown user"),
        target="other-account",
    ),
    # Delete.
    Row("delete-frees-login-and-email", "delete", lambda w, c, u: None, OK, check=gone),
    Row(
        "delete-owner",
        "delete",
        lambda w, c, u: None,
        Err(E.PERMISSION_DENIED, "userId"),
        target="owner",
        actor="admin",
    ),
    Row(
        "delete-self",
        "delete",
        lambda w, c, u: None,
        Err(E.PERMISSION_DENIED, "userId"),
        target="admin",
        actor="admin",
    ),
    Row(
        "delete-out-of-scope",
        "delete",
        lambda w, c, u: None,
        Err(E.PERMISSION_DENIED, "userId"),
        target=victim("eng"),
        actor="sales.admin",
    ),
    Row("delete-in-scope", "delete", lambda w, c, u: None, OK, actor="sales.admin", check=gone),
    Row(
        "delete-unknown",
        "delete",
        lambda w, c, u: None,
        Err(E.NOT_FOUND, "userId", "Unknown user"),
        target="unknown",
    ),
    # Status.
    Row("status-inactive", "status", lambda w, c, u: 3, OK, check=stored(status=3)),
    Row("status-terminated", "status", lambda w, c, u: 5, OK, check=stored(status=5)),
    Row(
        "status-active-again",
        "status",
        lambda w, c, u: "1",
        OK,
        setup=deactivated,
        check=stored(status=1),
    ),
    *[
        Row(
            f"status-{label}",
            "status",
            lambda w, c, u, v=value: v,
            Err(IDS, "status", f"User status must be 1, 3 or 5, {value} given"),
        )
        for label, value in (("7", 7), ("0", 0), ("2", 2), ("text", "active"))
    ],
    Row(
        "status-owner",
        "status",
        lambda w, c, u: 3,
        Err(E.PERMISSION_DENIED, "userId"),
        target="owner",
        actor="admin",
    ),
    Row(
        "status-terminate-owner",
        "status",
        lambda w, c, u: 5,
        Err(E.PERMISSION_DENIED, "userId"),
        target="owner",
        actor="admin",
    ),
    Row(
        "status-self",
        "status",
        lambda w, c, u: 3,
        Err(E.PERMISSION_DENIED, "userId"),
        target="admin",
        actor="admin",
    ),
    Row(
        "status-out-of-scope",
        "status",
        lambda w, c, u: 3,
        Err(E.PERMISSION_DENIED, "userId"),
        target=victim("support"),
        actor="sales.admin",
    ),
    Row(
        "status-unknown-user",
        "status",
        lambda w, c, u: 3,
        Err(E.NOT_FOUND, "userId", "Unknown user"),
        target="unknown",
    ),
]

OTHER: dict[str, World] = {}


@pytest.fixture(scope="module")
def change_world(db: Any) -> Iterator[World]:
    world = make_world(db, acme_spec(seatLimit=None))
    OTHER["world"] = make_world(db, acme_spec(seatLimit=None))
    yield world
    OTHER.clear()


@pytest.fixture(scope="module", params=["rest-xml", "rest-json", "soap"])
def transport(request: pytest.FixtureRequest, server: Server) -> Any:
    kinds = {"soap": Soap, "rest-xml": RestXml, "rest-json": RestJson}
    return kinds[request.param](server.base_url)


def _target(w: World, c: Ctx, row: Row) -> str:
    if row.target == "unknown":
        return fresh_uuid()
    if row.target == "other-account":
        return OTHER["world"].users["jane.doe"]
    if isinstance(row.target, str):
        return w.users[row.target]
    owner = authenticate_token(w.db, w.token("owner"))
    return add_user(w.db, owner, parse_command(AddUser, row.target(w, c)))


def _call(transport: Any, row: Row, user_id: str, params: Any, auth: Auth) -> Outcome:
    if row.op == "update":
        result: Outcome = transport.update_user(user_id, params, auth)
    elif row.op == "delete":
        result = transport.delete_user(user_id, auth)
    else:
        result = transport.change_status(user_id, params, auth)
    return result


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_change_user(row: Row, transport: Any, change_world: World) -> None:
    if not hasattr(transport, SOAP_CALLS[row.op]):
        pytest.skip(f"the {transport.name} transport has no {SOAP_CALLS[row.op]} yet")
    world = change_world
    ctx = Ctx()
    user_id = _target(world, ctx, row)
    if row.setup is not None:
        row.setup(world, ctx, user_id)
    params = row.params(world, ctx, user_id)
    before = (world.snapshot(), user_state(world, user_id))
    outcome = _call(transport, row, user_id, params, Auth(token=world.token(row.actor)))
    if row.expect == OK:
        expected_status = 204 if row.op == "delete" and transport.name != "soap" else 200
        assert outcome.status == expected_status, outcome
        assert outcome.code is None and outcome.data is None, outcome
        if row.check is not None:
            row.check(world, ctx, user_id)
    else:
        assert isinstance(row.expect, Err)
        assert_error(outcome, row.expect, transport)
        after = (world.snapshot(), user_state(world, user_id))
        assert after == before, "a rejected call must change nothing"
