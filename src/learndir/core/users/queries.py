"""Reading users back, within what the actor may see."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from learndir.core.actor import Actor
from learndir.core.common import as_uuid_text
from learndir.core.errors import denied, not_found
from learndir.core.roles import Role, RoleKind, account_roles
from learndir.db.engine import Database
from learndir.db.schema import (
    departments,
    group_members,
    profile_fields,
    user_field_values,
    user_role_departments,
    user_roles,
    users,
)


@dataclass(frozen=True)
class UserView:
    id: str
    department_id: str
    status: int
    added_at: datetime
    added_by: str | None
    # Profile values by field name (built-in and custom), as stored.
    fields: dict[str, str]
    roles: list[tuple[Role, list[str]]]
    groups: list[str]

    @property
    def primary_role(self) -> tuple[Role, list[str]]:
        """The administrative role when there is one, else Learner."""
        for role, depts in self.roles:
            if role.kind is not RoleKind.LEARNER:
                return role, depts
        return self.roles[0]


def get_user(db: Database, actor: Actor, user_id: str) -> UserView:
    canonical = as_uuid_text(user_id) or ""
    with db.read() as conn:
        row = conn.execute(
            select(users, departments.c.path)
            .join(departments, departments.c.id == users.c.department_id)
            .where(users.c.id == canonical, users.c.account_id == actor.account_id)
        ).first()
        if row is None:
            raise not_found("user", "userId")
        if row.id != actor.user_id and not actor.visible_scope().covers(row.path):
            raise denied("the user is outside the departments you manage", "userId")
        fields = {
            name: getattr(row, name)
            for name in ("login", "email", "first_name", "last_name", "job_title", "phone")
            if getattr(row, name)
        }
        for value in conn.execute(
            select(profile_fields.c.name, user_field_values.c.value)
            .join(profile_fields, profile_fields.c.id == user_field_values.c.field_id)
            .where(user_field_values.c.user_id == canonical)
        ):
            fields[value.name] = value.value
        roles_by_id = {r.id: r for r in account_roles(conn, actor.account_id)}
        managed: dict[str, list[str]] = {}
        for m in conn.execute(
            select(user_role_departments.c.role_id, user_role_departments.c.department_id).where(
                user_role_departments.c.user_id == canonical
            )
        ):
            managed.setdefault(m.role_id, []).append(m.department_id)
        role_list = [
            (roles_by_id[r.role_id], sorted(managed.get(r.role_id, [])))
            for r in conn.execute(
                select(user_roles.c.role_id).where(user_roles.c.user_id == canonical)
            )
        ]
        group_ids = sorted(
            g.group_id
            for g in conn.execute(
                select(group_members.c.group_id).where(group_members.c.user_id == canonical)
            )
        )
    return UserView(
        id=row.id,
        department_id=row.department_id,
        status=row.status,
        added_at=row.added_at,
        added_by=row.added_by,
        fields=fields,
        roles=role_list,
        groups=group_ids,
    )
