"""The users a change is about, and whether the actor may touch them: one check for every
operation that changes, deletes or moves users."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, select

from learndir.core.actor import Actor, Scope
from learndir.core.common import as_uuid_text
from learndir.core.errors import DomainError, denied, not_found
from learndir.core.roles import Permission, Role, RoleKind, role_from_row
from learndir.db.schema import departments, roles, user_role_departments, user_roles, users


@dataclass(frozen=True)
class Target:
    """A user about to be changed, with what the permission checks need."""

    id: str
    department_id: str
    path: str
    status: int
    roles: tuple[Role, ...]
    # Materialised paths of the departments the user's roles manage.
    managed_paths: tuple[str, ...] = ()

    @property
    def is_owner(self) -> bool:
        return any(r.kind is RoleKind.OWNER for r in self.roles)


_SELECT_TARGETS = (
    select(users.c.id, users.c.department_id, users.c.status, departments.c.path)
    .join(departments, departments.c.id == users.c.department_id)
    .where(
        users.c.account_id == bindparam("account_id"),
        users.c.id.in_(bindparam("ids", expanding=True)),
    )
)
_SELECT_TARGET_ROLES = (
    select(user_roles.c.user_id, roles.c.id, roles.c.kind, roles.c.name, roles.c.permissions)
    .join(roles, roles.c.id == user_roles.c.role_id)
    .where(user_roles.c.user_id.in_(bindparam("ids", expanding=True)))
)


_SELECT_TARGET_MANAGED = (
    select(user_role_departments.c.user_id, departments.c.path)
    .join(departments, departments.c.id == user_role_departments.c.department_id)
    .where(user_role_departments.c.user_id.in_(bindparam("ids", expanding=True)))
)


def unknown_user(parameter: str, raw: str) -> DomainError:
    error = not_found("user", parameter)
    error.reason = f"no user {raw!r} in this account"
    return error


def load_targets(
    conn: Connection, actor: Actor, raw_ids: Sequence[str], parameter: str
) -> list[Target]:
    """The users named by `raw_ids`, in order and without repeats; an id that is not a user of
    the actor's account (whatever else it may be) is "Unknown user", naming it."""
    wanted: dict[str, str] = {}
    for raw in raw_ids:
        canonical = as_uuid_text(raw) if isinstance(raw, str) else None
        if canonical is None:
            raise unknown_user(parameter, str(raw))
        wanted.setdefault(canonical, raw)
    if not wanted:
        return []
    ids = list(wanted)
    rows = {
        r.id: r for r in conn.execute(_SELECT_TARGETS, {"account_id": actor.account_id, "ids": ids})
    }
    for canonical, raw in wanted.items():
        if canonical not in rows:
            raise unknown_user(parameter, raw)
    held: dict[str, list[Role]] = {}
    for r in conn.execute(_SELECT_TARGET_ROLES, {"ids": ids}):
        held.setdefault(r.user_id, []).append(role_from_row(r))
    managed: dict[str, list[str]] = {}
    if any(role.is_department_scoped for roles_held in held.values() for role in roles_held):
        for m in conn.execute(_SELECT_TARGET_MANAGED, {"ids": ids}):
            managed.setdefault(m.user_id, []).append(m.path)
    return [
        Target(
            id=i,
            department_id=rows[i].department_id,
            path=rows[i].path,
            status=rows[i].status,
            roles=tuple(held.get(i, ())),
            managed_paths=tuple(managed.get(i, ())),
        )
        for i in ids
    ]


def edit_scope(actor: Actor) -> Scope:
    scope = actor.scope(Permission.EDIT_USERS)
    if scope.is_empty:
        raise denied("your roles do not allow changing users")
    return scope


def authorize_target(actor: Actor, scope: Scope, target: Target, parameter: str) -> None:
    """EDIT_USERS over the user's current department; a department-limited actor may not touch
    a user holding an account-wide role or rights the actor lacks, nor one who manages
    departments outside the actor's own (it could then act there through that user)."""
    if not scope.covers(target.path):
        raise denied(f"user {target.id} is outside the departments you manage", parameter)
    if scope.account_wide:
        return
    own = actor.permissions_within_departments()
    for role in target.roles:
        if role.is_account_wide:
            raise denied(
                f"user {target.id} holds the {role.name} role, which only the account owner "
                "and account administrators can change",
                parameter,
            )
        if not role.permissions <= own:
            raise denied(
                f"user {target.id} holds the {role.name} role, with rights your roles do not have",
                parameter,
            )
    for path in target.managed_paths:
        if not scope.covers(path):
            raise denied(
                f"user {target.id} manages departments outside the departments you manage",
                parameter,
            )
