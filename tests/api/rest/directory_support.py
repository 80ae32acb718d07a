"""Shared by the department and group tests: an account of their own per module (they move and
delete departments), the two REST transports, and a snapshot of everything they may change."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from learndir.core.departments import get_many, insert_department
from learndir.db.engine import Database
from learndir.db.schema import departments, group_members, groups, users
from tests.support import World
from tests.transports import Auth


def auth(world: World, login: str = "owner") -> Auth:
    return Auth(token=world.token(login))


def new_department(world: World, parent_id: str, name: str, code: str | None = None) -> str:
    with world.db.write() as conn:
        parent = get_many(conn, world.account_id, [parent_id])[parent_id]
        return insert_department(conn, world.account_id, parent, name, code)


def department_row(db: Database, dept_id: str) -> Any:
    with db.read() as conn:
        return conn.execute(select(departments).where(departments.c.id == dept_id)).first()


def user_department(db: Database, user_id: str) -> str:
    with db.read() as conn:
        return str(
            conn.execute(select(users.c.department_id).where(users.c.id == user_id)).scalar_one()
        )


def members_of(db: Database, group_id: str) -> set[str]:
    with db.read() as conn:
        return set(
            conn.scalars(
                select(group_members.c.user_id).where(group_members.c.group_id == group_id)
            )
        )


def directory_snapshot(db: Database, account_id: str) -> dict[str, Any]:
    """Every row a department or group call may write in the account."""
    with db.read() as conn:
        return {
            "departments": sorted(
                tuple(r)
                for r in conn.execute(
                    select(departments).where(departments.c.account_id == account_id)
                )
            ),
            "users": sorted(
                tuple(r)
                for r in conn.execute(
                    select(users.c.id, users.c.department_id).where(
                        users.c.account_id == account_id
                    )
                )
            ),
            "groups": sorted(
                tuple(r)
                for r in conn.execute(select(groups).where(groups.c.account_id == account_id))
            ),
            "members": sorted(
                tuple(r)
                for r in conn.execute(
                    select(group_members.c.group_id, group_members.c.user_id)
                    .join(groups, groups.c.id == group_members.c.group_id)
                    .where(groups.c.account_id == account_id)
                )
            ),
        }
