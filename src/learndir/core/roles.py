"""Roles: the standard ones every account has, custom ones with permission sets, and the rules
for which role an actor may hand out."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, insert, select

from learndir.core.common import new_id
from learndir.core.errors import denied
from learndir.db.engine import Database
from learndir.db.schema import roles

if TYPE_CHECKING:
    from learndir.core.actor import Actor


class RoleKind(StrEnum):
    OWNER = "owner"
    ACCOUNT_ADMINISTRATOR = "account_administrator"
    DEPARTMENT_ADMINISTRATOR = "department_administrator"
    COURSE_AUTHOR = "course_author"
    PUBLISHER = "publisher"
    SUPERVISOR = "supervisor"
    LEARNER = "learner"
    CUSTOM = "custom"


class Permission(StrEnum):
    ADD_USERS = "add_users"
    EDIT_USERS = "edit_users"
    VIEW_USERS = "view_users"
    MANAGE_DEPARTMENTS = "manage_departments"
    MANAGE_GROUPS = "manage_groups"
    CREATE_CONTENT = "create_content"
    PUBLISH_CONTENT = "publish_content"
    VIEW_REPORTS = "view_reports"


ALL_PERMISSIONS = frozenset(Permission)

STANDARD_ROLES: dict[RoleKind, tuple[str, str, frozenset[Permission]]] = {
    RoleKind.OWNER: ("Account Owner", "Owns the account; has every right.", ALL_PERMISSIONS),
    RoleKind.ACCOUNT_ADMINISTRATOR: (
        "Account Administrator",
        "Manages the whole account.",
        ALL_PERMISSIONS,
    ),
    RoleKind.DEPARTMENT_ADMINISTRATOR: (
        "Department Administrator",
        "Manages users, content and reports of the departments assigned to them.",
        ALL_PERMISSIONS,
    ),
    RoleKind.COURSE_AUTHOR: (
        "Course Author",
        "Creates learning content.",
        frozenset({Permission.CREATE_CONTENT}),
    ),
    RoleKind.PUBLISHER: (
        "Publisher",
        "Publishes content to the departments assigned to them.",
        frozenset({Permission.CREATE_CONTENT, Permission.PUBLISH_CONTENT}),
    ),
    RoleKind.SUPERVISOR: (
        "Supervisor",
        "Follows the progress of their subordinates.",
        frozenset({Permission.VIEW_USERS, Permission.VIEW_REPORTS}),
    ),
    RoleKind.LEARNER: ("Learner", "Takes courses.", frozenset()),
}

# Roles whose rights cover the whole account.
ACCOUNT_WIDE = frozenset({RoleKind.OWNER, RoleKind.ACCOUNT_ADMINISTRATOR})
# Roles that act only inside the departments they manage: manageableDepartmentIds is required.
DEPARTMENT_SCOPED = frozenset(
    {RoleKind.DEPARTMENT_ADMINISTRATOR, RoleKind.PUBLISHER, RoleKind.CUSTOM}
)

# Every spelling of a role used by the two generations of addUser and by the OpenAPI document.
ROLE_SPELLINGS: dict[str, RoleKind] = {
    "learner": RoleKind.LEARNER,
    "learners": RoleKind.LEARNER,
    "administrator": RoleKind.ACCOUNT_ADMINISTRATOR,
    "administrators": RoleKind.ACCOUNT_ADMINISTRATOR,
    "account_administrator": RoleKind.ACCOUNT_ADMINISTRATOR,
    "account_administrators": RoleKind.ACCOUNT_ADMINISTRATOR,
    "department_administrator": RoleKind.DEPARTMENT_ADMINISTRATOR,
    "department_administrators": RoleKind.DEPARTMENT_ADMINISTRATOR,
    "course_author": RoleKind.COURSE_AUTHOR,
    "course_authors": RoleKind.COURSE_AUTHOR,
    "publisher": RoleKind.PUBLISHER,
    "publishers": RoleKind.PUBLISHER,
    "supervisor": RoleKind.SUPERVISOR,
    "supervisors": RoleKind.SUPERVISOR,
    "custom": RoleKind.CUSTOM,
    "owner": RoleKind.OWNER,
    "account_owner": RoleKind.OWNER,
    "account_owners": RoleKind.OWNER,
}


@dataclass(frozen=True)
class Role:
    id: str
    kind: RoleKind
    name: str
    permissions: frozenset[Permission]

    @property
    def is_account_wide(self) -> bool:
        return self.kind in ACCOUNT_WIDE

    @property
    def is_department_scoped(self) -> bool:
        return self.kind in DEPARTMENT_SCOPED


def parse_permissions(names: list[str]) -> frozenset[Permission]:
    """Raises ValueError naming the first unknown permission."""
    known = {p.value: p for p in Permission}
    result = set()
    for name in names:
        key = name.strip().lower()
        if key not in known:
            raise ValueError(f"unknown permission {name!r}; known: {', '.join(sorted(known))}")
        result.add(known[key])
    return frozenset(result)


def role_from_row(row: Any) -> Role:
    """A Role from a row with the roles table's id, kind, name and permissions."""
    return role_from_values(row.id, row.kind, row.name, row.permissions)


def role_from_values(role_id: str, kind_name: str, name: str, permissions: str) -> Role:
    kind = RoleKind(kind_name)
    if kind is RoleKind.CUSTOM:
        perms = frozenset(Permission(p) for p in permissions.split())
    else:
        perms = STANDARD_ROLES[kind][2]
    return Role(id=role_id, kind=kind, name=name, permissions=perms)


_SELECT_ACCOUNT_ROLES = select(roles.c.id, roles.c.kind, roles.c.name, roles.c.permissions).where(
    roles.c.account_id == bindparam("account_id")
)


def account_roles(conn: Connection, account_id: str) -> list[Role]:
    return [
        role_from_row(r) for r in conn.execute(_SELECT_ACCOUNT_ROLES, {"account_id": account_id})
    ]


def create_standard_roles(conn: Connection, account_id: str) -> dict[RoleKind, str]:
    ids = {kind: new_id() for kind in STANDARD_ROLES}
    conn.execute(
        insert(roles),
        [
            {
                "id": ids[kind],
                "account_id": account_id,
                "kind": kind.value,
                "name": title,
                "permissions": "",
            }
            for kind, (title, _desc, _perms) in STANDARD_ROLES.items()
        ],
    )
    return ids


def create_custom_role(
    conn: Connection, account_id: str, name: str, permissions: frozenset[Permission]
) -> str:
    role_id = new_id()
    conn.execute(
        insert(roles).values(
            id=role_id,
            account_id=account_id,
            kind=RoleKind.CUSTOM.value,
            name=name,
            permissions=" ".join(sorted(p.value for p in permissions)),
        )
    )
    return role_id


def role_description(role: Role) -> str:
    if role.kind is RoleKind.CUSTOM:
        perms = ", ".join(sorted(p.value for p in role.permissions)) or "no permissions"
        return f"Custom role: {perms}."
    return STANDARD_ROLES[role.kind][1]


def list_roles(db: Database, actor: Actor) -> list[Role]:
    if actor.is_learner_only:
        raise denied("learners cannot list roles")
    with db.read() as conn:
        order = list(STANDARD_ROLES)
        return sorted(
            account_roles(conn, actor.account_id),
            key=lambda r: (order.index(r.kind) if r.kind in order else len(order), r.name),
        )
