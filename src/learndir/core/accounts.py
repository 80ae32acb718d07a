"""Accounts as code: the account file (YAML) and creating an account from it in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Connection, func, insert, select, update

from learndir.core import departments as departments_repo
from learndir.core import groups as groups_repo
from learndir.core import profile_fields as fields_repo
from learndir.core import roles as roles_repo
from learndir.core.account_settings import settings_changed
from learndir.core.actor import AccountInfo
from learndir.core.auth import account_url_key, create_api_key_for_user, load_actor
from learndir.core.changes import Change, Operation, TargetKind, record
from learndir.core.common import fold, new_id, utcnow
from learndir.core.departments import Department
from learndir.core.errors import DomainError, ErrorCode, invalid
from learndir.core.passwords import hash_password
from learndir.core.profile_fields import account_fields
from learndir.core.roles import Permission, RoleKind, account_roles
from learndir.core.users.commands import AddUser, ApiGeneration, RoleItem
from learndir.core.users.service import (
    UserPlan,
    add_user_in,
    check_password,
    checked_profile,
    insert_user,
    merge_profile_values,
)
from learndir.db.engine import Database
from learndir.db.schema import account_seats, accounts, users


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class OwnerSpec(_Spec):
    login: str
    email: str | None = None
    password: str | None = None
    fields: dict[str, str] = Field(default_factory=dict)


class DepartmentSpec(_Spec):
    name: str
    code: str | None = None
    departments: list[DepartmentSpec] = Field(default_factory=list)


class GroupSpec(_Spec):
    name: str


class FieldSpec(_Spec):
    name: str
    label: str | None = None
    type: str = "string"
    required: bool = False
    unique: bool = False


class CustomRoleSpec(_Spec):
    name: str
    permissions: list[str] = Field(default_factory=list)


class UserSpec(_Spec):
    login: str
    email: str | None = None
    password: str | None = None
    department: str | None = None
    role: str | None = None
    custom_role: str | None = Field(None, alias="customRole")
    manageable_departments: list[str] = Field(default_factory=list, alias="manageableDepartments")
    groups: list[str] = Field(default_factory=list)
    fields: dict[str, str] = Field(default_factory=dict)


class PasswordPolicySpec(_Spec):
    min_length: int = Field(8, alias="minLength", ge=1, le=256)


class AccountSpec(_Spec):
    url: str
    name: str
    seat_limit: int | None = Field(None, alias="seatLimit", ge=1)
    password_policy: PasswordPolicySpec = Field(
        default_factory=lambda: PasswordPolicySpec.model_validate({}), alias="passwordPolicy"
    )
    # The invitation's text when addUser sends one without an invitationMessage.
    invitation_message: str | None = Field(None, alias="invitationMessage", min_length=1)
    # How long a set-password link works after its message is sent.
    invitation_lifetime_days: int = Field(7, alias="invitationLifetimeDays", ge=1, le=365)
    owner: OwnerSpec
    departments: list[DepartmentSpec] = Field(default_factory=list)
    groups: list[GroupSpec] = Field(default_factory=list)
    profile_fields: list[FieldSpec] = Field(default_factory=list, alias="profileFields")
    custom_roles: list[CustomRoleSpec] = Field(default_factory=list, alias="customRoles")
    users: list[UserSpec] = Field(default_factory=list)

    @classmethod
    def parse(cls, data: Any) -> AccountSpec:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"]) or "account file"
            if error["type"] == "extra_forbidden":
                raise invalid(where, "unknown key: learndir has no such setting") from None
            raise invalid(where, str(error["msg"])) from None


def _insert_owner(
    conn: Connection,
    account_id: str,
    root: Department,
    owner: OwnerSpec,
    password_hash: str | None,
) -> str:
    """The owner, with profile values checked like addUser's (format, uniqueness); required
    fields are not demanded of the owner, who exists before the account's rules apply."""
    where = f"owner.{owner.login}"
    owner_role = next(r for r in account_roles(conn, account_id) if r.kind is RoleKind.OWNER)
    try:
        values = merge_profile_values(dict(owner.fields), owner.login, owner.email)
        profile = checked_profile(account_fields(conn, account_id), values, require=False)
    except DomainError as exc:
        exc.parameter = f"{where}.{exc.parameter}" if exc.parameter else where
        raise
    plan = UserPlan.of(profile, root)
    plan.roles = [(owner_role, [])]
    return insert_user(conn, account_id, None, plan, password_hash)


@dataclass(frozen=True)
class CreatedAccount:
    account_id: str
    account_url: str
    root_department_id: str
    owner_user_id: str
    client_id: str
    client_secret: str
    user_ids: dict[str, str]


def create_account(db: Database, spec: AccountSpec) -> CreatedAccount:
    """Creates everything the file describes, or nothing."""
    if not account_url_key(spec.url):
        raise invalid("url", "is required")
    policy = AccountInfo(
        id="",
        url=spec.url,
        name=spec.name,
        seat_limit=spec.seat_limit,
        password_min_length=spec.password_policy.min_length,
    )
    # Hash every password before the transaction starts: hashing is slow.
    hashes: dict[int, str | None] = {}
    everyone: list[OwnerSpec | UserSpec] = [spec.owner, *spec.users]
    for i, user in enumerate(everyone):
        if user.password:
            if len(user.password) < policy.password_min_length:
                raise invalid(
                    f"users.{user.login}.password",
                    f"must be at least {policy.password_min_length} characters long",
                )
            hashes[i] = hash_password(user.password)

    with db.write() as conn:
        if conn.execute(
            select(accounts.c.id).where(accounts.c.url_key == account_url_key(spec.url))
        ).first():
            raise DomainError(
                ErrorCode.ACCOUNT_EXISTS, f"{spec.url} is already set up", parameter="url"
            )
        account_id = new_id()
        conn.execute(
            insert(accounts).values(
                id=account_id,
                url=spec.url.strip().rstrip("/"),
                url_key=account_url_key(spec.url),
                name=spec.name,
                password_min_length=spec.password_policy.min_length,
                invitation_message=(
                    spec.invitation_message or f"You have been invited to {spec.name}."
                ),
                invitation_lifetime_days=spec.invitation_lifetime_days,
                created_at=utcnow(),
            )
        )
        conn.execute(
            insert(account_seats).values(
                account_id=account_id,
                seat_limit=spec.seat_limit,
                active_users=1,  # the owner, inserted below
            )
        )
        root_id = departments_repo.insert_department(conn, account_id, None, spec.name, None)
        root = departments_repo.get_many(conn, account_id, [root_id])[root_id]
        by_ref: dict[str, Department] = {}

        def add_departments(parent: Department, children: list[DepartmentSpec]) -> None:
            for child in children:
                child_id = departments_repo.insert_department(
                    conn, account_id, parent, child.name, child.code
                )
                dept = departments_repo.get_many(conn, account_id, [child_id])[child_id]
                for ref in (child.code, child.name):
                    if ref:
                        by_ref.setdefault(fold(ref), dept)
                add_departments(dept, child.departments)

        add_departments(root, spec.departments)
        roles_repo.create_standard_roles(conn, account_id)
        custom_roles: dict[str, str] = {}
        for role_spec in spec.custom_roles:
            try:
                permissions = roles_repo.parse_permissions(role_spec.permissions)
            except ValueError as exc:
                raise invalid(f"customRoles.{role_spec.name}", str(exc)) from None
            custom_roles[fold(role_spec.name)] = roles_repo.create_custom_role(
                conn, account_id, role_spec.name, permissions
            )
        groups_by_name = {
            fold(g.name): groups_repo.insert_group(conn, account_id, g.name) for g in spec.groups
        }
        fields_repo.create_builtin_fields(conn, account_id)
        for field_spec in spec.profile_fields:
            fields_repo.define_field(
                conn,
                account_id,
                field_spec.name,
                field_spec.label,
                field_spec.type,
                field_spec.required,
                field_spec.unique,
            )

        owner_id = _insert_owner(conn, account_id, root, spec.owner, hashes.get(0))
        if spec.seat_limit is not None and spec.seat_limit < 1 + len(spec.users):
            raise DomainError(
                ErrorCode.SEAT_LIMIT_EXCEEDED,
                f"seatLimit {spec.seat_limit} is below the {1 + len(spec.users)} "
                "users the file describes",
                parameter="seatLimit",
            )
        # The profile fields and roles above are this account's settings: cached by version.
        settings_changed(conn, account_id)
        owner_actor = load_actor(conn, owner_id)
        assert owner_actor is not None

        def department(ref: str, parameter: str) -> Department:
            if fold(ref) in by_ref:
                return by_ref[fold(ref)]
            if fold(ref) == fold(spec.name):
                return root
            raise invalid(parameter, f"no department with code or name {ref!r}")

        user_ids = {spec.owner.login: owner_id}
        for i, user in enumerate(spec.users, start=1):
            where = f"users.{user.login}"
            dept = department(user.department, f"{where}.department") if user.department else root
            role_id = None
            role = user.role
            if user.custom_role:
                role_id = custom_roles.get(fold(user.custom_role))
                if role_id is None:
                    raise invalid(f"{where}.customRole", f"no custom role {user.custom_role!r}")
                role = role or "custom"
            group_ids = []
            for name in user.groups:
                if fold(name) not in groups_by_name:
                    raise invalid(f"{where}.groups", f"no group {name!r}")
                group_ids.append(groups_by_name[fold(name)])
            cmd = AddUser(
                login=user.login,
                email=user.email,
                department_id=dept.id,
                role=role,
                role_id=role_id,
                send_login_email=False,
                manageable_department_ids=[
                    department(d, f"{where}.manageableDepartments").id
                    for d in user.manageable_departments
                ]
                or None,
                groups=group_ids or None,
                fields=dict(user.fields),
            )
            check_password(owner_actor, cmd)
            try:
                user_ids[user.login] = add_user_in(
                    conn, owner_actor, cmd, ApiGeneration.TOKEN, hashes.get(i)
                )
            except DomainError as exc:
                exc.parameter = f"{where}.{exc.parameter}" if exc.parameter else where
                raise
        conn.execute(
            update(account_seats)
            .where(account_seats.c.account_id == account_id)
            .values(
                active_users=select(func.count())
                .select_from(users)
                .where(users.c.account_id == account_id, users.c.status == 1)
                .scalar_subquery()
            )
        )
        record(
            conn,
            owner_actor.account,
            [
                Change(
                    Operation.ACCOUNT_CREATED,
                    TargetKind.ACCOUNT,
                    account_id,
                    None,
                    after={
                        "url": spec.url.strip().rstrip("/"),
                        "name": spec.name,
                        "seatLimit": spec.seat_limit,
                        "ownerUserId": owner_id,
                        "ownerLogin": spec.owner.login,
                        "users": len(spec.users) + 1,
                    },
                )
            ],
        )
        key = create_api_key_for_user(conn, owner_actor.account, owner_id, None)
    return CreatedAccount(
        account_id=account_id,
        account_url=spec.url.strip().rstrip("/"),
        root_department_id=root_id,
        owner_user_id=owner_id,
        client_id=key.client_id,
        client_secret=key.client_secret,
        user_ids=user_ids,
    )


__all__ = ["AccountSpec", "CreatedAccount", "Permission", "RoleItem", "create_account"]


@dataclass(frozen=True)
class AccountSummary:
    account_id: str
    account_url: str
    name: str
    root_department_id: str


def find_account(db: Database, url: str) -> AccountSummary | None:
    with db.read() as conn:
        row = conn.execute(
            select(accounts.c.id, accounts.c.url, accounts.c.name).where(
                accounts.c.url_key == account_url_key(url)
            )
        ).first()
        if row is None:
            return None
        root = departments_repo.root(conn, row.id)
    return AccountSummary(
        account_id=row.id, account_url=row.url, name=row.name, root_department_id=root.id
    )
