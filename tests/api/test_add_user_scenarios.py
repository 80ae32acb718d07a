"""The rules of addUser (seeds 000 and 002, issue section 2) as one scenario table, played
through SOAP (zeep), REST XML and REST JSON, on SQLite and PostgreSQL.

Every row states the outcome; a rejected row must leave the account exactly as it was, and
errors must carry the seed's exact message and name the parameter to blame.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import select

from learndir.core.errors import ErrorCode
from learndir.db.schema import (
    group_members,
    outbox,
    roles,
    user_role_departments,
    user_roles,
    users,
)
from tests.api.scenarios import Err, assert_error
from tests.support import Server, World, acme_spec, make_world
from tests.transports import Auth, RestJson, RestXml, Soap

OK = "ok"
E = ErrorCode


Params = Callable[[World, "Ctx"], dict[str, Any]]
Check = Callable[[World, str, "Ctx"], None]


@dataclass
class Ctx:
    """Per-run values: a unique suffix so rows never collide in the shared account."""

    uid: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def login(self) -> str:
        return f"u{self.uid}"

    @property
    def email(self) -> str:
        return f"u{self.uid}@acme.test"

    @property
    def employee_id(self) -> str:
        return f"E{self.uid}"


@dataclass(frozen=True)
class Row:
    id: str
    params: Params
    expect: str | Err
    actor: str = "owner"
    # "token" (newer generation) or "credentials" (accountUrl/login/password; on SOAP the
    # older generation, on REST the X-Auth headers).
    auth: str = "token"
    # When the older generation (SOAP with credentials) answers differently.
    expect_legacy: str | Err | None = None
    check: Check | None = None
    check_legacy: Check | None = None
    transports: tuple[str, ...] = ("soap", "rest-xml", "rest-json")


def base(w: World, c: Ctx, **extra: Any) -> dict[str, Any]:
    """A valid request: login, department, the account's required field."""
    params: dict[str, Any] = {
        "login": c.login,
        "departmentId": w.root_id,
        "fields": {"employee_id": c.employee_id},
    }
    fields = extra.pop("fields", None)
    if fields is not None:
        params["fields"] = fields
    params.update(extra)
    return params


def without(params: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in keys}


# ---- checks on success ------------------------------------------------------------------


def role_kinds(w: World, user_id: str) -> dict[str, list[str]]:
    with w.db.read() as conn:
        rows = conn.execute(
            select(roles.c.kind, roles.c.name, roles.c.id)
            .join(user_roles, user_roles.c.role_id == roles.c.id)
            .where(user_roles.c.user_id == user_id)
        ).all()
        managed = conn.execute(
            select(user_role_departments.c.role_id, user_role_departments.c.department_id).where(
                user_role_departments.c.user_id == user_id
            )
        ).all()
    result = {}
    for r in rows:
        key = r.name if r.kind == "custom" else r.kind
        result[key] = sorted(m.department_id for m in managed if m.role_id == r.id)
    return result


def has_roles(**expected: list[str]) -> Check:
    def check(w: World, user_id: str, c: Ctx) -> None:
        want = {
            name.replace("__", " "): sorted(w.departments[d] for d in depts)
            for name, depts in expected.items()
        }
        assert role_kinds(w, user_id) == want

    return check


def invitations(*expected: tuple[str, str], text: str | None = None) -> Check:
    """(channel, recipient) rows of the outbox; recipient 'EMAIL'/'LOGIN' mean the ctx's; with
    `text`, every message is that text."""

    def check(w: World, user_id: str, c: Ctx) -> None:
        with w.db.read() as conn:
            rows = conn.execute(
                select(outbox.c.channel, outbox.c.recipient, outbox.c.message).where(
                    outbox.c.user_id == user_id
                )
            ).all()
        mapping = {"EMAIL": c.email, "LOGIN": f"{c.login}@acme.test"}
        assert sorted((r.channel, r.recipient) for r in rows) == sorted(
            (ch, mapping.get(to, to)) for ch, to in expected
        )
        assert all(r.message for r in rows)
        if text is not None:
            assert [r.message for r in rows] == [text] * len(rows)

    return check


def in_groups(*names: str) -> Check:
    def check(w: World, user_id: str, c: Ctx) -> None:
        with w.db.read() as conn:
            got = {
                r.group_id
                for r in conn.execute(
                    select(group_members.c.group_id).where(group_members.c.user_id == user_id)
                )
            }
        assert got == {w.groups[n] for n in names}

    return check


def password_is_argon2id(w: World, user_id: str, c: Ctx) -> None:
    with w.db.read() as conn:
        stored = conn.execute(
            select(users.c.password_hash).where(users.c.id == user_id)
        ).scalar_one()
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert "Kate-Pass-99" not in stored


def stored(**columns: str) -> Check:
    def check(w: World, user_id: str, c: Ctx) -> None:
        with w.db.read() as conn:
            row = conn.execute(select(users).where(users.c.id == user_id)).one()
        for name, value in columns.items():
            assert getattr(row, name) == value.format(login=c.login, email=c.email)

    return check


def learner(w: World, user_id: str, c: Ctx) -> None:
    assert role_kinds(w, user_id) == {"learner": []}


def fresh_uuid() -> str:
    return str(uuid.uuid4())


IDS = E.INVALID_PARAMETERS

ROWS: list[Row] = [
    # 1. login and departmentId are required; the department must be the caller's.
    Row("minimal-user-is-a-learner", lambda w, c: base(w, c), OK, check=learner),
    Row("login-missing", lambda w, c: without(base(w, c), "login"), Err(IDS, "login")),
    Row("login-blank", lambda w, c: base(w, c, login="   "), Err(IDS, "login")),
    Row(
        "department-missing",
        lambda w, c: without(base(w, c), "departmentId"),
        Err(IDS, "departmentId"),
    ),
    Row(
        "department-unknown",
        lambda w, c: base(w, c, departmentId=fresh_uuid()),
        Err(IDS, "departmentId"),
    ),
    Row(
        "department-not-an-id",
        lambda w, c: base(w, c, departmentId="sales"),
        Err(IDS, "departmentId"),
    ),
    Row(
        "department-of-another-account",
        lambda w, c: base(w, c, departmentId=OTHER["world"].root_id),
        Err(IDS, "departmentId"),
    ),
    Row(
        "login-inside-fields",
        lambda w, c: without(
            base(w, c, fields={"login": c.login, "employee_id": c.employee_id}), "login"
        ),
        OK,
        check=stored(login="{login}"),
    ),
    Row(
        "login-twice-differing",
        lambda w, c: base(w, c, fields={"login": "someone.else", "employee_id": c.employee_id}),
        Err(IDS, "login"),
    ),
    # 2. Duplicates, case-insensitively; e-mail syntax.
    Row(
        "login-taken-other-case",
        lambda w, c: base(w, c, login="JANE.Doe"),
        Err(E.LOGIN_TAKEN, "login"),
    ),
    Row(
        "email-taken-other-case",
        lambda w, c: base(w, c, email="Jane.DOE@acme.test"),
        Err(E.EMAIL_TAKEN, "email"),
    ),
    Row(
        "login-checked-before-email",
        lambda w, c: base(w, c, login="jane.doe", email="jane.doe@acme.test"),
        Err(E.LOGIN_TAKEN, "login"),
    ),
    Row("email-invalid", lambda w, c: base(w, c, email="not-an-address"), Err(IDS, "email")),
    Row("email-stored", lambda w, c: base(w, c, email=c.email), OK, check=stored(email="{email}")),
    # 3. Password policy, Argon2id.
    Row("password-too-short", lambda w, c: base(w, c, password="Short-1"), Err(IDS, "password")),
    Row(
        "password-hashed-with-argon2id",
        lambda w, c: base(w, c, password="Kate-Pass-99"),
        OK,
        check=password_is_argon2id,
    ),
    # 4. Profile fields.
    Row(
        "required-field-missing", lambda w, c: base(w, c, fields={}), Err(IDS, "fields.employee_id")
    ),
    Row(
        "required-field-blank",
        lambda w, c: base(w, c, fields={"employee_id": " "}),
        Err(IDS, "fields.employee_id"),
    ),
    Row("country-field-not-required", lambda w, c: base(w, c), OK),
    Row(
        "field-names-case-insensitive",
        lambda w, c: without(
            base(
                w, c, fields={"LOGIN": c.login, "Employee_ID": c.employee_id, "First_Name": "Kate"}
            ),
            "login",
        ),
        OK,
        check=stored(login="{login}", first_name="Kate"),
    ),
    Row(
        "unknown-field-rejected",
        lambda w, c: base(w, c, fields={"employee_id": c.employee_id, "shoe_size": "42"}),
        Err(IDS, "fields.shoe_size"),
    ),
    Row(
        "unique-field-taken",
        lambda w, c: base(w, c, fields={"employee_id": "e-1"}),
        Err(
            E.FIELD_VALUE_TAKEN,
            "fields.employee_id",
            "User with the same employee_id is already registered.",
        ),
    ),
    Row(
        "birthdate-invalid",
        lambda w, c: base(w, c, fields={"employee_id": c.employee_id, "birthday": "31/02/1990"}),
        Err(IDS, "fields.birthday"),
    ),
    Row(
        "country-invalid",
        lambda w, c: base(w, c, fields={"employee_id": c.employee_id, "country": "Atlantis"}),
        Err(IDS, "fields.country"),
    ),
    Row(
        "phone-invalid",
        lambda w, c: base(w, c, fields={"employee_id": c.employee_id, "phone": "call me"}),
        Err(IDS, "fields.phone"),
    ),
    # 5. role + roleId, every spelling.
    *[
        Row(
            f"role-spelling-{spelling}",
            lambda w, c, s=spelling: base(w, c, role=s),
            OK,
            check=has_roles(**{kind: []}),
        )
        for spelling, kind in [
            ("learner", "learner"),
            ("learners", "learner"),
            ("administrator", "account_administrator"),
            ("account_administrators", "account_administrator"),
            ("course_authors", "course_author"),
            ("supervisor", "supervisor"),
        ]
    ],
    *[
        Row(
            f"role-spelling-{spelling}",
            lambda w, c, s=spelling: base(
                w, c, role=s, manageableDepartmentIds=[w.departments["sales"]]
            ),
            OK,
            check=has_roles(**{kind: ["sales"]}),
        )
        for spelling, kind in [
            ("department_administrator", "department_administrator"),
            ("department_administrators", "department_administrator"),
            ("publisher", "publisher"),
        ]
    ],
    Row(
        "role-custom-with-role-id",
        lambda w, c: base(
            w,
            c,
            role="custom",
            roleId=w.roles["HR Partner"],
            manageableDepartmentIds=[w.departments["eng"]],
        ),
        OK,
        check=has_roles(HR__Partner=["eng"]),
    ),
    Row(
        "role-custom-without-role-id",
        lambda w, c: base(w, c, role="custom", manageableDepartmentIds=[w.departments["eng"]]),
        Err(IDS, "roleId"),
    ),
    Row(
        "role-custom-with-publisher-id",
        lambda w, c: base(
            w,
            c,
            role="custom",
            roleId=w.roles["publisher"],
            manageableDepartmentIds=[w.departments["sales"]],
        ),
        Err(IDS, "roleId"),
        auth="credentials",
        expect_legacy=OK,
    ),
    Row(
        "role-custom-with-learner-id",
        lambda w, c: base(w, c, role="custom", roleId=w.roles["learner"]),
        Err(IDS, "roleId"),
    ),
    Row(
        "role-owner-not-assignable", lambda w, c: base(w, c, role="account_owner"), Err(IDS, "role")
    ),
    Row(
        "role-id-of-owner-not-assignable",
        lambda w, c: base(w, c, role="custom", roleId=w.roles["owner"]),
        Err(IDS, "roleId"),
    ),
    Row("role-unknown", lambda w, c: base(w, c, role="wizard"), Err(IDS, "role")),
    Row(
        "role-id-unknown",
        lambda w, c: base(w, c, role="custom", roleId=fresh_uuid()),
        Err(IDS, "roleId"),
    ),
    Row(
        "role-id-of-another-account",
        lambda w, c: base(
            w,
            c,
            role="custom",
            roleId=OTHER["world"].roles["HR Partner"],
            manageableDepartmentIds=[w.departments["eng"]],
        ),
        Err(IDS, "roleId"),
    ),
    # 6. manageableDepartmentIds.
    Row(
        "department-admin-needs-departments",
        lambda w, c: base(w, c, role="department_administrator"),
        Err(IDS, "manageableDepartmentIds"),
    ),
    Row(
        "publisher-needs-departments",
        lambda w, c: base(w, c, role="publisher"),
        Err(IDS, "manageableDepartmentIds"),
    ),
    Row(
        "custom-role-needs-departments",
        lambda w, c: base(w, c, role="custom", roleId=w.roles["HR Partner"]),
        Err(IDS, "manageableDepartmentIds"),
    ),
    Row(
        "managed-department-unknown",
        lambda w, c: base(
            w,
            c,
            role="department_administrator",
            manageableDepartmentIds=[w.departments["sales"], fresh_uuid()],
        ),
        Err(IDS, "manageableDepartmentIds"),
    ),
    Row(
        "managed-department-of-another-account",
        lambda w, c: base(
            w, c, role="department_administrator", manageableDepartmentIds=[OTHER["world"].root_id]
        ),
        Err(IDS, "manageableDepartmentIds"),
    ),
    # 7. groups.
    Row(
        "groups-joined",
        lambda w, c: base(w, c, groups=[w.groups["Newcomers"], w.groups["Managers"]]),
        OK,
        check=in_groups("Newcomers", "Managers"),
    ),
    Row(
        "group-unknown",
        lambda w, c: base(w, c, groups=[w.groups["Newcomers"], fresh_uuid()]),
        Err(IDS, "groups"),
    ),
    Row(
        "group-of-another-account",
        lambda w, c: base(w, c, groups=[OTHER["world"].groups["Newcomers"]]),
        Err(IDS, "groups"),
    ),
    # 8. roles array.
    Row(
        "roles-one-learner",
        lambda w, c: base(w, c, roles=[{"roleId": w.roles["learner"]}]),
        OK,
        check=learner,
    ),
    Row(
        "roles-learner-and-department-admin",
        lambda w, c: base(
            w,
            c,
            roles=[
                {"roleId": w.roles["learner"]},
                {
                    "roleId": w.roles["department_administrator"],
                    "manageableDepartmentIds": [w.departments["sales-eu"]],
                },
            ],
        ),
        OK,
        check=has_roles(learner=[], department_administrator=["sales-eu"]),
    ),
    Row(
        "roles-ids-with-top-level-departments",
        lambda w, c: base(
            w,
            c,
            roles=[w.roles["learner"], w.roles["HR Partner"]],
            manageableDepartmentIds=[w.departments["eng"]],
        ),
        OK,
        check=has_roles(learner=[], HR__Partner=["eng"]),
    ),
    Row(
        "roles-two-administrative",
        lambda w, c: base(
            w,
            c,
            roles=[
                {"roleId": w.roles["account_administrator"]},
                {
                    "roleId": w.roles["department_administrator"],
                    "manageableDepartmentIds": [w.departments["sales"]],
                },
            ],
        ),
        Err(IDS, "roles"),
    ),
    Row(
        "roles-two-learners",
        lambda w, c: base(
            w, c, roles=[{"roleId": w.roles["learner"]}, {"roleId": w.roles["learner"]}]
        ),
        Err(IDS, "roles"),
    ),
    Row(
        "roles-three-items",
        lambda w, c: base(
            w,
            c,
            roles=[
                {"roleId": w.roles["learner"]},
                {"roleId": w.roles["course_author"]},
                {"roleId": w.roles["supervisor"]},
            ],
        ),
        Err(IDS, "roles"),
    ),
    Row(
        "roles-unknown-id",
        lambda w, c: base(w, c, roles=[{"roleId": fresh_uuid()}]),
        Err(IDS, "roles[0].roleId"),
    ),
    Row(
        "roles-owner-id",
        lambda w, c: base(w, c, roles=[{"roleId": w.roles["owner"]}]),
        Err(IDS, "roles[0].roleId"),
    ),
    # 9. roles wins over role/roleId.
    Row(
        "roles-override-role",
        lambda w, c: base(
            w, c, role="wizard", roleId=fresh_uuid(), roles=[{"roleId": w.roles["course_author"]}]
        ),
        OK,
        check=has_roles(course_author=[]),
    ),
    # 10. Invitations.
    Row(
        "invite-email",
        lambda w, c: base(
            w, c, email=c.email, sendLoginEmail=True, invitationMessage="Welcome aboard"
        ),
        OK,
        check=invitations(("email", "EMAIL")),
    ),
    Row(
        "invite-email-message-required",
        lambda w, c: base(w, c, email=c.email, sendLoginEmail=True),
        Err(IDS, "invitationMessage"),
        auth="credentials",
        expect_legacy=OK,
        check_legacy=invitations(("email", "EMAIL"), text="You have been invited to Acme."),
        transports=("soap",),
    ),
    # REST's NewUser does not require invitationMessage: the account's default text is sent.
    *[
        Row(
            f"invite-email-default-text-on-rest-{auth}",
            lambda w, c: base(w, c, email=c.email, sendLoginEmail=True),
            OK,
            auth=auth,
            check=invitations(("email", "EMAIL"), text="You have been invited to Acme."),
            transports=("rest-xml", "rest-json"),
        )
        for auth in ("token", "credentials")
    ],
    Row(
        "invite-to-login-that-is-an-email",
        lambda w, c: base(
            w, c, login=f"{c.login}@acme.test", sendLoginEmail=True, invitationMessage="Hi"
        ),
        OK,
        check=invitations(("email", "LOGIN")),
    ),
    Row(
        "invite-without-address",
        lambda w, c: base(w, c, sendLoginEmail=True, invitationMessage="Hi"),
        Err(IDS, "sendLoginEmail"),
        auth="credentials",
    ),
    Row(
        "invite-default-by-generation",
        lambda w, c: base(w, c, email=c.email),
        OK,
        auth="credentials",
        check=invitations(),
        check_legacy=invitations(("email", "EMAIL")),
    ),
    Row(
        "invite-declined",
        lambda w, c: base(w, c, email=c.email, sendLoginEmail=False),
        OK,
        auth="credentials",
        check=invitations(),
    ),
    Row(
        "invite-default-without-address",
        lambda w, c: base(w, c),
        OK,
        auth="credentials",
        check=invitations(),
    ),
    Row(
        "invite-sms",
        lambda w, c: base(
            w,
            c,
            sendLoginSMS=True,
            invitationSMSMessage="Hi",
            fields={"employee_id": c.employee_id, "phone": "+49 30 1234567"},
        ),
        OK,
        # The profile keeps the number as given; the SMS goes to its E.164 form.
        check=invitations(("sms", "+49301234567")),
    ),
    *[
        Row(
            f"invite-sms-phone-{name}-{auth}",
            lambda w, c, phone=phone: base(
                w,
                c,
                sendLoginSMS=True,
                invitationSMSMessage="Hi",
                fields={"employee_id": c.employee_id, "phone": phone},
            ),
            Err(IDS, "phone"),
            auth=auth,
        )
        for name, phone in (("without-country-code", "030 1234567"), ("not-valid", "+49 12"))
        for auth in ("token", "credentials")
    ],
    Row(
        "invite-sms-older-generation",
        lambda w, c: base(
            w,
            c,
            sendLoginSMS=True,
            invitationSMSMessage="Hi",
            fields={"employee_id": c.employee_id, "phone": "0049 30 1234567"},
        ),
        OK,
        auth="credentials",
        check=invitations(("sms", "+49301234567")),
    ),
    Row(
        "invite-sms-message-required",
        lambda w, c: base(
            w, c, sendLoginSMS=True, fields={"employee_id": c.employee_id, "phone": "+4930123456"}
        ),
        Err(IDS, "invitationSMSMessage"),
    ),
    Row(
        "invite-sms-needs-phone",
        lambda w, c: base(w, c, sendLoginSMS=True, invitationSMSMessage="Hi"),
        Err(IDS, "sendLoginSMS"),
    ),
    # 12. Who may add, where, and what they may grant.
    *[
        Row(
            f"no-add-permission-{who}", lambda w, c: base(w, c), Err(E.PERMISSION_DENIED), actor=who
        )
        for who in ("jane.doe", "author", "publisher.sales")
    ],
    Row(
        "account-admin-adds-anywhere",
        lambda w, c: base(w, c, departmentId=w.departments["eng"], role="administrator"),
        OK,
        actor="admin",
    ),
    Row(
        "department-admin-own-department",
        lambda w, c: base(w, c, departmentId=w.departments["sales"]),
        OK,
        actor="sales.admin",
    ),
    Row(
        "department-admin-sub-department",
        lambda w, c: base(w, c, departmentId=w.departments["sales-eu"]),
        OK,
        actor="sales.admin",
    ),
    Row(
        "department-admin-other-department",
        lambda w, c: base(w, c, departmentId=w.departments["eng"]),
        Err(E.PERMISSION_DENIED, "departmentId"),
        actor="sales.admin",
    ),
    Row(
        "department-admin-root-department",
        lambda w, c: base(w, c),
        Err(E.PERMISSION_DENIED, "departmentId"),
        actor="sales.admin",
    ),
    Row(
        "department-admin-cannot-grant-administrator",
        lambda w, c: base(w, c, departmentId=w.departments["sales"], role="administrator"),
        Err(E.PERMISSION_DENIED, "role"),
        actor="sales.admin",
    ),
    Row(
        "department-admin-grants-within-scope",
        lambda w, c: base(
            w,
            c,
            departmentId=w.departments["sales"],
            role="department_administrator",
            manageableDepartmentIds=[w.departments["sales-eu"]],
        ),
        OK,
        actor="sales.admin",
        check=has_roles(department_administrator=["sales-eu"]),
    ),
    Row(
        "department-admin-cannot-grant-outside-scope",
        lambda w, c: base(
            w,
            c,
            departmentId=w.departments["sales"],
            role="department_administrator",
            manageableDepartmentIds=[w.departments["eng"]],
        ),
        Err(E.PERMISSION_DENIED, "manageableDepartmentIds"),
        actor="sales.admin",
    ),
    Row(
        "custom-role-adds-in-scope",
        lambda w, c: base(w, c, departmentId=w.departments["eng"]),
        OK,
        actor="hr.partner",
    ),
    Row(
        "custom-role-outside-scope",
        lambda w, c: base(w, c, departmentId=w.departments["sales"]),
        Err(E.PERMISSION_DENIED, "departmentId"),
        actor="hr.partner",
    ),
    Row(
        "custom-role-cannot-grant-more-rights",
        lambda w, c: base(
            w,
            c,
            departmentId=w.departments["eng"],
            role="department_administrator",
            manageableDepartmentIds=[w.departments["eng"]],
        ),
        Err(E.PERMISSION_DENIED, "role"),
        actor="hr.partner",
    ),
    Row(
        "custom-role-grants-its-own-role",
        lambda w, c: base(
            w,
            c,
            departmentId=w.departments["eng"],
            role="custom",
            roleId=w.roles["HR Partner"],
            manageableDepartmentIds=[w.departments["eng"]],
        ),
        OK,
        actor="hr.partner",
    ),
    # Authentication forms.
    Row("credentials-of-owner-by-login", lambda w, c: base(w, c), OK, auth="credentials"),
    Row("credentials-of-admin", lambda w, c: base(w, c), OK, auth="credentials", actor="admin"),
    Row(
        "credentials-wrong-password",
        lambda w, c: base(w, c),
        Err(E.UNAUTHENTICATED),
        auth="bad-credentials",
    ),
    Row("token-unknown", lambda w, c: base(w, c), Err(E.UNAUTHENTICATED), auth="bad-token"),
]

# Actors beyond the account file: users with roles that cannot add users, and a publisher.
EXTRA_USERS = [
    {
        "login": "author",
        "email": "author@acme.test",
        "role": "course_authors",
        "fields": {"employee_id": "E-90"},
    },
    {
        "login": "publisher.sales",
        "role": "publisher",
        "manageableDepartments": ["sales"],
        "fields": {"employee_id": "E-91"},
    },
]

OTHER: dict[str, World] = {}


@pytest.fixture(scope="module")
def scenario_world(db: Any) -> Iterator[World]:
    spec = acme_spec(seatLimit=None)
    spec["users"] = [*spec["users"], *EXTRA_USERS]
    world = make_world(db, spec)
    OTHER["world"] = make_world(db, acme_spec(seatLimit=None))
    yield world
    OTHER.clear()


@pytest.fixture(scope="module", params=["soap", "rest-xml", "rest-json"])
def transport(request: pytest.FixtureRequest, server: Server) -> Any:
    kinds = {"soap": Soap, "rest-xml": RestXml, "rest-json": RestJson}
    return kinds[request.param](server.base_url)


def _auth(world: World, row: Row) -> Auth:
    if row.auth == "token":
        return Auth(token=world.token(row.actor))
    if row.auth == "bad-token":
        return Auth(token="not-a-token")
    password = world.passwords.get(row.actor, "")
    if row.auth == "bad-credentials":
        password = "Wrong-Password-1"
    return Auth(account_url=world.account_url, login=row.actor, password=password)


def _expected(row: Row, transport: Any) -> str | Err:
    legacy = transport.name == "soap" and row.auth == "credentials"
    if legacy and row.expect_legacy is not None:
        return row.expect_legacy
    return row.expect


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_add_user(row: Row, transport: Any, scenario_world: World) -> None:
    if transport.name not in row.transports:
        pytest.skip(f"{row.id} does not apply to {transport.name}")
    world = scenario_world
    ctx = Ctx()
    params = row.params(world, ctx)
    before = world.snapshot()
    outcome = transport.add_user(params, _auth(world, row))
    expected = _expected(row, transport)
    if expected == OK:
        assert outcome.ok, outcome
        after = world.snapshot()
        assert after["users"] == before["users"] + 1
        assert after["active_users"] == before["active_users"] + 1
        legacy = transport.name == "soap" and row.auth == "credentials"
        check = row.check_legacy if legacy and row.check_legacy else row.check
        if check is not None:
            check(world, outcome.user_id, ctx)
    else:
        assert isinstance(expected, Err)
        assert_error(outcome, expected, transport)
        assert world.snapshot() == before, "a rejected call must change nothing"


@pytest.mark.parametrize("auth", ["token", "credentials"])
def test_seat_limit_reached(auth: str, transport: Any, db: Any) -> None:
    """11. The acme file fills 5 seats (owner + 4 users); a limit of 5 leaves none."""
    world = make_world(db, acme_spec(seatLimit=5))
    ctx = Ctx()
    before = world.snapshot()
    row = Row("seat", lambda w, c: base(w, c), OK, auth=auth)
    outcome = transport.add_user(base(world, ctx), _auth(world, row))
    assert_error(outcome, Err(E.SEAT_LIMIT_EXCEEDED), transport)
    assert world.snapshot() == before


def test_seat_limit_allows_the_last_seat(transport: Any, db: Any) -> None:
    world = make_world(db, acme_spec(seatLimit=6))
    first = transport.add_user(base(world, Ctx()), Auth(token=world.token("owner")))
    assert first.ok, first
    second = transport.add_user(base(world, Ctx()), Auth(token=world.token("owner")))
    assert_error(second, Err(E.SEAT_LIMIT_EXCEEDED), transport)
    assert world.snapshot()["active_users"] == 6
