"""The department tree of an account, stored with materialised paths."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select
from sqlalchemy.exc import IntegrityError

from learndir.core.actor import Actor
from learndir.core.common import as_uuid_text, fold, new_id
from learndir.core.errors import DomainError, ErrorCode, denied, invalid, not_found
from learndir.core.roles import Permission
from learndir.db.engine import Database
from learndir.db.schema import departments

MAX_NAME_LENGTH = 255


@dataclass(frozen=True)
class Department:
    id: str
    name: str
    code: str | None
    parent_id: str | None
    path: str


def _to_department(row: Any) -> Department:
    return Department(
        id=row.id, name=row.name, code=row.code, parent_id=row.parent_id, path=row.path
    )


_COLUMNS = (
    departments.c.id,
    departments.c.name,
    departments.c.code,
    departments.c.parent_id,
    departments.c.path,
)
# Built once: statements on the hot path are reused so SQLAlchemy skips rebuilding them.
_SELECT_MANY = select(*_COLUMNS).where(
    departments.c.account_id == bindparam("account_id"),
    departments.c.id.in_(bindparam("ids", expanding=True)),
)


def get_many(conn: Connection, account_id: str, ids: Iterable[str]) -> dict[str, Department]:
    """The departments of the account among `ids`; ids of other accounts are simply absent."""
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    rows = conn.execute(_SELECT_MANY, {"account_id": account_id, "ids": list(wanted)})
    return {r.id: _to_department(r) for r in rows}


def root(conn: Connection, account_id: str) -> Department:
    row = conn.execute(
        select(*_COLUMNS).where(
            departments.c.account_id == account_id, departments.c.parent_id.is_(None)
        )
    ).one()
    return _to_department(row)


def all_in_account(conn: Connection, account_id: str) -> list[Department]:
    rows = conn.execute(
        select(*_COLUMNS).where(departments.c.account_id == account_id).order_by(departments.c.path)
    )
    return [_to_department(r) for r in rows]


def insert_department(
    conn: Connection, account_id: str, parent: Department | None, name: str, code: str | None
) -> str:
    name = name.strip()
    if not name:
        raise invalid("name", "a department needs a name")
    if len(name) > MAX_NAME_LENGTH:
        raise invalid("name", f"longer than {MAX_NAME_LENGTH} characters")
    code = code.strip() if code else None
    if code:
        if len(code) > MAX_NAME_LENGTH:
            raise invalid("code", f"longer than {MAX_NAME_LENGTH} characters")
        taken = conn.execute(
            select(departments.c.id).where(
                departments.c.account_id == account_id, departments.c.code_key == fold(code)
            )
        ).first()
        if taken:
            raise invalid("code", f"department code {code!r} is already used in this account")
    dept_id = new_id()
    path = f"{parent.path if parent else '/'}{dept_id}/"
    try:
        with conn.begin_nested():
            conn.execute(
                insert(departments).values(
                    id=dept_id,
                    account_id=account_id,
                    parent_id=parent.id if parent else None,
                    name=name,
                    code=code or None,
                    code_key=fold(code) if code else None,
                    path=path,
                )
            )
    except IntegrityError:
        raise invalid("code", f"department code {code!r} is already used in this account") from None
    return dept_id


def create_department(
    db: Database, actor: Actor, name: str | None, parent_id: str | None, code: str | None
) -> str:
    if not name or not name.strip():
        raise invalid("name", "is required")
    if not parent_id:
        raise invalid("parentDepartmentId", "is required")
    scope = actor.scope(Permission.MANAGE_DEPARTMENTS)
    if scope.is_empty:
        raise denied("your roles cannot create departments")
    with db.write() as conn:
        parent = get_many(conn, actor.account_id, [as_uuid_text(parent_id) or ""]).get(
            as_uuid_text(parent_id) or ""
        )
        if parent is None:
            raise invalid("parentDepartmentId", f"no department {parent_id!r} in this account")
        if not scope.covers(parent.path):
            raise denied(
                "the parent department is outside the departments you manage", "parentDepartmentId"
            )
        return insert_department(conn, actor.account_id, parent, name, code)


def list_departments(db: Database, actor: Actor, code: str | None = None) -> list[Department]:
    scope = actor.visible_scope()
    if scope.is_empty:
        raise denied("your roles cannot see departments")
    with db.read() as conn:
        result = [d for d in all_in_account(conn, actor.account_id) if scope.covers(d.path)]
    if code is not None:
        result = [d for d in result if d.code is not None and fold(d.code) == fold(code)]
    return result


def get_department(db: Database, actor: Actor, department_id: str) -> Department:
    scope = actor.visible_scope()
    if scope.is_empty:
        raise denied("your roles cannot see departments")
    canonical = as_uuid_text(department_id) or ""
    with db.read() as conn:
        dept = get_many(conn, actor.account_id, [canonical]).get(canonical)
    if dept is None:
        raise not_found("department", "departmentId")
    if not scope.covers(dept.path):
        raise DomainError(
            ErrorCode.PERMISSION_DENIED,
            "outside the departments you manage",
            parameter="departmentId",
        )
    return dept
