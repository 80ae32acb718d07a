"""An account's own settings changed by its administrators (the console's Settings): custom
profile fields, custom roles, the password policy and the default invitation text.

The account file sets them when an account is created (core.accounts, without an actor); here
the owner or an account administrator changes them later. Each function checks its input with
the core's errors (a parameter named after the setting), changes the account in one
transaction, bumps the settings version where the cached account settings hold the value, and
records the change in the audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, select, update
from sqlalchemy.exc import IntegrityError

from learndir.core import profile_fields as fields_repo
from learndir.core import roles as roles_repo
from learndir.core.account_settings import settings_changed
from learndir.core.actor import Actor
from learndir.core.changes import Change, Operation, TargetKind, record
from learndir.core.common import fold
from learndir.core.errors import invalid
from learndir.core.profile_fields import BUILTIN_NAMES, ProfileField
from learndir.core.roles import Permission, Role, RoleKind
from learndir.core.text import check_text
from learndir.core.users.service import MAX_PASSWORD_LENGTH
from learndir.db.engine import Database
from learndir.db.schema import accounts

MAX_LABEL = 255
MAX_ROLE_NAME = 255
MAX_INVITATION_TEXT = 10_000


@dataclass(frozen=True)
class AccountPolicy:
    password_min_length: int
    invitation_message: str


def _one_line(value: Any, parameter: str, limit: int, *, required: bool = True) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise invalid(parameter, "must be a text value")
    text = value.strip()
    if required and not text:
        raise invalid(parameter, "is required")
    if len(text) > limit:
        raise invalid(parameter, f"must be at most {limit} characters long")
    check_text(text, parameter)
    return text


def _flag(value: Any, parameter: str) -> bool:
    if not isinstance(value, bool):
        raise invalid(parameter, "must be true or false")
    return value


def field_view(field: ProfileField) -> dict[str, Any]:
    """A profile field as the audit trail shows it."""
    return {
        "fieldId": field.key,
        "name": field.name,
        "label": field.label,
        "type": field.type,
        "required": field.is_required,
        "unique": field.is_unique,
    }


def add_profile_field(
    db: Database,
    actor: Actor,
    name: Any,
    label: Any,
    ftype: Any,
    required: Any = False,
    unique: Any = False,
) -> ProfileField:
    """Adds a custom profile field to the actor's account. Built-in fields are fixed."""
    actor.require_account_admin("define profile fields")
    checked_name = _one_line(name, "name", 64)
    key = fold(checked_name)
    if key in BUILTIN_NAMES:
        raise invalid("name", f"{checked_name!r} is a built-in field")
    checked_label = _one_line(label, "label", MAX_LABEL, required=False) or checked_name
    kind = _one_line(ftype, "type", 32)
    is_required = _flag(required, "required")
    is_unique = _flag(unique, "unique")
    with db.write() as conn:
        try:
            # The name's form, its uniqueness and the type are define_field's rules, as for an
            # account file; a field defined meanwhile by another request is a taken name too.
            with conn.begin_nested():
                fields_repo.define_field(
                    conn,
                    actor.account_id,
                    checked_name,
                    checked_label,
                    kind,
                    is_required,
                    is_unique,
                    name_parameter="name",
                    type_parameter="type",
                )
        except IntegrityError:
            raise invalid("name", "a field of this name is already defined") from None
        field = next(
            f for f in fields_repo.account_fields(conn, actor.account_id) if fold(f.name) == key
        )
        settings_changed(conn, actor.account_id)
        change = Change(
            Operation.PROFILE_FIELD_DEFINED,
            TargetKind.PROFILE_FIELD,
            field.key,
            actor.user_id,
            after=field_view(field),
        )
        record(conn, actor.account, [change])
    return field


def add_custom_role(db: Database, actor: Actor, name: Any, permissions: Any) -> Role:
    """Creates a custom role with these permissions (names of `Permission`); a role name is
    unique in the account, case-insensitively."""
    actor.require_account_admin("create roles")
    checked = _one_line(name, "name", MAX_ROLE_NAME)
    if not isinstance(permissions, list | tuple) or not all(
        isinstance(p, str) for p in permissions
    ):
        raise invalid("permissions", "must be a list of permission names")
    try:
        granted = roles_repo.parse_permissions(list(permissions))
    except ValueError as exc:
        raise invalid("permissions", str(exc)) from None
    with db.write() as conn:
        existing = roles_repo.account_roles(conn, actor.account_id)
        if any(fold(r.name) == fold(checked) for r in existing):
            raise invalid("name", f"a role named {checked!r} already exists")
        role_id = roles_repo.create_custom_role(conn, actor.account_id, checked, granted)
        settings_changed(conn, actor.account_id)
        change = Change(
            Operation.ROLE_CREATED,
            TargetKind.ROLE,
            role_id,
            actor.user_id,
            after={
                "roleId": role_id,
                "name": checked,
                "kind": RoleKind.CUSTOM.value,
                "permissions": sorted(p.value for p in granted),
            },
        )
        record(conn, actor.account, [change])
    return Role(id=role_id, kind=RoleKind.CUSTOM, name=checked, permissions=granted)


def account_policy(db: Database, actor: Actor) -> AccountPolicy:
    actor.require_account_admin("read the account's policies")
    with db.read() as conn:
        row = conn.execute(
            select(accounts.c.password_min_length, accounts.c.invitation_message).where(
                accounts.c.id == actor.account_id
            )
        ).one()
    return AccountPolicy(row.password_min_length, row.invitation_message)


def _min_length(value: Any) -> int:
    if isinstance(value, str):
        value = value.strip()
        if not value.isascii() or not value.isdigit() or len(value) > 6:
            raise invalid("minLength", "must be a whole number")
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid("minLength", "must be a whole number")
    if value < 1 or value > MAX_PASSWORD_LENGTH:
        raise invalid("minLength", f"must be between 1 and {MAX_PASSWORD_LENGTH}")
    return value


def set_password_policy(db: Database, actor: Actor, min_length: Any) -> int:
    """Sets the minimum password length; passwords set from now on must meet it (existing
    ones stay valid). Answers the new minimum."""
    actor.require_account_admin("change the password policy")
    minimum = _min_length(min_length)
    _set_account_value(
        db,
        actor,
        accounts.c.password_min_length,
        "passwordMinLength",
        minimum,
        Operation.PASSWORD_POLICY_CHANGED,
    )
    return minimum


def set_invitation_message(db: Database, actor: Actor, message: Any) -> str:
    """Sets the invitation's default text (sent when addUser, an import or a SCIM token
    invites without a text of its own). Answers the stored text."""
    actor.require_account_admin("change the invitation text")
    if message is None:
        message = ""
    if not isinstance(message, str):
        raise invalid("invitationMessage", "must be a text value")
    text = message.replace("\r\n", "\n").strip()
    if not text:
        raise invalid("invitationMessage", "is required")
    if len(text) > MAX_INVITATION_TEXT:
        raise invalid("invitationMessage", f"must be at most {MAX_INVITATION_TEXT} characters long")
    check_text(text, "invitationMessage")
    # The account's settings (what invitations are sent with) hold the text.
    _set_account_value(
        db,
        actor,
        accounts.c.invitation_message,
        "invitationMessage",
        text,
        Operation.INVITATION_TEXT_CHANGED,
        cached=True,
    )
    return text


def _set_account_value(
    db: Database,
    actor: Actor,
    column: Column[Any],
    setting: str,
    value: Any,
    operation: Operation,
    *,
    cached: bool = False,
) -> None:
    """One column of the actor's account set, and the change recorded (before and after, under
    the API's name of the setting) unless the value is already that; `cached`: the account's
    settings hold it, so their version moves on."""
    with db.write() as conn:
        before = conn.execute(
            select(column).where(accounts.c.id == actor.account_id).with_for_update()
        ).scalar_one()
        if before == value:
            return
        conn.execute(
            update(accounts).where(accounts.c.id == actor.account_id).values({column: value})
        )
        if cached:
            settings_changed(conn, actor.account_id)
        change = Change(
            operation,
            TargetKind.ACCOUNT,
            actor.account_id,
            actor.user_id,
            before={setting: before},
            after={setting: value},
        )
        record(conn, actor.account, [change])


__all__ = [
    "AccountPolicy",
    "Permission",
    "account_policy",
    "add_custom_role",
    "add_profile_field",
    "set_invitation_message",
    "set_password_policy",
]
