"""Reading users back, within what the actor may see: one profile, filtered lists, keyset pages,
numbered pages and id lookups.

Every read loads its users in one query and then their field values, roles (with managed
departments) and groups in one query each for the whole batch, never one per user. Who may
see whom: the actor's VIEW_USERS scope (the whole account, or the subtrees of the departments
they manage); a user may always read their own profile.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    Select,
    and_,
    bindparam,
    exists,
    false,
    func,
    or_,
    select,
)

from learndir.core.account_settings import AccountSettings, account_settings
from learndir.core.actor import AccountInfo, Actor, Scope
from learndir.core.common import as_uuid_text, fold
from learndir.core.errors import DomainError, denied, invalid, not_found
from learndir.core.paging import check_page_size, page_request, split_page
from learndir.core.profile_fields import ProfileField, check_value, resolve_field
from learndir.core.roles import Permission, Role, RoleKind
from learndir.core.users.keys import rows_by_keys, users_by_key
from learndir.db.engine import Database
from learndir.db.schema import (
    departments,
    group_members,
    user_field_values,
    user_role_departments,
    user_roles,
    users,
)

# Far beyond any account, and small enough for every database's OFFSET.
MAX_PAGE_NUMBER = 1_000_000_000
# Ids per batch query: well under every database's limit on bound parameters.
_BATCH = 1000
_BUILTIN_COLUMNS = ("login", "email", "first_name", "last_name", "job_title", "phone")
INHERIT = "inherit"


@dataclass(frozen=True)
class Subordination:
    """`inherit` (from the department), `manual` (with a supervisor) or `no_supervisor`."""

    type: str = INHERIT
    supervisor_id: str | None = None


@dataclass(frozen=True)
class WorkLeave:
    reason: str
    start: date | None
    end: date | None


# Not frozen: a page builds a thousand of these, and a frozen dataclass's __init__ costs five
# times as much. Nobody mutates them.
@dataclass(slots=True)
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
    last_login_at: datetime | None = None
    subordination: Subordination = Subordination()
    co_subordination: Subordination = Subordination()
    work_leave: WorkLeave | None = None
    deactivate_on: date | None = None
    terminate_on: date | None = None

    @property
    def primary_role(self) -> tuple[Role, list[str]]:
        """The administrative role when there is one, else Learner."""
        for role, depts in self.roles:
            if role.kind is not RoleKind.LEARNER:
                return role, depts
        return self.roles[0]


@dataclass(frozen=True)
class UserFilter:
    """What a list asks for. Each non-empty criterion narrows the list (they combine with AND);
    the values inside one criterion are alternatives (OR). Ids that are unknown or belong to
    another account match nothing; text that is not an id is Wrong parameters."""

    departments: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    logins: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    user_ids: tuple[str, ...] = ()
    # Profile field name -> accepted values, compared case-insensitively.
    profile_fields: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Field name (a birthdate field, addedDate or lastLoginDate), from, to: inclusive bounds.
    date_ranges: tuple[tuple[str, date | None, date | None], ...] = ()


@dataclass(frozen=True)
class UsersPage:
    users: list[UserView]
    next_page_token: str | None


@dataclass(frozen=True)
class NumberedPage:
    users: list[UserView]
    page_number: int
    total: int


# ---- statements built once --------------------------------------------------------------

_USER_COLUMNS = (
    users.c.id,
    users.c.department_id,
    users.c.status,
    users.c.added_at,
    users.c.added_by,
    users.c.last_login_at,
    users.c.deactivate_on,
    users.c.terminate_on,
    users.c.subordination_type,
    users.c.supervisor_id,
    users.c.co_subordination_type,
    users.c.co_supervisor_id,
    users.c.work_leave_reason,
    users.c.work_leave_start,
    users.c.work_leave_end,
    *(users.c[name] for name in _BUILTIN_COLUMNS),
)
_IDS: BindParameter[str] = bindparam("ids", expanding=True)
_SELECT_ONE = (
    select(*_USER_COLUMNS, departments.c.path)
    .join(departments, departments.c.id == users.c.department_id)
    .where(users.c.id == bindparam("user_id"), users.c.account_id == bindparam("account_id"))
)


# A batch's field values, roles with their managed departments (a role without departments: one
# NULL row) and groups, each with the column its users are found by: rows_by_keys looks every
# user up on that column's index (an IN list of a thousand ids on a table without statistics
# is answered by a scan on PostgreSQL).
_LOADERS = (
    (
        select(
            user_field_values.c.user_id, user_field_values.c.field_id, user_field_values.c.value
        ),
        user_field_values.c.user_id,
    ),
    (
        select(
            user_roles.c.user_id, user_roles.c.role_id, user_role_departments.c.department_id
        ).outerjoin(
            user_role_departments,
            and_(
                user_role_departments.c.user_id == user_roles.c.user_id,
                user_role_departments.c.role_id == user_roles.c.role_id,
            ),
        ),
        user_roles.c.user_id,
    ),
    (select(group_members.c.user_id, group_members.c.group_id), group_members.c.user_id),
)
_SELECT_USERS = select(*_USER_COLUMNS, users.c.account_id)
_SELECT_VISIBLE_IDS = (
    select(users.c.id, departments.c.path)
    .join(departments, departments.c.id == users.c.department_id)
    .where(users.c.account_id == bindparam("account_id"), users.c.id.in_(_IDS))
)


# ---- public reads -----------------------------------------------------------------------


def get_user(db: Database, actor: Actor, user_id: str) -> UserView:
    canonical = as_uuid_text(user_id) or ""
    with db.read() as conn:
        row = conn.execute(
            _SELECT_ONE, {"user_id": canonical, "account_id": actor.account_id}
        ).first()
        if row is None:
            raise not_found("user", "userId")
        # Everyone reads their own profile; whoever added a user may read them back (addUser's
        # X-Return-Object) while the user is where the actor may add users, even with a role
        # that may add users but not view them.
        added_here = row.added_by == actor.user_id and actor.scope(Permission.ADD_USERS).covers(
            row.path
        )
        if row.id != actor.user_id and not added_here:
            scope = actor.scope(Permission.VIEW_USERS)
            if scope.is_empty:
                raise denied("your roles do not allow viewing other users", "userId")
            if not scope.covers(row.path):
                raise denied("the user is outside the departments you manage", "userId")
        return _views(conn, account_settings(conn, actor.account), [row])[0]


def list_users(db: Database, actor: Actor, flt: UserFilter) -> list[UserView]:
    """Every matching user the actor may see, in id order (GET /user)."""
    scope = _view_scope(actor)
    result: list[UserView] = []
    with db.read() as conn:
        settings = account_settings(conn, actor.account)
        base = _filtered(conn, actor, scope, settings, flt)
        after = ""
        while True:
            rows = conn.execute(
                base.where(users.c.id > after).order_by(users.c.id).limit(_BATCH)
            ).all()
            result.extend(_views(conn, settings, rows))
            if len(rows) < _BATCH:
                return result
            after = rows[-1].id


def page_users(
    db: Database,
    actor: Actor,
    flt: UserFilter,
    page_size: int | None,
    page_token: str | None,
) -> UsersPage:
    """One keyset page in id order: a user that exists throughout a page-through is seen
    exactly once, whatever is inserted or deleted meanwhile."""
    page = page_request(page_size, page_token)
    scope = _view_scope(actor)
    with db.read() as conn:
        settings = account_settings(conn, actor.account)
        rows, next_token = split_page(
            page,
            conn.execute(
                _filtered(conn, actor, scope, settings, flt)
                .where(users.c.id > page.after)
                .order_by(users.c.id)
                .limit(page.limit)
            ).all(),
        )
        views = _views(conn, settings, rows)
    return UsersPage(views, next_token)


def numbered_page(
    db: Database,
    actor: Actor,
    flt: UserFilter,
    page_number: int | None,
    page_size: int | None,
) -> NumberedPage:
    """Page `page_number` (from 1) of the matching users in id order, with their total."""
    size = check_page_size(page_size)
    number = 1 if page_number is None else page_number
    if number < 1 or number > MAX_PAGE_NUMBER:
        raise invalid("pageNumber", f"must be between 1 and {MAX_PAGE_NUMBER}, {number} given")
    scope = _view_scope(actor)
    with db.read() as conn:
        settings = account_settings(conn, actor.account)
        base = _filtered(conn, actor, scope, settings, flt)
        total = int(
            conn.execute(
                select(func.count()).select_from(base.with_only_columns(users.c.id).subquery())
            ).scalar_one()
        )
        rows = conn.execute(base.order_by(users.c.id).limit(size).offset((number - 1) * size)).all()
        return NumberedPage(_views(conn, settings, rows), number, total)


def visible_user_ids(conn: Connection, actor: Actor) -> Select[Any]:
    """The ids of every user the actor may see, as a statement to aggregate over (an export
    counts their groups before its first row); Permission Denied when they may see nobody."""
    settings = account_settings(conn, actor.account)
    return _filtered(conn, actor, _view_scope(actor), settings, UserFilter()).with_only_columns(
        users.c.id
    )


def visible_users(conn: Connection, actor: Actor) -> tuple[Select[Any], AccountSettings]:
    """Every user the actor may see, as a statement of the columns `views_of_rows` reads, to
    narrow, order and limit (SCIM's lists); Permission Denied when they may see nobody."""
    settings = account_settings(conn, actor.account)
    return _filtered(conn, actor, _view_scope(actor), settings, UserFilter()), settings


def views_of_rows(
    conn: Connection, settings: AccountSettings, rows: Sequence[Any]
) -> list[UserView]:
    """The views of rows read with `visible_users`, without roles (see _views)."""
    return _views(conn, settings, rows, with_roles=False)


def pages_of_users(db: Database, actor: Actor, page_size: int = _BATCH) -> Iterator[list[UserView]]:
    """Every user the actor may see, in id order, a keyset page at a time: for exports, whose
    memory must not grow with the account. Each page is read on a connection of its own, held
    only while the page is read (a slow consumer holds none), and a user that exists throughout
    is seen exactly once. Permission Denied is raised by this call, before any page is read."""
    scope = _view_scope(actor)

    def pages() -> Iterator[list[UserView]]:
        after = ""
        while True:
            with db.read() as conn:
                settings = account_settings(conn, actor.account)
                rows = conn.execute(
                    _filtered(conn, actor, scope, settings, UserFilter())
                    .where(users.c.id > after)
                    .order_by(users.c.id)
                    .limit(page_size)
                ).all()
                views = _views(conn, settings, rows)
            if views:
                yield views
            if len(rows) < page_size:
                return
            after = rows[-1].id

    return pages()


def find_existing(db: Database, actor: Actor, user_ids: Sequence[str] | None) -> list[str]:
    """Which of `user_ids` are users the actor may see, in the order given, each once."""
    if user_ids is None:
        raise invalid("userIds", "is required")
    scope = _view_scope(actor)
    wanted = _canonical_ids(user_ids, "userIds")
    found: dict[str, str] = {}
    with db.read() as conn:
        for chunk in _chunks(wanted, _BATCH):
            for row in conn.execute(
                _SELECT_VISIBLE_IDS, {"account_id": actor.account_id, "ids": chunk}
            ):
                if scope.covers(row.path):
                    found[row.id] = row.path
    return [i for i in wanted if i in found]


# ---- filtering --------------------------------------------------------------------------


def _view_scope(actor: Actor) -> Scope:
    scope = actor.scope(Permission.VIEW_USERS)
    if scope.is_empty:
        raise denied("your roles do not allow viewing users")
    return scope


def _chunks(items: Sequence[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _canonical_ids(raw_ids: Iterable[str], parameter: str) -> list[str]:
    result: dict[str, None] = {}
    for raw in raw_ids:
        canonical = as_uuid_text(raw)
        if canonical is None:
            raise invalid(parameter, f"{raw!r} is not an id")
        result[canonical] = None
    return list(result)


def _filtered(
    conn: Connection, actor: Actor, scope: Scope, settings: AccountSettings, flt: UserFilter
) -> Select[Any]:
    """The actor's visible users of the account matching `flt`, unordered and unlimited.
    Logins and e-mails are first turned into ids on their own unique indexes (see
    users.keys), so a lookup by login reads a handful of rows, never the account's."""
    conditions: list[ColumnElement[bool]] = [users.c.account_id == actor.account_id]
    if not scope.account_wide:
        conditions.append(
            users.c.department_id.in_(
                select(departments.c.id).where(
                    departments.c.account_id == actor.account_id,
                    or_(*(departments.c.path.startswith(p) for p in scope.paths)),
                )
            )
        )
    if flt.departments:
        conditions.append(users.c.department_id.in_(_canonical_ids(flt.departments, "departments")))
    if flt.groups:
        conditions.append(
            users.c.id.in_(
                select(group_members.c.user_id).where(
                    group_members.c.group_id.in_(_canonical_ids(flt.groups, "groups"))
                )
            )
        )
    if flt.user_ids:
        conditions.append(users.c.id.in_(_canonical_ids(flt.user_ids, "userIds")))
    for column, values in (("login_key", flt.logins), ("email_key", flt.emails)):
        if values:
            found = users_by_key(conn, actor.account_id, column, (fold(v) for v in values))
            conditions.append(users.c.id.in_(found) if found else false())
    for i, (name, values) in enumerate(flt.profile_fields):
        conditions.append(_field_condition(settings, name, values, f"profileFields[{i}].name"))
    for i, (name, start, end) in enumerate(flt.date_ranges):
        conditions.append(
            _date_condition(settings, name, start, end, f"profileFieldsDateRange[{i}]")
        )
    return select(*_USER_COLUMNS).where(and_(*conditions))


def _resolve(settings: AccountSettings, name: str, parameter: str) -> ProfileField:
    found = resolve_field(settings.fields, name)
    if found is None:
        raise invalid(parameter, f"this account has no profile field {name!r}")
    return found


def _field_condition(
    settings: AccountSettings, name: str, values: tuple[str, ...], parameter: str
) -> ColumnElement[bool]:
    profile_field = _resolve(settings, name, parameter)
    wanted = {v.strip().lower() for v in values}
    if profile_field.type == "country":
        for v in values:
            try:
                wanted.add(check_value(profile_field, v, parameter).lower())
            except DomainError:  # a value that is no country matches as typed
                continue
    if not wanted:
        return false()
    if profile_field.is_builtin:
        column = users.c[profile_field.name]
        if profile_field.name == "login":
            return users.c.login_key.in_({fold(v) for v in values})
        if profile_field.name == "email":
            return users.c.email_key.in_({fold(v) for v in values})
        return func.lower(column).in_(wanted)
    return exists().where(
        user_field_values.c.user_id == users.c.id,
        user_field_values.c.field_id == profile_field.id,
        func.lower(user_field_values.c.value).in_(wanted),
    )


_BUILTIN_DATES = {"addeddate": users.c.added_at, "lastlogindate": users.c.last_login_at}


def _date_condition(
    settings: AccountSettings,
    name: str,
    start: date | None,
    end: date | None,
    parameter: str,
) -> ColumnElement[bool]:
    if start is not None and end is not None and start > end:
        raise invalid(f"{parameter}.from", "is after to")
    column = _BUILTIN_DATES.get(name.strip().replace("_", "").lower())
    if column is not None:
        bounds: list[ColumnElement[bool]] = [column.is_not(None)]
        if start is not None:
            bounds.append(column >= datetime.combine(start, time(), UTC))
        if end is not None:
            bounds.append(column < datetime.combine(end + timedelta(days=1), time(), UTC))
        return and_(*bounds)
    profile_field = _resolve(settings, name, f"{parameter}.name")
    if profile_field.type != "birthdate":
        raise invalid(
            f"{parameter}.name",
            f"{profile_field.name} is not a date field; use a birthdate field, "
            "addedDate or lastLoginDate",
        )
    # Dates are stored as YYYY-MM-DD text, which orders like the dates themselves.
    value_bounds: list[ColumnElement[bool]] = [
        user_field_values.c.user_id == users.c.id,
        user_field_values.c.field_id == profile_field.id,
    ]
    if start is not None:
        value_bounds.append(user_field_values.c.value >= start.isoformat())
    if end is not None:
        value_bounds.append(user_field_values.c.value <= end.isoformat())
    return exists().where(*value_bounds)


# ---- loading ----------------------------------------------------------------------------


def _views(
    conn: Connection,
    settings: AccountSettings,
    rows: Sequence[Any],
    *,
    with_roles: bool = True,
) -> list[UserView]:
    """UserViews for `rows` (the _USER_COLUMNS first), with one query each for the batch's
    field values, roles with managed departments, and groups. Without `with_roles` the views'
    role lists are empty: for a caller that compares profiles and groups only and reads the
    whole view of the users it then changes."""
    if not rows:
        return []
    field_names = {f.id: f.name for f in settings.fields}
    # Custom values in the account's field order, whatever order the database returns them in.
    custom_order = [f.name for f in settings.fields if not f.is_builtin]
    roles_by_id = {r.id: r for r in settings.roles}
    values: dict[str, dict[str, str]] = {}
    held: dict[str, dict[str, list[str]]] = {}
    member_of: dict[str, list[str]] = {}
    (select_values, by_user), (select_roles, by_role_user), (select_groups, by_member) = _LOADERS
    for chunk in _chunks([r[0] for r in rows], _BATCH):
        for user_id, field_id, value in rows_by_keys(conn, select_values, by_user, chunk):
            name = field_names.get(field_id)
            if name is not None:
                values.setdefault(user_id, {})[name] = value
        if with_roles:
            for user_id, role_id, department_id in rows_by_keys(
                conn, select_roles, by_role_user, chunk
            ):
                depts = held.setdefault(user_id, {}).setdefault(role_id, [])
                if department_id is not None:
                    depts.append(department_id)
        for user_id, group_id in rows_by_keys(conn, select_groups, by_member, chunk):
            member_of.setdefault(user_id, []).append(group_id)
    result = []
    for row in rows:
        (
            user_id,
            department_id,
            status,
            added_at,
            added_by,
            last_login_at,
            deactivate_on,
            terminate_on,
            sub_type,
            supervisor_id,
            co_sub_type,
            co_supervisor_id,
            leave_reason,
            leave_start,
            leave_end,
        ) = row[:15]
        fields = {
            name: value for name, value in zip(_BUILTIN_COLUMNS, row[15:21], strict=True) if value
        }
        custom = values.get(user_id)
        if custom:
            if len(custom) > 1:
                custom = {name: custom[name] for name in custom_order if name in custom}
            fields.update(custom)
        role_list = [
            (roles_by_id[role_id], sorted(depts))
            for role_id, depts in held.get(user_id, {}).items()
            if role_id in roles_by_id
        ]
        if not role_list and with_roles:
            # Every user holds a role: this one was deleted after the page was read (on
            # PostgreSQL each statement sees what is committed when it starts).
            continue
        if len(role_list) > 1:
            role_list.sort(key=lambda item: item[0].kind is not RoleKind.LEARNER)
        groups = member_of.get(user_id)
        result.append(
            UserView(
                id=user_id,
                department_id=department_id,
                status=status,
                added_at=added_at,
                added_by=added_by,
                fields=fields,
                roles=role_list,
                groups=sorted(groups) if groups else [],
                last_login_at=last_login_at,
                subordination=_subordination(sub_type, supervisor_id),
                co_subordination=_subordination(co_sub_type, co_supervisor_id),
                work_leave=(
                    WorkLeave(leave_reason, leave_start, leave_end) if leave_reason else None
                ),
                deactivate_on=deactivate_on,
                terminate_on=terminate_on,
            )
        )
    return result


_DEFAULT_SUBORDINATION = Subordination()


def _subordination(kind: str | None, supervisor_id: str | None) -> Subordination:
    if not kind or kind == INHERIT:
        return _DEFAULT_SUBORDINATION
    return Subordination(kind, supervisor_id if kind == "manual" else None)


def views_of(
    conn: Connection,
    account: AccountInfo,
    user_ids: Sequence[str],
    *,
    with_roles: bool = True,
) -> list[UserView]:
    """The users of the account among `user_ids`, as every read shows them, without any
    permission check: for the core's own records of a change (webhook events). See _views
    for `with_roles`."""
    rows: list[Any] = []
    for chunk in _chunks(list(user_ids), _BATCH):
        # By id alone (the primary key, whatever the statistics say); the account is checked
        # on the rows found.
        found = rows_by_keys(conn, _SELECT_USERS, users.c.id, chunk)
        rows.extend(row for row in found if row.account_id == account.id)
    if not rows:
        return []
    return _views(conn, account_settings(conn, account), rows, with_roles=with_roles)


def field_list(values: dict[str, str]) -> list[dict[str, str]]:
    """The profile as iSpring writes it and every published client reads it: a list of
    name/value pairs under upper-case names (LOGIN, EMAIL, FIRST_NAME, custom fields by their
    name), LOGIN and EMAIL always first (EMAIL empty when there is none), then what is set.
    The REST API and the change records (webhook events) show it alike."""
    out = [
        {"name": "LOGIN", "value": values.get("login", "")},
        {"name": "EMAIL", "value": values.get("email", "")},
    ]
    for name, value in values.items():
        if name not in _LISTED_FIRST:
            out.append({"name": name.upper(), "value": value})
    return out


_LISTED_FIRST = frozenset({"login", "email"})
