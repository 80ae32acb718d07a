"""The department tree of an account, stored with materialised paths."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import (
    Connection,
    String,
    any_,
    bindparam,
    column,
    delete,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError

from learndir.core import smart_groups
from learndir.core.actor import AccountInfo, Actor, Scope
from learndir.core.changes import (
    Change,
    EventType,
    TargetKind,
    record,
    record_user_changes,
    users_before,
)
from learndir.core.common import as_uuid_text, fold, new_id
from learndir.core.errors import DomainError, ErrorCode, denied, invalid, not_found
from learndir.core.paging import page_request, split_page
from learndir.core.roles import Permission
from learndir.core.users.targets import authorize_target, edit_scope, load_targets
from learndir.db.engine import Database, unit_memo
from learndir.db.rows import fetch_rows
from learndir.db.schema import accounts, departments, user_role_departments, users

MAX_NAME_LENGTH = 255


@dataclass(frozen=True)
class Department:
    id: str
    name: str
    code: str | None
    parent_id: str | None
    path: str
    # Subordination as stored: a NULL type means "inherit".
    subordination_type: str | None = None
    supervisor_id: str | None = None
    co_subordination_type: str | None = None
    co_supervisor_id: str | None = None


@dataclass(frozen=True)
class DepartmentsPage:
    departments: list[Department]
    next_page_token: str | None


def snapshot(d: Department) -> dict[str, Any]:
    """A department as change records show it."""
    return {
        "departmentId": d.id,
        "name": d.name,
        "parentDepartmentId": d.parent_id,
        "code": d.code,
        "subordination": {
            "type": d.subordination_type or "inherit",
            "supervisorId": d.supervisor_id,
        },
        "coSubordination": {
            "type": d.co_subordination_type or "inherit",
            "supervisorId": d.co_supervisor_id,
        },
    }


def _record_department_change(
    conn: Connection, actor: Actor, before: Department | None, after_id: str | None
) -> None:
    """DEPARTMENT_CREATED / _DELETED, or _MOVED (new parent) and _UPDATED (anything else);
    `after_id` is the department to read back (None once deleted)."""
    after = _find(conn, actor.account_id, after_id, "id") if after_id else None
    changes: list[Change] = []

    def change(kind: EventType, dept: Department) -> Change:
        return Change(
            kind,
            TargetKind.DEPARTMENT,
            dept.id,
            actor.user_id,
            before=snapshot(before) if before is not None else None,
            after=snapshot(after) if after is not None else None,
        )

    if before is None and after is not None:
        changes.append(change(EventType.DEPARTMENT_CREATED, after))
    elif before is not None and after is None:
        changes.append(change(EventType.DEPARTMENT_DELETED, before))
    elif before is not None and after is not None:
        if before.parent_id != after.parent_id:
            changes.append(change(EventType.DEPARTMENT_MOVED, after))
        if replace(before, parent_id=after.parent_id, path=after.path) != after:
            changes.append(change(EventType.DEPARTMENT_UPDATED, after))
    record(conn, actor.account, changes)


def _to_department(row: Any) -> Department:
    return Department(
        id=row.id,
        name=row.name,
        code=row.code,
        parent_id=row.parent_id,
        path=row.path,
        subordination_type=row.subordination_type,
        supervisor_id=row.supervisor_id,
        co_subordination_type=row.co_subordination_type,
        co_supervisor_id=row.co_supervisor_id,
    )


_COLUMNS = (
    departments.c.id,
    departments.c.name,
    departments.c.code,
    departments.c.parent_id,
    departments.c.path,
    departments.c.subordination_type,
    departments.c.supervisor_id,
    departments.c.co_subordination_type,
    departments.c.co_supervisor_id,
)
# Built once: statements on the hot path are reused so SQLAlchemy skips rebuilding them.
# By id alone: only the primary key fits, whatever the planner's statistics say (with the
# account too, a planner without statistics may pick the (account_id, path) index and read the
# account's whole tree). The account is checked on the rows found.
_SELECT_MANY = select(*_COLUMNS, departments.c.account_id).where(
    departments.c.id.in_(bindparam("ids", expanding=True))
)


_WITH_VERSION = select(
    *_COLUMNS,
    departments.c.account_id,
    select(accounts.c.settings_version)
    .where(accounts.c.id == bindparam("account_id"))
    .scalar_subquery()
    .label("settings_version"),
)
# The ids as one parameter, so that the statement runs straight on the driver (addUser's hot
# path, see db.rows). PostgreSQL: one array, which the primary key's index answers with `= ANY`
# as it answers IN. SQLite: one JSON array, its values listed by json_each and each looked up
# by the primary key, as IN (...) is.
_SELECT_ANY_WITH_VERSION = _WITH_VERSION.where(
    departments.c.id == any_(bindparam("ids", type_=postgresql.ARRAY(String)))
)
_SELECT_JSON_WITH_VERSION = _WITH_VERSION.where(
    departments.c.id.in_(
        select(column("value", String)).select_from(func.json_each(bindparam("ids_json")))
    )
)


# PostgreSQL: the departments an addUser names, read by the statement that reads the caller's
# token (core.auth), as one JSON column: the plan then needs no round trip of its own for them
# (addUser at 32 clients, 2 processes: a scratch run without that round trip did 15-24% more
# users/s, the processes waiting less). By id alone, as _SELECT_MANY (the account is checked
# on the rows read, see remember_read_ahead).
_AHEAD = departments.alias("read_ahead")
READ_AHEAD_COLUMN = (
    select(
        func.json_agg(
            func.json_build_array(*(_AHEAD.c[c.name] for c in _COLUMNS), _AHEAD.c.account_id)
        )
    )
    .where(_AHEAD.c.id == any_(bindparam("ahead_ids", type_=postgresql.ARRAY(String))))
    .scalar_subquery()
    .label("read_ahead")
)
_READ_AHEAD = "departments read ahead"


def read_ahead_ids(conn: Connection, ids: Iterable[str | None]) -> list[str]:
    """The ids among `ids` worth reading with the caller's token: on PostgreSQL, inside a
    request (where the plan can find them, see unit_memo); none elsewhere."""
    if conn.dialect.name != "postgresql" or unit_memo(conn) is None:
        return []
    return _wanted(as_uuid_text(i) or "" for i in ids if isinstance(i, str))


def remember_read_ahead(
    conn: Connection, account_id: str, ids: Sequence[str], values: Sequence[Sequence[Any]] | None
) -> None:
    """Keeps READ_AHEAD_COLUMN's departments for get_many_and_account in this request."""
    memo = unit_memo(conn)
    if memo is None:
        return
    found = {}
    for value in values or ():
        *fields, of_account = value
        if of_account == account_id:
            department = Department(**dict(zip(_FIELDS, fields, strict=True)))
            found[department.id] = department
    memo[_READ_AHEAD] = (account_id, frozenset(ids), found)


_FIELDS = tuple(c.name for c in _COLUMNS)


def get_many_and_account(
    conn: Connection, account: AccountInfo, ids: Iterable[str]
) -> tuple[dict[str, Department], AccountInfo]:
    """get_many, and the account at the settings version this transaction sees (its profile
    fields, roles and smart groups may have changed since the actor authenticated), in one
    round trip: addUser's hot path. When the request's authentication read every one of `ids`
    ahead (READ_AHEAD_COLUMN), in none: the account was read by that same statement, so the
    actor's settings version is the one this request sees."""
    wanted = _wanted(ids)
    memo = unit_memo(conn)
    ahead = memo.pop(_READ_AHEAD, None) if memo is not None else None
    if ahead is not None and ahead[0] == account.id and ahead[1].issuperset(wanted):
        found: dict[str, Department] = ahead[2]
        return {i: found[i] for i in wanted if i in found}, account
    rows: Sequence[Any] = (
        fetch_rows(conn, _SELECT_ANY_WITH_VERSION, {"ids": wanted, "account_id": account.id})
        if conn.dialect.name == "postgresql"
        else fetch_rows(
            conn,
            _SELECT_JSON_WITH_VERSION,
            {"ids_json": json.dumps(wanted), "account_id": account.id},
        )
    )
    if not rows:
        return {}, smart_groups.current(conn, account)
    version = int(rows[0].settings_version)
    if version != account.settings_version:
        account = replace(account, settings_version=version)
    return _of_account(rows, account.id), account


def _wanted(ids: Iterable[str]) -> list[str]:
    return list({i for i in ids if i})


def _of_account(rows: Iterable[Any], account_id: str) -> dict[str, Department]:
    """The rows' departments that belong to the account, by id."""
    return {r.id: _to_department(r) for r in rows if r.account_id == account_id}


def get_many(conn: Connection, account_id: str, ids: Iterable[str]) -> dict[str, Department]:
    """The departments of the account among `ids`; ids of other accounts are simply absent."""
    wanted = _wanted(ids)
    if not wanted:
        return {}
    return _of_account(conn.execute(_SELECT_MANY, {"ids": wanted}), account_id)


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
    name = _check_name(name)
    code = _check_code(conn, account_id, code, None)
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
        raise _code_taken(code) from None
    return dept_id


def _code_taken(code: str | None) -> DomainError:
    return invalid("code", f"department code {code!r} is already used in this account")


def _check_code(
    conn: Connection, account_id: str, code: str | None, own_id: str | None
) -> str | None:
    """The code to store (None for no code), unique per account whatever its case."""
    code = code.strip() if code else None
    if not code:
        return None
    if len(code) > MAX_NAME_LENGTH:
        raise invalid("code", f"longer than {MAX_NAME_LENGTH} characters")
    taken = conn.execute(
        select(departments.c.id).where(
            departments.c.account_id == account_id, departments.c.code_key == fold(code)
        )
    ).first()
    if taken and taken.id != own_id:
        raise _code_taken(code)
    return code


def _check_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise invalid("name", "a department needs a name")
    if len(name) > MAX_NAME_LENGTH:
        raise invalid("name", f"longer than {MAX_NAME_LENGTH} characters")
    return name


SUBORDINATION_TYPES = ("manual", "inherit", "no_supervisor")
_CHUNK = 1000


# ---- lookups and scope ----------------------------------------------------------------------


def _unknown(what: str, parameter: str, raw: str) -> DomainError:
    return DomainError(
        ErrorCode.NOT_FOUND,
        f"no {what} {raw!r} in this account",
        parameter=parameter,
        message=f"Unknown {what}",
    )


def _find(conn: Connection, account_id: str, raw_id: str | None, parameter: str) -> Department:
    """The department `raw_id` of the account; another account's id is unknown (404)."""
    canonical = as_uuid_text(raw_id or "") or ""
    dept = get_many(conn, account_id, [canonical]).get(canonical)
    if dept is None:
        raise _unknown("department", parameter, raw_id or "")
    return dept


def _manage_scope(actor: Actor) -> Scope:
    scope = actor.scope(Permission.MANAGE_DEPARTMENTS)
    if scope.is_empty:
        raise denied("your roles cannot manage departments")
    return scope


def _require_covers(scope: Scope, dept: Department, parameter: str) -> None:
    if not scope.covers(dept.path):
        raise denied(f"department {dept.id} is outside the departments you manage", parameter)


def _require_not_scope_top(scope: Scope, dept: Department, parameter: str, action: str) -> None:
    """A department administrator works inside the subtrees they manage, never on their tops:
    moving or deleting a top would change or end their own scope."""
    if scope.account_wide:
        return
    inside_another = any(dept.path.startswith(p) and dept.path != p for p in scope.paths)
    if dept.path in scope.paths and not inside_another:
        raise denied(
            f"department {dept.id} is the top of the departments you manage; only an account "
            f"administrator can {action} it",
            parameter,
        )


def within_scope(scope: Scope) -> Any:
    """The departments a scope reaches (its subtrees, by their materialised paths)."""
    if scope.account_wide:
        return literal(True)
    return or_(false(), *(departments.c.path.startswith(p, autoescape=True) for p in scope.paths))


def _visible_scope(actor: Actor) -> Scope:
    scope = actor.visible_scope()
    if scope.is_empty:
        raise denied("your roles cannot see departments")
    return scope


# ---- reading --------------------------------------------------------------------------------


def list_departments(db: Database, actor: Actor, code: str | None = None) -> list[Department]:
    """The departments the actor may see, in tree order; `code` matches case-insensitively."""
    scope = _visible_scope(actor)
    with db.read() as conn:
        result = [d for d in all_in_account(conn, actor.account_id) if scope.covers(d.path)]
    if code is not None:
        result = [d for d in result if d.code is not None and fold(d.code) == fold(code)]
    return result


def page_departments(
    db: Database, actor: Actor, page_size: int | None, page_token: str | None
) -> DepartmentsPage:
    """One keyset page of the visible departments in id order."""
    page = page_request(page_size, page_token)
    scope = _visible_scope(actor)
    with db.read() as conn:
        rows, next_token = split_page(
            page,
            conn.execute(
                select(*_COLUMNS)
                .where(
                    departments.c.account_id == actor.account_id,
                    departments.c.id > page.after,
                    within_scope(scope),
                )
                .order_by(departments.c.id)
                .limit(page.limit)
            ).all(),
        )
    return DepartmentsPage([_to_department(r) for r in rows], next_token)


def get_department(db: Database, actor: Actor, department_id: str) -> Department:
    scope = _visible_scope(actor)
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


# ---- changing -------------------------------------------------------------------------------


@contextlib.contextmanager
def _tree_write(db: Database, account_id: str) -> Iterator[Connection]:
    """A write transaction that changes (or depends on) the shape of the account's tree. On
    PostgreSQL it first locks the root department's row, so two moves cannot each see the
    other's old paths and make a cycle, and a department is not deleted under a move or a
    create. FOR NO KEY UPDATE: users added meanwhile (whose foreign keys take KEY SHARE on
    their department) do not wait. SQLite serialises writers anyway."""
    with db.write() as conn:
        conn.execute(
            select(departments.c.id)
            .where(departments.c.account_id == account_id, departments.c.parent_id.is_(None))
            .with_for_update(key_share=True)
        ).all()
        yield conn


def create_department(
    db: Database,
    actor: Actor,
    name: str | None,
    parent_id: str | None,
    code: str | None,
    subordination: Any = None,
    co_subordination: Any = None,
) -> str:
    """A new department under `parent_id`, with its supervisors when they are given."""
    if not name or not name.strip():
        raise invalid("name", "is required")
    if not parent_id:
        raise invalid("parentDepartmentId", "is required")
    scope = actor.scope(Permission.MANAGE_DEPARTMENTS)
    if scope.is_empty:
        raise denied("your roles cannot create departments")
    with _tree_write(db, actor.account_id) as conn:
        parent = get_many(conn, actor.account_id, [as_uuid_text(parent_id) or ""]).get(
            as_uuid_text(parent_id) or ""
        )
        if parent is None:
            raise invalid("parentDepartmentId", f"no department {parent_id!r} in this account")
        if not scope.covers(parent.path):
            raise denied(
                "the parent department is outside the departments you manage", "parentDepartmentId"
            )
        new_id = insert_department(conn, actor.account_id, parent, name, code)
        values = _subordination_update(conn, actor.account_id, subordination, co_subordination)
        if values:
            conn.execute(update(departments).where(departments.c.id == new_id).values(values))
        _record_department_change(conn, actor, None, new_id)
        return new_id


def update_department(
    db: Database,
    actor: Actor,
    department_id: str,
    *,
    name: str | None = None,
    parent_id: str | None = None,
    code: str | None = None,
    subordination: Any = None,
    co_subordination: Any = None,
) -> None:
    """Renames, re-codes (an empty code removes it), moves (`parent_id`) a department and sets
    its supervisors, in one transaction."""
    given = (name, parent_id, code, subordination, co_subordination)
    if all(value is None for value in given):
        raise invalid(
            "request", "give name, parentDepartmentId, code, subordination or coSubordination"
        )
    scope = _manage_scope(actor)
    with _tree_write(db, actor.account_id) as conn:
        dept = _find(conn, actor.account_id, department_id, "departmentId")
        _require_covers(scope, dept, "departmentId")
        values = _subordination_update(conn, actor.account_id, subordination, co_subordination)
        if name is not None:
            values["name"] = _check_name(name)
        if code is not None:
            new_code = _check_code(conn, actor.account_id, code, dept.id)
            values["code"] = new_code
            values["code_key"] = fold(new_code) if new_code else None
        if parent_id is not None:
            canonical = as_uuid_text(parent_id) or ""
            parent = get_many(conn, actor.account_id, [canonical]).get(canonical)
            if parent is None:
                raise invalid("parentDepartmentId", f"no department {parent_id!r} in this account")
            if _move(conn, actor, scope, dept, parent, "departmentId", "parentDepartmentId"):
                smart_groups.recompute_after_department_move(conn, actor.account)
        if values:
            try:
                conn.execute(update(departments).where(departments.c.id == dept.id).values(values))
            except IntegrityError:
                raise _code_taken(code) from None
        _record_department_change(conn, actor, dept, dept.id)


def _move(
    conn: Connection,
    actor: Actor,
    scope: Scope,
    dept: Department,
    parent: Department,
    dept_parameter: str,
    parent_parameter: str,
) -> bool:
    """Moves `dept` (and its subtree) under `parent`; False when it is there already."""
    if dept.parent_id is None:
        raise invalid(dept_parameter, "the root department cannot be moved")
    if parent.path.startswith(dept.path):
        raise invalid(
            parent_parameter,
            f"department {dept.id} cannot be moved under itself or its own sub-departments",
        )
    _require_covers(scope, dept, dept_parameter)
    _require_not_scope_top(scope, dept, dept_parameter, "move")
    _require_covers(scope, parent, parent_parameter)
    if dept.parent_id == parent.id:
        return False
    old_prefix = dept.path
    new_prefix = f"{parent.path}{dept.id}/"
    # The whole subtree in one statement: swap the old path prefix for the new one.
    conn.execute(
        update(departments)
        .where(
            departments.c.account_id == actor.account_id,
            departments.c.path.startswith(old_prefix, autoescape=True),
        )
        .values(
            path=literal(new_prefix, departments.c.path.type)
            + func.substr(departments.c.path, len(old_prefix) + 1)
        )
    )
    conn.execute(update(departments).where(departments.c.id == dept.id).values(parent_id=parent.id))
    return True


def move_departments(
    db: Database, actor: Actor, parent_id: str, department_ids: Sequence[str]
) -> None:
    """Moves every department of `department_ids` under `parent_id`, all or none."""
    wanted = list(dict.fromkeys(i.strip() for i in department_ids if i and i.strip()))
    if not wanted:
        raise invalid("departmentIds", "is required")
    scope = _manage_scope(actor)
    with _tree_write(db, actor.account_id) as conn:
        parent = _find(conn, actor.account_id, parent_id, "parentId")
        moved = False
        for raw in wanted:
            dept = _find(conn, actor.account_id, raw, "departmentIds")
            # Re-read: an earlier move in this call may have changed the parent's path.
            parent = _find(conn, actor.account_id, parent.id, "parentId")
            if _move(conn, actor, scope, dept, parent, "departmentIds", "parentId"):
                moved = True
                _record_department_change(conn, actor, dept, dept.id)
        if moved:
            smart_groups.recompute_after_department_move(conn, actor.account)


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def delete_department(db: Database, actor: Actor, department_id: str) -> None:
    scope = _manage_scope(actor)
    with _tree_write(db, actor.account_id) as conn:
        dept = _find(conn, actor.account_id, department_id, "departmentId")
        if dept.parent_id is None:
            raise invalid("departmentId", "the root department cannot be deleted")
        _require_covers(scope, dept, "departmentId")
        _require_not_scope_top(scope, dept, "departmentId", "delete")
        members = conn.execute(
            select(func.count()).select_from(users).where(users.c.department_id == dept.id)
        ).scalar_one()
        children = conn.execute(
            select(func.count()).select_from(departments).where(departments.c.parent_id == dept.id)
        ).scalar_one()
        if members or children:
            raise DomainError(
                ErrorCode.DEPARTMENT_NOT_EMPTY,
                f"it still has {_count(members, 'user')} and "
                f"{_count(children, 'sub-department')}; move or delete them first",
                parameter="departmentId",
            )
        managers = conn.execute(
            select(func.count(func.distinct(user_role_departments.c.user_id))).where(
                user_role_departments.c.department_id == dept.id
            )
        ).scalar_one()
        if managers:
            raise invalid(
                "departmentId",
                f"{_count(managers, 'user')} manage this department through their roles; "
                "change those roles first",
            )
        referring = smart_groups.rules_referring_to(
            conn, actor.account, smart_groups.AttributeType.DEPARTMENT, dept.id
        )
        if referring:
            raise invalid("departmentId", f"the rules of smart group {referring[0].name!r} name it")
        conn.execute(delete(departments).where(departments.c.id == dept.id))
        _record_department_change(conn, actor, dept, None)


def subordination_values(
    conn: Connection, account_id: str, raw: Any, parameter: str
) -> tuple[str | None, str | None]:
    """(type, supervisor id) to store for the OpenAPI's Subordination; "inherit" is NULL.
    "manual" needs `supervisorId`, a user of the account."""
    if not isinstance(raw, Mapping):
        raise invalid(parameter, "must hold subordinationType")
    kind = raw.get("subordinationType")
    if kind is None or (isinstance(kind, str) and not kind.strip()):
        raise invalid(f"{parameter}.subordinationType", "is required")
    if not isinstance(kind, str) or kind.strip() not in SUBORDINATION_TYPES:
        raise invalid(
            f"{parameter}.subordinationType",
            f"must be manual, inherit or no_supervisor, {kind!r} given",
        )
    kind = kind.strip()
    supervisor = raw.get("supervisorId")
    if kind != "manual":
        if supervisor not in (None, ""):
            raise invalid(f"{parameter}.supervisorId", "is given only with manual subordination")
        return (None if kind == "inherit" else kind), None
    if not supervisor:
        raise invalid(f"{parameter}.supervisorId", "is required for manual subordination")
    canonical = as_uuid_text(supervisor) if isinstance(supervisor, str) else None
    found = (
        conn.execute(
            select(users.c.id).where(users.c.account_id == account_id, users.c.id == canonical)
        ).first()
        if canonical
        else None
    )
    if found is None:
        raise invalid(f"{parameter}.supervisorId", f"no user {supervisor!r} in this account")
    return kind, canonical


def set_subordination(
    db: Database,
    actor: Actor,
    department_id: str,
    subordination: Any = None,
    co_subordination: Any = None,
) -> None:
    if subordination is None and co_subordination is None:
        raise invalid("subordination", "give subordination or coSubordination")
    scope = _manage_scope(actor)
    with db.write() as conn:
        dept = _find(conn, actor.account_id, department_id, "departmentId")
        _require_covers(scope, dept, "departmentId")
        values = _subordination_update(conn, actor.account_id, subordination, co_subordination)
        conn.execute(update(departments).where(departments.c.id == dept.id).values(values))
        _record_department_change(conn, actor, dept, dept.id)


def _subordination_update(
    conn: Connection, account_id: str, subordination: Any, co_subordination: Any
) -> dict[str, Any]:
    """The department columns for the supervisors given (None: left as they are)."""
    values: dict[str, Any] = {}
    if subordination is not None:
        kind, supervisor = subordination_values(conn, account_id, subordination, "subordination")
        values.update(subordination_type=kind, supervisor_id=supervisor)
    if co_subordination is not None:
        kind, supervisor = subordination_values(
            conn, account_id, co_subordination, "coSubordination"
        )
        values.update(co_subordination_type=kind, co_supervisor_id=supervisor)
    return values


# ---- moving users ---------------------------------------------------------------------------


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def move_users(db: Database, actor: Actor, department_id: str, user_ids: Sequence[str]) -> None:
    """Moves every user of `user_ids` into the department, all or none. The actor needs
    EDIT_USERS over each user (see users.targets.authorize_target) and over the target."""
    raw_ids = list(dict.fromkeys(u.strip() for u in user_ids if u and u.strip()))
    if not raw_ids:
        raise invalid("userIds", "is required")
    scope = edit_scope(actor)
    with _tree_write(db, actor.account_id) as conn:
        target = _find(conn, actor.account_id, department_id, "departmentId")
        _require_covers(scope, target, "departmentId")
        moving = load_targets(conn, actor, raw_ids, "userIds")
        for user in moving:
            authorize_target(actor, scope, user, "userIds")
        to_move = [u.id for u in moving if u.department_id != target.id]
        before = users_before(conn, actor.account, to_move)
        for chunk in _chunks(to_move):
            conn.execute(
                update(users)
                .where(users.c.account_id == actor.account_id, users.c.id.in_(chunk))
                .values(department_id=target.id)
            )
        smart_groups.refresh_memberships(conn, actor.account, to_move)
        record_user_changes(conn, actor.account, actor.user_id, before)


# ---- counts for the console's tree ----------------------------------------------------------


@dataclass(frozen=True)
class DepartmentCount:
    """Users in the department itself (`own`) and in its whole branch, itself included."""

    own: int
    branch: int


def user_counts(db: Database, actor: Actor) -> dict[str, DepartmentCount]:
    """The users of every department the actor may see, and of each one's branch: one grouped
    count of users by department (on users.department_id's index), summed up the tree here.
    A branch counts only what the actor may see, which is the whole branch of any department
    it sees (scopes are subtrees)."""
    visible = list_departments(db, actor)
    ids = [d.id for d in visible]
    own: dict[str, int] = dict.fromkeys(ids, 0)
    with db.read() as conn:
        for chunk in _chunks(ids):
            rows = conn.execute(
                select(users.c.department_id, func.count())
                .where(users.c.department_id.in_(chunk))
                .group_by(users.c.department_id)
            )
            own.update((department_id, int(n)) for department_id, n in rows)
    branch = dict(own)
    by_id = {d.id: d for d in visible}
    # Deepest first: each department adds its branch to its parent's.
    for dept in sorted(visible, key=lambda d: d.path.count("/"), reverse=True):
        if dept.parent_id in by_id:
            branch[dept.parent_id] += branch[dept.id]
    return {i: DepartmentCount(own[i], branch[i]) for i in ids}
