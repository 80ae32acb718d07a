"""The console's people list: a keyset page of the users the actor may see, narrowed by a text
(a prefix of login, e-mail, first or last name; two words match first and last name), a
department (with or without its sub-departments), a status, a group and a role.

Fast at hundreds of thousands of users on tables whose statistics were never gathered:

- A text is looked up as index ranges only (migration 0013: the account's logins, e-mails and
  lower-cased names, in byte order on PostgreSQL so that a prefix is one range whatever the
  collation), each range read up to `MATCH_CAP` ids. The ids found are then read back by
  primary key with what the other filters need, and filtered, ordered and paged here. When a
  range holds more than the cap, the page says so (`narrowed`): the person types more.
- Without a text the users are walked in id order (a keyset page), from the index that fits
  the filters: a group's members or an administrative role's holders from their own tables, a
  status from (account_id, status, id), a department from (department_id, id), else
  (account_id, id).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    bindparam,
    exists,
    select,
    union_all,
)

from learndir.core.account_settings import account_settings
from learndir.core.actor import Actor, Scope
from learndir.core.common import as_uuid_text, fold
from learndir.core.departments import Department, get_many, within_scope
from learndir.core.errors import DomainError, invalid
from learndir.core.groups import Group, find_group
from learndir.core.roles import Role, RoleKind
from learndir.core.users.changes import STATUSES
from learndir.core.users.keys import rows_by_keys
from learndir.core.users.queries import _USER_COLUMNS, UserView, _view_scope, _views
from learndir.db.engine import Database
from learndir.db.schema import PEOPLE_KEYS, departments, group_members, user_roles, users

# Ids read from each index range of a text search.
MATCH_CAP = 500
MAX_PAGE = 200
MAX_TEXT = 200
# Departments whose users a page merges (each read in id order); more, and the account is walked.
MAX_MERGED_DEPARTMENTS = 50
# Above every character: a prefix's range ends below prefix + this, in byte (code point) order.
_TOP = "\U0010ffff"


@dataclass(frozen=True)
class PeopleCriteria:
    """What the list asks for; each given criterion narrows it."""

    text: str = ""
    department_id: str | None = None
    with_subdepartments: bool = True
    status: int | None = None
    group_id: str | None = None
    role_id: str | None = None


@dataclass(frozen=True)
class PeoplePage:
    users: list[UserView]
    # The last id of this page when there is a next one (the next page's `after`).
    next_after: str | None
    # A text matched more people than a search reads: type more to see them all.
    narrowed: bool = False


@dataclass(frozen=True)
class _Resolved:
    department: Department | None
    group: Group | None
    role: Role | None


def search_users(
    db: Database,
    actor: Actor,
    criteria: PeopleCriteria,
    after: str | None = None,
    limit: int = 50,
) -> PeoplePage:
    """One page of the users the actor may see matching `criteria`, in id order after `after`.
    Unknown or malformed ids, statuses and texts are Wrong parameters naming the criterion
    (department, group, role, status, q, after)."""
    scope = _view_scope(actor)
    if limit < 1 or limit > MAX_PAGE:
        raise invalid("limit", f"must be between 1 and {MAX_PAGE}")
    start = ""
    if after:
        start = as_uuid_text(after) or ""
        if not start:
            raise invalid("after", f"{after!r} is not a user id")
    if criteria.status is not None and criteria.status not in STATUSES:
        raise invalid("status", "must be active, inactive or terminated")
    text = " ".join(criteria.text.split())
    if len(text) > MAX_TEXT:
        raise invalid("q", f"must be at most {MAX_TEXT} characters long")
    with db.read() as conn:
        settings = account_settings(conn, actor.account)
        resolved = _resolve(conn, actor, scope, criteria, settings.roles)
        with _in_index_order(conn):
            if text:
                rows, narrowed = _text_rows(
                    conn, actor, scope, criteria, resolved, text, start, limit
                )
            else:
                rows = _browse_rows(conn, actor, scope, criteria, resolved, start, limit)
                narrowed = False
        page = rows[:limit]
        views = _views(conn, settings, page)
    next_after = page[-1][0] if len(rows) > limit else None
    return PeoplePage(views, next_after, narrowed)


@contextlib.contextmanager
def _in_index_order(conn: Connection) -> Iterator[None]:
    """On PostgreSQL, the index read in its order, a LIMIT's worth of entries: without
    statistics the planner takes an account (or a prefix's range) for a handful of rows, and
    reads all of them into a bitmap and sorts them (measured at 200,000 users: 470 ms for the
    first page, against 1 ms in index order; see also core.scim.users). Reads run in
    autocommit, so the settings are the session's, reset before the connection is used
    again."""
    if conn.dialect.name != "postgresql":
        yield
        return
    conn.exec_driver_sql("SET enable_sort = off")
    conn.exec_driver_sql("SET enable_bitmapscan = off")
    try:
        yield
    finally:
        conn.exec_driver_sql("RESET enable_bitmapscan")
        conn.exec_driver_sql("RESET enable_sort")


def _resolve(
    conn: Connection,
    actor: Actor,
    scope: Scope,
    criteria: PeopleCriteria,
    roles: Sequence[Role],
) -> _Resolved:
    department = None
    if criteria.department_id:
        canonical = as_uuid_text(criteria.department_id) or ""
        department = get_many(conn, actor.account_id, [canonical]).get(canonical)
        if department is None or not scope.covers(department.path):
            raise invalid("department", "no such department among those you may see")
    group = None
    if criteria.group_id:
        if not as_uuid_text(criteria.group_id):
            raise invalid("group", "no such group in this account")
        try:
            group = find_group(conn, actor.account_id, criteria.group_id)
        except DomainError:
            raise invalid("group", "no such group in this account") from None
    role = None
    if criteria.role_id:
        canonical = as_uuid_text(criteria.role_id) or ""
        role = next((r for r in roles if r.id == canonical), None)
        if role is None:
            raise invalid("role", "no such role in this account")
    return _Resolved(department, group, role)


# ---- a text: index ranges, then the ids read back by primary key --------------------------


def _ge(conn: Connection, expr: ColumnElement[Any], value: Any) -> ColumnElement[bool]:
    if conn.dialect.name == "postgresql":
        # text_pattern_ops: byte order, whatever the collation.
        found: ColumnElement[bool] = expr.op("~>=~", is_comparison=True)(value)
    else:
        found = expr >= value
    return found


def _lt(conn: Connection, expr: ColumnElement[Any], value: Any) -> ColumnElement[bool]:
    if conn.dialect.name == "postgresql":
        found: ColumnElement[bool] = expr.op("~<~", is_comparison=True)(value)
    else:
        found = expr < value
    return found


def _prefix(conn: Connection, expr: ColumnElement[Any], prefix: str) -> ColumnElement[bool]:
    return and_(_ge(conn, expr, prefix), _lt(conn, expr, prefix + _TOP))


# A range read, and what its rows must also hold: (first name, last name) -> kept.
_Check = Callable[[str, str], bool] | None


def _ranges(
    conn: Connection, account_id: str, text: str
) -> list[tuple[ColumnElement[bool], _Check]]:
    """The index ranges a text is looked up in (schema.PEOPLE_KEYS: each key behind the
    account's id, so the range is the account's alone): one each for login, e-mail, first and
    last name. Two words (or more) are also a first name and a last name, either way round:
    each word's own name range is read (at most MATCH_CAP ids, like every range) and the other
    word checked on the rows read, so no read scans a long range for a rare second word
    ("anna x" reads the few last names "x..." as well as up to MATCH_CAP Annas)."""
    key = fold(text)
    lowered = text.lower()
    mine = account_id + ":"

    def prefix(name: str, value: str) -> ColumnElement[bool]:
        return _prefix(conn, PEOPLE_KEYS[name], mine + value)

    found: list[tuple[ColumnElement[bool], _Check]] = [
        (prefix("login", key), None),
        (prefix("email", key), None),
        (prefix("first_name", lowered), None),
        (prefix("last_name", lowered), None),
    ]
    words = lowered.split(" ")
    if len(words) > 1:
        head, rest = words[0], " ".join(words[1:])

        def named(first: str, last: str) -> _Check:
            return lambda f, la: f.lower().startswith(first) and la.lower().startswith(last)

        found += [
            (prefix("first_name", head), named(head, rest)),
            (prefix("last_name", rest), named(head, rest)),
            (prefix("last_name", head), named(rest, head)),
            (prefix("first_name", rest), named(rest, head)),
        ]
    return found


_IN_GROUP = (
    exists()
    .where(
        group_members.c.group_id == bindparam("group_id"),
        group_members.c.user_id == users.c.id,
    )
    .label("in_group")
)
_HAS_ROLE = (
    exists()
    .where(user_roles.c.user_id == users.c.id, user_roles.c.role_id == bindparam("role_id"))
    .label("has_role")
)
_CANDIDATES = select(
    *_USER_COLUMNS, users.c.account_id, departments.c.path, _IN_GROUP, _HAS_ROLE
).join(departments, departments.c.id == users.c.department_id)


def _text_rows(
    conn: Connection,
    actor: Actor,
    scope: Scope,
    criteria: PeopleCriteria,
    resolved: _Resolved,
    text: str,
    start: str,
    limit: int,
) -> tuple[list[Any], bool]:
    ids: dict[str, None] = {}
    narrowed = False
    for condition, check in _ranges(conn, actor.account_id, text):
        batch = conn.execute(
            select(users.c.id, users.c.first_name, users.c.last_name)
            .where(condition)
            .limit(MATCH_CAP)
        ).all()
        narrowed = narrowed or len(batch) >= MATCH_CAP
        ids.update(
            dict.fromkeys(
                r.id
                for r in batch
                if r.id > start and (check is None or check(r.first_name or "", r.last_name or ""))
            )
        )
    if not ids:
        return [], narrowed
    rows = rows_by_keys(
        conn,
        _CANDIDATES,
        users.c.id,
        ids,
        group_id=resolved.group.id if resolved.group else "",
        role_id=resolved.role.id if resolved.role else "",
    )
    department = resolved.department
    kept = []
    for row in rows:
        # Read by id alone (the primary key, whatever the statistics say): the account is
        # checked here.
        if row.account_id != actor.account_id or not scope.covers(row.path):
            continue
        if department is not None:
            if criteria.with_subdepartments:
                if not row.path.startswith(department.path):
                    continue
            elif row.department_id != department.id:
                continue
        if criteria.status is not None and row.status != criteria.status:
            continue
        if resolved.group is not None and not row.in_group:
            continue
        if resolved.role is not None and not row.has_role:
            continue
        kept.append(row)
    kept.sort(key=lambda r: r.id)
    return kept[: limit + 1], narrowed


# ---- no text: a keyset walk in id order ---------------------------------------------------


def _in_paths(account_id: str, paths: Sequence[str]) -> ColumnElement[bool]:
    return users.c.department_id.in_(
        select(departments.c.id).where(
            departments.c.account_id == account_id,
            within_scope(Scope(account_wide=False, paths=tuple(paths))),
        )
    )


def _browse_rows(
    conn: Connection,
    actor: Actor,
    scope: Scope,
    criteria: PeopleCriteria,
    resolved: _Resolved,
    start: str,
    limit: int,
) -> list[Any]:
    account_id = actor.account_id
    conditions: list[ColumnElement[bool]] = []
    # One condition leads the walk, and the account is named only when none does: every index
    # of users but the primary key leads with the account (or an expression of it), and a
    # planner without statistics cannot tell which of them fits best.
    led = False
    order: ColumnElement[Any] = users.c.id
    statement: Select[Any] = select(*_USER_COLUMNS)
    if resolved.group is not None:
        # The group's members in id order, from its primary key (group_id, user_id).
        statement = statement.select_from(
            group_members.join(users, users.c.id == group_members.c.user_id)
        )
        conditions.append(group_members.c.group_id == resolved.group.id)
        order, led = group_members.c.user_id, True
    role = resolved.role
    if role is not None:
        if role.kind is RoleKind.LEARNER or led:
            conditions.append(
                exists().where(user_roles.c.user_id == users.c.id, user_roles.c.role_id == role.id)
            )
        else:
            # An administrative role's few holders, from its own index.
            statement = statement.select_from(
                user_roles.join(users, users.c.id == user_roles.c.user_id)
            )
            conditions.append(user_roles.c.role_id == role.id)
            order, led = user_roles.c.user_id, True
    if criteria.status is not None:
        if led:
            conditions.append(users.c.status == criteria.status)
        else:
            # The account's users of that status in id order (ix_users_status_key_id).
            conditions.append(PEOPLE_KEYS["status"] == f"{account_id}:{criteria.status}")
            led = True
    department = resolved.department
    if department is not None and not criteria.with_subdepartments:
        conditions.append(users.c.department_id == department.id)
        led = True
    narrowed_by_tree = not scope.account_wide or (
        department is not None and department.parent_id is not None
    )
    if not led and narrowed_by_tree:
        # A subtree (the actor's departments, or the one asked for): each of its departments'
        # users in id order from (department_id, id), merged here, while there are few.
        within = _departments_within(conn, account_id, scope, department)
        if len(within) <= MAX_MERGED_DEPARTMENTS:
            return _merged(conn, within, conditions, start, limit)
    if department is not None and department.parent_id is not None:
        conditions.append(_in_paths(account_id, [department.path]))
    if not scope.account_wide:
        conditions.append(_in_paths(account_id, scope.paths))
    if not led:
        conditions.append(users.c.account_id == account_id)
    if start:
        conditions.append(order > start)
    return list(conn.execute(statement.where(*conditions).order_by(order).limit(limit + 1)).all())


def _departments_within(
    conn: Connection, account_id: str, scope: Scope, department: Department | None
) -> list[str]:
    """The ids of the account's departments the actor sees, inside `department` if given."""
    rows = conn.execute(
        select(departments.c.id, departments.c.path).where(departments.c.account_id == account_id)
    )
    return [
        row.id
        for row in rows
        if scope.covers(row.path) and (department is None or row.path.startswith(department.path))
    ]


def _merged(
    conn: Connection,
    department_ids: Sequence[str],
    conditions: Sequence[ColumnElement[bool]],
    start: str,
    limit: int,
) -> list[Any]:
    """The first `limit` + 1 users (id order, after `start`) of the departments, each
    department's read from (department_id, id) with its own LIMIT, in one statement."""
    if not department_ids:
        return []
    parts = [
        select(*_USER_COLUMNS)
        .where(users.c.department_id == department_id, users.c.id > start, *conditions)
        .order_by(users.c.id)
        .limit(limit + 1)
        .subquery()
        for department_id in department_ids
    ]
    statement = union_all(*(select(*part.c) for part in parts))
    rows = sorted(conn.execute(statement).all(), key=lambda row: row[0])
    return rows[: limit + 1]
