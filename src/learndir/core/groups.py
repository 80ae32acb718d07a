"""User groups of an account."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, insert, select

from learndir.core.actor import Actor
from learndir.core.common import as_uuid_text, new_id
from learndir.core.errors import denied, invalid
from learndir.core.roles import Permission
from learndir.db.engine import Database
from learndir.db.schema import departments, group_members, groups, users

_SELECT_EXISTING = select(groups.c.id).where(
    groups.c.account_id == bindparam("account_id"),
    groups.c.id.in_(bindparam("ids", expanding=True)),
)


@dataclass(frozen=True)
class Group:
    id: str
    name: str


def existing_ids(conn: Connection, account_id: str, ids: Iterable[str]) -> set[str]:
    wanted = set(ids)
    if not wanted:
        return set()
    rows = conn.execute(_SELECT_EXISTING, {"account_id": account_id, "ids": list(wanted)})
    return {r.id for r in rows}


def insert_group(conn: Connection, account_id: str, name: str) -> str:
    name = name.strip()
    if not name:
        raise invalid("name", "a group needs a name")
    if len(name) > 255:
        raise invalid("name", "longer than 255 characters")
    group_id = new_id()
    conn.execute(insert(groups).values(id=group_id, account_id=account_id, name=name))
    return group_id


def list_groups(db: Database, actor: Actor) -> list[Group]:
    if actor.is_learner_only:
        raise denied("learners cannot list groups")
    with db.read() as conn:
        rows = conn.execute(
            select(groups.c.id, groups.c.name)
            .where(groups.c.account_id == actor.account_id)
            .order_by(groups.c.name, groups.c.id)
        )
        return [Group(id=r.id, name=r.name) for r in rows]


def create_group(db: Database, actor: Actor, name: str | None, user_ids: list[str]) -> str:
    if not name or not name.strip():
        raise invalid("name", "is required")
    scope = actor.scope(Permission.MANAGE_GROUPS)
    if scope.is_empty:
        raise denied("your roles cannot create groups")
    canonical = []
    for raw in user_ids:
        value = as_uuid_text(raw)
        if value is None:
            raise invalid("userIds", f"{raw!r} is not a user id")
        canonical.append(value)
    with db.write() as conn:
        members = {}
        if canonical:
            rows = conn.execute(
                select(users.c.id, departments.c.path)
                .join(departments, departments.c.id == users.c.department_id)
                .where(users.c.account_id == actor.account_id, users.c.id.in_(set(canonical)))
            )
            members = {r.id: r.path for r in rows}
        for user_id in canonical:
            if user_id not in members:
                raise invalid("userIds", f"no user {user_id!r} in this account")
            if not scope.covers(members[user_id]):
                raise denied(f"user {user_id} is outside the departments you manage", "userIds")
        group_id = insert_group(conn, actor.account_id, name)
        if members:
            conn.execute(
                insert(group_members), [{"group_id": group_id, "user_id": u} for u in members]
            )
        return group_id
