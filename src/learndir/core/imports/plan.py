"""One batch of an import: every row read, matched to its user, checked by addUser's and the
profile update's rules, and turned into what to write.

A batch is planned against the database as its transaction sees it and the rows before it in
the file (the job's results), and written in that same transaction with one statement per
table: that is how 50,000 rows take seconds, not minutes. The rules are the core's own
(`checked_profile`, `check_value`, `resolve_roles`, `authorize_roles`, `authorize_target`, the
password policy, the seat counter, `record`); what is done in bulk is only the reading and the
writing around them. A row that breaks a rule gets its reason and changes nothing; the other
rows go on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, delete, insert, select, update

from learndir.core.actor import Actor
from learndir.core.changes import (
    Change,
    EventType,
    TargetKind,
    password_changed,
    record,
    record_user_changes,
    user_snapshot,
)
from learndir.core.common import fold, new_id
from learndir.core.departments import Department, insert_department, snapshot
from learndir.core.errors import DomainError, ErrorCode, denied, invalid
from learndir.core.imports.cells import active_cell, status_cell
from learndir.core.imports.columns import ColumnKind, ColumnMap
from learndir.core.imports.directory import PATH_SEPARATOR, Directory, GroupRef
from learndir.core.passwords import hash_password, verify_password
from learndir.core.profile_fields import ProfileField, check_value, is_email
from learndir.core.roles import Permission, Role, RoleKind
from learndir.core.smart_groups import refresh_memberships
from learndir.core.users.changes import ACTIVE, release_seats
from learndir.core.users.commands import ApiGeneration, RoleItem
from learndir.core.users.keys import rows_by_keys
from learndir.core.users.queries import UserView, views_of
from learndir.core.users.service import (
    Invitation,
    PlanRows,
    UserPlan,
    authorize_roles,
    check_password_policy,
    checked_profile,
    plan_rows,
    registered,
    required_field_missing,
    resolve_roles,
    write_plan_rows,
)
from learndir.core.users.targets import Target, authorize_target, load_targets
from learndir.db.bulk import insert_many
from learndir.db.schema import (
    account_seats,
    group_members,
    import_results,
    user_field_values,
    user_role_departments,
    user_roles,
    users,
)


class Mode(StrEnum):
    CREATE = "create"  # new users only; an existing one is an error (unless identical)
    UPDATE = "update"  # existing users only
    UPSERT = "upsert"  # create or update
    SYNC = "sync"  # upsert, and deactivate the users of the scope the file leaves out


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    MOVE = "move"
    DEACTIVATE = "deactivate"
    UNCHANGED = "unchanged"
    ERROR = "error"


@dataclass(frozen=True)
class ImportOptions:
    mode: Mode = Mode.UPSERT
    # login, email, or the name of a unique profile field.
    match_by: str = "login"
    # New users without a password get the account's invitation e-mail.
    invite: bool = False
    dry_run: bool = False


@dataclass
class RowResult:
    row_number: int | None
    action: Action
    login: str | None = None
    user_id: str | None = None
    match_key: str | None = None
    email_key: str | None = None
    manager: str | None = None
    changes: list[dict[str, Any]] | None = None
    error: str | None = None
    cells: tuple[str, ...] | None = None

    def as_row(self, job_id: str) -> dict[str, Any]:
        return {
            "job_id": job_id,
            "row_number": self.row_number,
            "action": self.action.value,
            "user_id": self.user_id,
            "login": self.login[:255] if self.login else None,
            "match_key": self.match_key[:512] if self.match_key else None,
            "email_key": self.email_key[:320] if self.email_key else None,
            "manager": self.manager[:255] if self.manager is not None else None,
            "changes": orjson.dumps(self.changes).decode() if self.changes else None,
            "error": self.error,
            "cells": orjson.dumps(list(self.cells)).decode() if self.cells else None,
        }


class RowError(Exception):
    """A row is rejected: `reason` is what the error report says."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def describe(exc: DomainError, headers: dict[str, str]) -> str:
    """A domain error as a row's reason, blaming the column rather than the API parameter."""
    column = headers.get(exc.parameter or "", exc.parameter)
    reason = exc.reason or exc.message
    if exc.code in (ErrorCode.LOGIN_TAKEN, ErrorCode.EMAIL_TAKEN, ErrorCode.FIELD_VALUE_TAKEN):
        reason = f"{reason} by another user"
    if exc.code is ErrorCode.PERMISSION_DENIED:
        reason = f"permission denied: {reason}"
    return f"{column}: {reason}" if column else reason


# ---- reading a row ------------------------------------------------------------------------


@dataclass
class Wanted:
    """What a row asks for, each part None when its column is absent (or, where an empty cell
    means "leave as it is", empty)."""

    number: int
    cells: tuple[str, ...]
    # Profile field name -> the cell as written (empty clears the value).
    values: dict[str, str]
    department: Department | None = None
    # A department code no department has (sync creates it), with the path given beside it.
    new_department_code: str | None = None
    new_department_path: str | None = None
    status: int | None = None
    password: str | None = None
    roles: list[Role] | None = None
    managed: list[Department] | None = None
    groups: list[GroupRef] | None = None
    add_groups: list[GroupRef] = field(default_factory=list)
    manager: str | None = None

    login: str = ""
    email: str = ""

    def __post_init__(self) -> None:
        self.login = self.values.get("login", "").strip()
        self.email = self.values.get("email", "").strip()
        self.login_key = fold(self.login)
        self.email_key = fold(self.email)


@dataclass(frozen=True)
class ReadRow:
    number: int
    cells: tuple[str, ...]
    login: str
    wanted: Wanted | None
    error: str | None = None


class RowReader:
    """Turns a file row into `Wanted`, resolving departments, groups and roles by name."""

    def __init__(self, columns: ColumnMap, directory: Directory, options: ImportOptions) -> None:
        self.columns = columns
        self.directory = directory
        self.options = options
        self.fields = {c.index: c.field for c in columns.columns if c.field is not None}
        # API parameter names -> the header of the column that holds them.
        self.headers: dict[str, str] = {}
        for c in columns.columns:
            if c.field is not None:
                self.headers[c.field] = c.header
                self.headers[f"fields.{c.field}"] = c.header
        self.by_kind = {kind: columns.of(kind) for kind in ColumnKind}
        self.names_roles = bool(
            self.by_kind[ColumnKind.ROLE] or self.by_kind[ColumnKind.MANAGED_DEPARTMENTS]
        )
        self.login_index = next(c.index for c in columns.columns if c.field == "login")

    def prepare(self, number: int, cells: tuple[str, ...]) -> ReadRow:
        """The row read, or why it cannot be: what needs no database (the import reads the
        next batch's rows this way while the current one is written)."""
        login = _cell(cells, self.login_index).strip()
        try:
            return ReadRow(number, cells, login, self.read(number, cells))
        except RowError as exc:
            return ReadRow(number, cells, login, None, exc.reason)
        except DomainError as exc:
            return ReadRow(number, cells, login, None, describe(exc, self.headers))

    def read(self, number: int, cells: tuple[str, ...]) -> Wanted:
        values = {name: cells[i] if i < len(cells) else "" for i, name in self.fields.items()}
        wanted = Wanted(number=number, cells=cells, values=values)
        if not wanted.login:
            header = self.headers.get("login", "Login")
            raise RowError(f"{header}: is required")
        self._department(wanted, cells)
        for column in self.by_kind[ColumnKind.STATUS]:
            wanted.status = status_cell(_cell(cells, column.index), column.header) or wanted.status
        for column in self.by_kind[ColumnKind.ACTIVE]:
            wanted.status = active_cell(_cell(cells, column.index), column.header) or wanted.status
        for column in self.by_kind[ColumnKind.PASSWORD]:
            wanted.password = _cell(cells, column.index) or None
        for column in self.by_kind[ColumnKind.ROLE]:
            text = _cell(cells, column.index).strip()
            if text:
                wanted.roles = self.directory.roles_in(text, column.header)
        for column in self.by_kind[ColumnKind.MANAGED_DEPARTMENTS]:
            text = _cell(cells, column.index).strip()
            if text:
                wanted.managed = [
                    self.directory.department_anyhow(item, column.header) for item in _items(text)
                ]
        group_columns = self.by_kind[ColumnKind.GROUP]
        if group_columns:
            wanted.groups = []
            for column in group_columns:
                for ref in self.directory.groups_in(_cell(cells, column.index), column.header):
                    if ref not in wanted.groups:
                        wanted.groups.append(ref)
        for column in self.by_kind[ColumnKind.ADD_TO_GROUP]:
            for ref in self.directory.groups_in(_cell(cells, column.index), column.header):
                if ref not in wanted.add_groups:
                    wanted.add_groups.append(ref)
        for column in self.by_kind[ColumnKind.MANAGER_LOGIN]:
            wanted.manager = _cell(cells, column.index).strip()
        return wanted

    def _department(self, wanted: Wanted, cells: tuple[str, ...]) -> None:
        """Department ID, code or path: the first given decides, and any other given must
        name the same department."""
        named: list[tuple[str, Department]] = []
        path_text = ""
        for column in self.by_kind[ColumnKind.DEPARTMENT_ID]:
            text = _cell(cells, column.index).strip()
            if text:
                named.append((column.header, self.directory.department_by_id(text, column.header)))
        for column in self.by_kind[ColumnKind.DEPARTMENT_PATH]:
            path_text = _cell(cells, column.index).strip()
            if path_text and not self._new_code(cells):
                named.append(
                    (column.header, self.directory.department_by_path(path_text, column.header))
                )
        for column in self.by_kind[ColumnKind.DEPARTMENT_CODE]:
            text = _cell(cells, column.index).strip()
            if not text:
                continue
            dept = self.directory.department_by_code(text, column.header)
            if dept is None:
                if self.options.mode is not Mode.SYNC:
                    raise invalid(
                        column.header,
                        f"no department with the code {text!r} (a sync creates missing ones)",
                    )
                wanted.new_department_code = text
                wanted.new_department_path = path_text or None
                continue
            named.append((column.header, dept))
        if not named:
            return
        first_header, first = named[0]
        for header, dept in named[1:]:
            if dept.id != first.id:
                raise invalid(
                    header,
                    f"names another department than {first_header} "
                    f"({self.directory.department_path(dept)!r}, not "
                    f"{self.directory.department_path(first)!r})",
                )
        wanted.department = first

    def _new_code(self, cells: tuple[str, ...]) -> bool:
        """A sync row whose department code is not known yet: its path says where to create
        it, it does not name an existing department."""
        if self.options.mode is not Mode.SYNC:
            return False
        for column in self.by_kind[ColumnKind.DEPARTMENT_CODE]:
            text = _cell(cells, column.index).strip()
            if text and self.directory.department_by_code(text, column.header) is None:
                return True
        return False


def _cell(cells: tuple[str, ...], index: int) -> str:
    return cells[index] if index < len(cells) else ""


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.replace("\n", ";").split(";") if item.strip()]


# ---- planning a batch -----------------------------------------------------------------------


@dataclass
class Batch:
    """What a planned batch writes."""

    creates: list[PlanRows] = field(default_factory=list)
    created: list[tuple[UserPlan, str]] = field(default_factory=list)
    # user id -> the users row's columns to set.
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)
    # user id -> (ids of the fields it gives, the values to store).
    values: dict[str, tuple[list[str], list[dict[str, Any]]]] = field(default_factory=dict)
    roles: dict[str, list[tuple[Role, list[Department]]]] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    group_additions: list[dict[str, str]] = field(default_factory=list)
    passwords: dict[str, bool] = field(default_factory=dict)
    # The users as they were, for the change records.
    before: dict[str, dict[str, Any]] = field(default_factory=dict)
    seats_taken: int = 0
    seats_released: int = 0
    departments_created: int = 0
    # The e-mail addresses the batch's accepted rows give (see JobState.email_rows).
    email_rows: dict[int, int] = field(default_factory=dict)


@dataclass
class JobState:
    """What a job carries from one batch to the next."""

    job_id: str
    actor: Actor
    options: ImportOptions
    directory: Directory
    reader: RowReader
    # A dry run writes nothing: the seats its creates would take are counted here.
    dry_seats: int = 0
    # The e-mail addresses of the rows accepted so far, by their hash, with the row: a second
    # row with one is refused (a dry run writes no user whose unique index would refuse it).
    # Kept in memory, not indexed in the database: an index on random keys makes every batch
    # write pages all over it; rebuilt from the job's results when a job resumes.
    email_rows: dict[int, int] = field(default_factory=dict)
    # Role cells resolved by addUser's rules, by (role ids, managed department ids).
    roles_memo: dict[
        tuple[tuple[str, ...], tuple[str, ...]], list[tuple[Role, list[Department]]]
    ] = field(default_factory=dict)


_SELECT_LOGIN_HOLDERS = select(users.c.login_key, users.c.id, users.c.account_id)
_SELECT_EMAIL_HOLDERS = select(users.c.email_key, users.c.id, users.c.account_id)
_SELECT_VALUE_HOLDERS = select(user_field_values.c.unique_key, user_field_values.c.user_id).where(
    user_field_values.c.field_id == bindparam("field_id")
)
_SELECT_EARLIER = select(import_results.c.match_key, import_results.c.row_number).where(
    import_results.c.job_id == bindparam("job_id")
)
_SELECT_PASSWORDS = select(users.c.id, users.c.password_hash).where(
    users.c.id.in_(bindparam("ids", expanding=True))
)


def _holders(
    conn: Connection, statement: Any, key: Any, account_id: str, keys: Iterable[str]
) -> dict[str, str]:
    return {
        found: user_id
        for found, user_id, account in rows_by_keys(conn, statement, key, keys)
        if account == account_id
    }


def _earlier(conn: Connection, job_id: str, keys: Iterable[str]) -> dict[str, int]:
    """The rows of earlier batches that gave these match keys."""
    rows = rows_by_keys(conn, _SELECT_EARLIER, import_results.c.match_key, keys, job_id=job_id)
    return {key: number for key, number in rows if number is not None}


class BatchPlanner:
    """Plans one batch in the caller's transaction (see the module's docstring)."""

    def __init__(self, conn: Connection, state: JobState) -> None:
        self.conn = conn
        self.state = state
        self.actor = state.actor
        self.options = state.options
        self.directory = state.directory
        self.settings = state.directory.settings
        self.batch = Batch()
        self.add_scope = self.actor.scope(Permission.ADD_USERS)
        self.edit_scope = self.actor.scope(Permission.EDIT_USERS)
        # Values claimed by earlier rows of this batch: key -> row number.
        self.claimed: dict[tuple[str, str], int] = {}
        self.match_field = match_field(self.settings.fields, self.options.match_by)
        self.fields_by_name = {f.name: f for f in self.settings.fields}
        # Users read without their roles and groups (see _load).
        self._light: set[str] = set()
        self.roles_by_kind = {r.kind: r for r in self.settings.roles}
        self.unique_custom = [f for f in self.settings.fields if f.is_unique and not f.is_builtin]

    # -- the whole batch --

    def plan(self, rows: Sequence[ReadRow]) -> list[RowResult]:
        results: list[RowResult] = []
        read: list[tuple[Wanted, RowResult]] = []
        for row in rows:
            result = RowResult(row.number, Action.ERROR, login=row.login or None, cells=row.cells)
            results.append(result)
            if row.wanted is None:
                result.error = row.error
                continue
            try:
                result.match_key = self._match_key(row.wanted)
                result.email_key = row.wanted.email_key or None
                result.manager = row.wanted.manager
                read.append((row.wanted, result))
            except RowError as exc:
                result.error = exc.reason
            except DomainError as exc:
                result.error = describe(exc, self.state.reader.headers)
        self._load(read)
        for wanted, result in read:
            self._plan_row(wanted, result)
        for result in results:
            if result.action is not Action.ERROR:
                result.cells = None
        return results

    def _match_key(self, wanted: Wanted) -> str | None:
        if self.match_field is None:
            return wanted.login_key
        text = wanted.values.get(self.match_field.name, "").strip()
        if not text:
            header = self.state.reader.headers.get(self.match_field.name, self.match_field.name)
            raise RowError(f"{header}: is required: users are matched on it")
        if self.match_field.name == "email":
            return fold(check_value(self.match_field, text, self.match_field.name))
        return fold(text)

    def _load(self, read: list[tuple[Wanted, RowResult]]) -> None:
        """Everything the rows' decisions need, in a few statements for the whole batch: the
        users the rows name, then who holds the logins, e-mails and unique values that are
        new to their row's user (for a file applied again, none are)."""
        conn, account_id = self.conn, self.actor.account_id
        match_keys = [r.match_key for _, r in read if r.match_key]
        if self.match_field is None:
            self.matched = _holders(
                conn, _SELECT_LOGIN_HOLDERS, users.c.login_key, account_id, match_keys
            )
        elif self.match_field.name == "email":
            self.matched = _holders(
                conn, _SELECT_EMAIL_HOLDERS, users.c.email_key, account_id, match_keys
            )
        else:
            self.matched = self._value_holders(self.match_field, match_keys)
        self.earlier = _earlier(conn, self.state.job_id, match_keys)
        ids = list(dict.fromkeys(self.matched.get(r.match_key or "", "") for _, r in read))
        ids = [i for i in ids if i]
        account = self.actor.account
        if self.state.reader.names_roles:
            self.views: dict[str, UserView] = {v.id: v for v in views_of(conn, account, ids)}
        else:
            # The file says nothing of roles: users are compared without them, and only those
            # whose rows change are read whole (for the permission checks and the change
            # records). A file applied again reads a quarter less.
            self.views = {v.id: v for v in views_of(conn, account, ids, with_roles=False)}
            changing = [
                self.matched[r.match_key or ""]
                for w, r in read
                if self.matched.get(r.match_key or "") in self.views
                and not self._as_it_is(w, self.views[self.matched[r.match_key or ""]])
            ]
            self.views.update((v.id, v) for v in views_of(conn, account, changing))
            for light in [i for i in self.views if i not in set(changing)]:
                self._light.add(light)
        self.targets = self._targets([v for v in self.views.values() if v.id not in self._light])

        def new_values(name: str) -> list[str]:
            """The folded values of `name` that are not already their row's user's."""
            keys = []
            for w, r in read:
                value = w.values.get(name, "").strip()
                if not value:
                    continue
                view = self.views.get(self.matched.get(r.match_key or "", ""))
                if view is None or fold(view.fields.get(name, "")) != fold(value):
                    keys.append(fold(value))
            return keys

        self.login_holders = (
            self.matched
            if self.match_field is None
            else _holders(
                conn, _SELECT_LOGIN_HOLDERS, users.c.login_key, account_id, new_values("login")
            )
        )
        self.email_holders = _holders(
            conn, _SELECT_EMAIL_HOLDERS, users.c.email_key, account_id, new_values("email")
        )
        self.value_holders = {
            f.id: self._value_holders(f, new_values(f.name)) for f in self.unique_custom
        }
        with_password = [
            self.matched[r.match_key or ""]
            for w, r in read
            if w.password and r.match_key in self.matched
        ]
        self.password_hashes: dict[str, str | None] = (
            dict(conn.execute(_SELECT_PASSWORDS, {"ids": with_password}).all())
            if with_password
            else {}
        )
        self.seats_left = self._seats_left()

    def _as_it_is(self, wanted: Wanted, view: UserView) -> bool:
        """Whether a row of a file without role columns leaves its user as they are, judged as
        _update judges it (a row that may change anything is not)."""
        if wanted.password or wanted.new_department_code is not None:
            return False
        if self._groups(wanted, view) is not None:
            return False
        if wanted.department is not None and wanted.department.id != view.department_id:
            return False
        if wanted.status is not None and wanted.status != view.status:
            return False
        for name, raw in wanted.values.items():
            old = view.fields.get(name, "")
            if raw.strip() == old:
                continue
            try:
                if check_value(self.fields_by_name[name], raw, name) != old:
                    return False
            except DomainError:
                return False
        return True

    def _value_holders(self, f: ProfileField, keys: Iterable[str]) -> dict[str, str]:
        """Who holds these (folded) values of a unique profile field."""
        rows = rows_by_keys(
            self.conn, _SELECT_VALUE_HOLDERS, user_field_values.c.unique_key, keys, field_id=f.id
        )
        return {key: user_id for key, user_id in rows}

    def _targets(self, views: list[UserView]) -> dict[str, Target]:
        """The matched users as the permission checks see them, made from their views and the
        departments the job knows; read from the database only for a department created
        since the job began."""
        by_id = self.directory.by_id
        targets: dict[str, Target] = {}
        unknown: list[str] = []
        for view in views:
            managed = [d for _, ids in view.roles for d in ids]
            if view.department_id not in by_id or any(d not in by_id for d in managed):
                unknown.append(view.id)
                continue
            targets[view.id] = Target(
                id=view.id,
                department_id=view.department_id,
                path=by_id[view.department_id].path,
                status=view.status,
                roles=tuple(role for role, _ in view.roles),
                managed_paths=tuple(by_id[d].path for d in managed),
            )
        if unknown:
            targets.update((t.id, t) for t in load_targets(self.conn, self.actor, unknown, "Login"))
        return targets

    def _seats_left(self) -> int | None:
        row = self.conn.execute(
            select(account_seats.c.seat_limit, account_seats.c.active_users).where(
                account_seats.c.account_id == self.actor.account_id
            )
        ).first()
        if row is None or row.seat_limit is None:
            return None
        return int(row.seat_limit) - int(row.active_users) - self.state.dry_seats

    # -- one row --

    def _plan_row(self, wanted: Wanted, result: RowResult) -> None:
        headers = self.state.reader.headers
        try:
            key = result.match_key or ""
            self._row_claims: list[tuple[str, str]] = []
            self._not_twice(wanted, result)
            user_id = self.matched.get(key)
            if user_id is not None and user_id not in self.views:
                user_id = None  # deleted meanwhile
            if user_id is None:
                if self.options.mode is Mode.UPDATE:
                    raise RowError(
                        f"{self._match_header()}: no user {self._match_text(wanted)!r} "
                        "in this account (update mode changes existing users only)"
                    )
                self._create(wanted, result)
            else:
                result.user_id = user_id
                self._update(wanted, result, self.views[user_id])
        except RowError as exc:
            result.action, result.error = Action.ERROR, exc.reason
        except DomainError as exc:
            result.action, result.error = Action.ERROR, describe(exc, headers)
        if result.action is Action.ERROR:
            return
        for claim in self._row_claims:
            self.claimed.setdefault(claim, wanted.number)
        if wanted.email:
            self.batch.email_rows.setdefault(hash(wanted.email_key), wanted.number)

    def _match_header(self) -> str:
        name = self.match_field.name if self.match_field is not None else "login"
        return self.state.reader.headers.get(name, name)

    def _match_text(self, wanted: Wanted) -> str:
        name = self.match_field.name if self.match_field is not None else "login"
        return wanted.values.get(name, "").strip()

    def _claims(self, wanted: Wanted) -> list[tuple[str, str]]:
        claims = [("login", wanted.login_key)]
        if wanted.email:
            claims.append(("email", wanted.email_key))
        for f in self.unique_custom:
            value = wanted.values.get(f.name, "").strip()
            if value:
                claims.append((f.id, fold(value)))
        return claims

    def _not_twice(self, wanted: Wanted, result: RowResult) -> None:
        """A user, e-mail or unique value given by an earlier row of the file."""
        headers = self.state.reader.headers
        earlier = self.earlier.get(result.match_key or "")
        if earlier is not None:
            raise RowError(
                f"{self._match_header()}: {self._match_text(wanted)!r} is also in row {earlier}"
            )
        email = wanted.email_key
        earlier_email = self.state.email_rows.get(hash(email)) if email else None
        if earlier_email is not None:
            raise RowError(
                f"{headers.get('email', 'Email')}: {wanted.email!r} is also in row {earlier_email}"
            )
        self._row_claims = self._claims(wanted)
        for kind, key in self._row_claims:
            number = self.claimed.get((kind, key))
            if number is not None:
                name = kind if kind in ("login", "email") else self._field_name(kind)
                header = headers.get(name, name)
                value = wanted.values.get(name, "").strip()
                raise RowError(f"{header}: {value!r} is also in row {number}")

    def _field_name(self, field_id: str) -> str:
        return next(f.name for f in self.settings.fields if f.id == field_id)

    def _taken(self, wanted: Wanted, user_id: str | None) -> None:
        """A login, e-mail or unique value another user of the account holds."""
        headers = self.state.reader.headers
        holder = self.login_holders.get(wanted.login_key)
        if holder is not None and holder != user_id:
            raise RowError(f"{headers.get('login', 'Login')}: {wanted.login!r} is taken")
        email = wanted.email
        holder = self.email_holders.get(wanted.email_key) if email else None
        if holder is not None and holder != user_id:
            raise RowError(f"{headers.get('email', 'Email')}: {email!r} is taken")
        for f in self.unique_custom:
            value = wanted.values.get(f.name, "").strip()
            if not value:
                continue
            holder = self.value_holders.get(f.id, {}).get(fold(value))
            if holder is not None and holder != user_id:
                raise RowError(f"{headers.get(f.name, f.name)}: {value!r} is taken")

    def _department_of(self, wanted: Wanted) -> Department | None:
        """The row's department; a sync creates one named by a code nobody has."""
        if wanted.new_department_code is None:
            return wanted.department
        code = wanted.new_department_code
        known = self.directory.department_by_code(code, "Department code")
        if known is not None:
            return known
        scope = self.actor.scope(Permission.MANAGE_DEPARTMENTS)
        parent, name = self.directory.root, code
        if wanted.new_department_path:
            names = [
                n.strip() for n in wanted.new_department_path.split(PATH_SEPARATOR) if n.strip()
            ]
            if len(names) > 1:
                parent = self.directory.department_by_path(
                    PATH_SEPARATOR.join(names[:-1]), "Department path"
                )
            if names:
                name = names[-1]
        if not scope.covers(parent.path):
            raise denied(
                f"department code {code!r} is new, and creating it under "
                f"{self.directory.department_path(parent)!r} is outside the departments you manage",
                "Department code",
            )
        if self.options.dry_run:
            dept_id = new_id()
            dept = Department(dept_id, name, code, parent.id, f"{parent.path}{dept_id}/")
        else:
            dept_id = insert_department(self.conn, self.actor.account_id, parent, name, code)
            dept = Department(
                dept_id, name.strip(), code.strip(), parent.id, f"{parent.path}{dept_id}/"
            )
            record(
                self.conn,
                self.actor.account,
                [
                    Change(
                        EventType.DEPARTMENT_CREATED,
                        TargetKind.DEPARTMENT,
                        dept_id,
                        self.actor.user_id,
                        after=snapshot(dept),
                    )
                ],
            )
        self.directory.add_department(dept)
        self.batch.departments_created += 1
        return dept

    def _roles(
        self, wanted: Wanted, roles: list[Role], managed: list[Department] | None
    ) -> list[tuple[Role, list[Department]]]:
        """The Role and Managed departments cells through addUser's role rules."""
        memo_key = (tuple(r.id for r in roles), tuple(d.id for d in managed or []))
        memo = self.state.roles_memo.get(memo_key)
        if memo is not None:
            return memo
        known = {d.id: d for d in managed or []}
        ids = list(known) or None
        items = [
            RoleItem(
                role_id=r.id,
                manageable_department_ids=ids if r.is_department_scoped else None,
            )
            for r in roles
        ]
        request = _RoleRequest(roles=items)
        try:
            resolved = resolve_roles(self.settings.roles, request, ApiGeneration.TOKEN, known)
        except DomainError as exc:
            raise RowError(f"Role: {exc.reason}") from None
        self.state.roles_memo[memo_key] = resolved
        return resolved

    def _seat(self, result: RowResult) -> None:
        if self.seats_left is None:
            return
        if self.seats_left <= 0:
            raise DomainError(
                ErrorCode.SEAT_LIMIT_EXCEEDED, "every user account of the subscription is in use"
            )
        self.seats_left -= 1
        self.batch.seats_taken += 1

    def _create(self, wanted: Wanted, result: RowResult) -> None:
        if self.add_scope.is_empty:
            raise denied("your roles do not allow adding users")
        department = self._department_of(wanted)
        if department is None:
            raise RowError(
                "Department: a new user needs a department: give Department ID, "
                "Department code or Department path"
            )
        values = {k: v for k, v in wanted.values.items()}
        profile = checked_profile(self.settings.fields, values, require=True)
        plan = UserPlan.of(profile, department)
        plan.account = self.actor.account
        roles = wanted.roles or [self._role_of_kind(RoleKind.LEARNER)]
        plan.roles = self._roles(wanted, roles, wanted.managed)
        groups = _manual(wanted.groups or []) + _manual(wanted.add_groups)
        plan.group_ids = list(dict.fromkeys(g.id for g in groups))
        if not self.add_scope.covers(department.path):
            raise denied("the department is outside the departments you manage", "Department")
        authorize_roles(self.actor, self.add_scope, plan.roles, "Role")
        password_hash = None
        if wanted.password:
            check_password_policy(wanted.password, self.actor.account.password_min_length)
        elif self.options.invite:
            recipient = plan.email or (plan.login if is_email(plan.login) else None)
            if recipient is not None:
                plan.invitations = [
                    Invitation("email", recipient, self.settings.invitation_message)
                ]
        self._taken(wanted, None)
        status = wanted.status or ACTIVE
        if status == ACTIVE:
            self._seat(result)
        if wanted.password and not self.options.dry_run:
            password_hash = hash_password(wanted.password)
        user_id = new_id()
        result.action, result.user_id = Action.CREATE, user_id
        if plan.invitations:
            result.changes = [
                {"field": "invitation", "before": None, "after": plan.invitations[0].recipient}
            ]
        if not self.options.dry_run:
            rows = plan_rows(
                self.actor.account_id, self.actor.user_id, plan, password_hash, status, user_id
            )
            self.batch.creates.append(rows)
            self.batch.created.append((plan, user_id))

    def _role_of_kind(self, kind: RoleKind) -> Role:
        return self.roles_by_kind[kind]

    def _update(self, wanted: Wanted, result: RowResult, view: UserView) -> None:
        changes: list[dict[str, Any]] = []
        columns: dict[str, Any] = {}
        values: list[dict[str, Any]] = []
        value_fields: list[str] = []
        for name, raw in wanted.values.items():
            f = self.fields_by_name[name]
            old = view.fields.get(f.name, "")
            if raw.strip() == old:
                # As stored, and what is stored was checked when it was written.
                continue
            value = check_value(f, raw, name)
            if not value and f.is_required and f.type != "country":
                raise required_field_missing(f)
            if value == old:
                continue
            changes.append({"field": f.name, "before": old or None, "after": value or None})
            if f.is_builtin:
                columns[f.name] = value or None
                if f.name in ("login", "email"):
                    columns[f"{f.name}_key"] = fold(value) if value else None
            else:
                value_fields.append(f.id)
                if value:
                    values.append(
                        {
                            "user_id": view.id,
                            "field_id": f.id,
                            "value": value,
                            "unique_key": fold(value) if f.is_unique else None,
                        }
                    )
        department = self._department_of(wanted)
        moved = department is not None and department.id != view.department_id
        if moved and department is not None:
            changes.append(
                {"field": "departmentId", "before": view.department_id, "after": department.id}
            )
            columns["department_id"] = department.id
        status_changed = wanted.status is not None and wanted.status != view.status
        if status_changed:
            changes.append({"field": "status", "before": view.status, "after": wanted.status})
            columns["status"] = wanted.status
        new_roles = None
        if wanted.roles is not None or wanted.managed is not None:
            roles = wanted.roles or [r for r, _ in view.roles]
            managed = wanted.managed
            if managed is None:
                managed = [
                    self.directory.by_id[d]
                    for _, ids in view.roles
                    for d in ids
                    if d in self.directory.by_id
                ]
            held = {(r.id, tuple(sorted(ids))) for r, ids in view.roles}
            asked = {
                (r.id, tuple(sorted(d.id for d in managed)) if r.is_department_scoped else ())
                for r in roles
            }
            # The roles the user holds, as they are (the owner's among them): nothing to check.
            new_roles = None if asked == held else self._roles(wanted, roles, managed)
            if new_roles is not None and _role_set(new_roles) != held:
                changes.append(
                    {
                        "field": "roleIds",
                        "before": sorted(r.id for r, _ in view.roles),
                        "after": sorted(r.id for r, _ in new_roles),
                    }
                )
            else:
                new_roles = None
        new_groups = self._groups(wanted, view)
        if new_groups is not None:
            changes.append(
                {"field": "groupIds", "before": sorted(view.groups), "after": new_groups[0]}
            )
        password_set = False
        if wanted.password:
            current_hash = self.password_hashes.get(view.id)
            if current_hash is None or not verify_password(current_hash, wanted.password):
                check_password_policy(wanted.password, self.actor.account.password_min_length)
                password_set = True
                changes.append({"field": "password", "before": None, "after": "(new, not shown)"})

        if not changes:
            result.action = Action.UNCHANGED
            return
        if self.options.mode is Mode.CREATE:
            raise RowError(
                f"{self._match_header()}: user {self._match_text(wanted)!r} exists "
                f"(create mode adds new users only; it differs in "
                f"{', '.join(c['field'] for c in changes)})"
            )
        if view.id in self._light:
            # _as_it_is said this row changes nothing; a view without roles must never reach
            # the permission checks.
            raise RuntimeError(f"row {wanted.number}: a change judged against a partial view")
        # Who may touch this user, where they go and what they are granted.
        target = self.targets[view.id]
        authorize_target(self.actor, self.edit_scope, target, "Login")
        if moved and department is not None and not self.edit_scope.covers(department.path):
            raise denied("the department is outside the departments you manage", "Department")
        if new_roles is not None:
            if target.is_owner:
                raise denied("the account owner's role cannot be changed", "Role")
            authorize_roles(self.actor, self.edit_scope, new_roles, "Role")
        self._taken(wanted, view.id)
        if status_changed:
            if wanted.status != ACTIVE and target.is_owner:
                raise denied("the account owner cannot be deactivated", "Status")
            if wanted.status != ACTIVE and view.id == self.actor.user_id:
                raise denied("you cannot deactivate yourself", "Status")
            if wanted.status == ACTIVE:
                self._seat(result)
            elif view.status == ACTIVE:
                self.batch.seats_released += 1
                if self.seats_left is not None:
                    self.seats_left += 1
        result.changes = changes
        only = {c["field"] for c in changes}
        if status_changed and wanted.status != ACTIVE:
            result.action = Action.DEACTIVATE
        elif only == {"departmentId"}:
            result.action = Action.MOVE
        else:
            result.action = Action.UPDATE
        if self.options.dry_run:
            return
        b = self.batch
        b.before[view.id] = user_snapshot(view)
        if columns:
            b.columns[view.id] = columns
        if value_fields:
            b.values[view.id] = (value_fields, values)
        if new_roles is not None:
            b.roles[view.id] = new_roles
        if new_groups is not None:
            replace_all, additions = new_groups[1], new_groups[2]
            if replace_all is not None:
                b.groups[view.id] = replace_all
            b.group_additions.extend({"group_id": g, "user_id": view.id} for g in additions)
        if password_set and wanted.password:
            columns["password_hash"] = hash_password(wanted.password)
            b.columns[view.id] = columns
            b.passwords[view.id] = self.password_hashes.get(view.id) is not None

    def _groups(
        self, wanted: Wanted, view: UserView
    ) -> tuple[list[str], list[str] | None, list[str]] | None:
        """(the groups after, the full list when Group columns replace them, the ones Add to
        Group adds), or None when nothing changes. Smart groups are left to their rules."""
        current = set(view.groups)
        smart = {g for g in current if self.directory.groups_by_id.get(g, _SMART).is_smart}
        manual_now = current - smart
        replace_all: list[str] | None = None
        target = set(manual_now)
        if wanted.groups is not None:
            replace_all = [g.id for g in _manual(wanted.groups)]
            target = set(replace_all)
        additions = [g.id for g in _manual(wanted.add_groups) if g.id not in target]
        target |= set(additions)
        if target == manual_now:
            return None
        if replace_all is not None:
            replace_all = sorted(target)
            additions = []
        return sorted(target | smart), replace_all, additions


_SMART = GroupRef("", "", True)


@dataclass
class _RoleRequest:
    roles: list[RoleItem] | None
    role: str | None = None
    role_id: str | None = None
    manageable_department_ids: list[str] | None = None


def _manual(refs: Iterable[GroupRef]) -> list[GroupRef]:
    return [g for g in refs if not g.is_smart]


def _role_set(
    roles: Sequence[tuple[Role, Sequence[Department]]],
) -> set[tuple[str, tuple[str, ...]]]:
    return {(r.id, tuple(sorted(d.id for d in depts))) for r, depts in roles}


def match_field(fields: Sequence[ProfileField], match_by: str) -> ProfileField | None:
    """None for matching by login; else the e-mail field or a unique profile field."""
    key = fold(match_by)
    if key in ("", "login"):
        return None
    for f in fields:
        if fold(f.name) == key or fold(f.label) == key or fold(f.key) == key:
            if f.name == "email" or (f.is_unique and not f.is_builtin):
                return f
            raise invalid(
                "match", f"{match_by!r} is not unique: match on login, email or a unique field"
            )
    raise invalid(
        "match", f"no profile field {match_by!r}: match on login, email or a unique field"
    )


# ---- writing a batch -----------------------------------------------------------------------


_UPDATE_USER = users.update().where(users.c.id == bindparam("user_id"))


def write_batch(conn: Connection, state: JobState, batch: Batch) -> None:
    """Writes a planned batch: the rows, the seat counter, smart groups and the change
    records (audit trail and webhook events), in the caller's transaction."""
    actor = state.actor
    account = actor.account
    if batch.seats_released:
        release_seats(conn, actor.account_id, batch.seats_released)
    if batch.seats_taken:
        taken = conn.execute(
            update(account_seats)
            .where(
                account_seats.c.account_id == actor.account_id,
                account_seats.c.active_users + batch.seats_taken <= account_seats.c.seat_limit,
            )
            .values(active_users=account_seats.c.active_users + batch.seats_taken)
        )
        if taken.rowcount != 1:
            raise DomainError(
                ErrorCode.SEAT_LIMIT_EXCEEDED, "every user account of the subscription is in use"
            )
    write_plan_rows(conn, batch.creates)
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for user_id, columns in batch.columns.items():
        by_columns.setdefault(tuple(sorted(columns)), []).append({"user_id": user_id, **columns})
    for names, rows in by_columns.items():
        statement = _UPDATE_USER.values({n: bindparam(n) for n in names})
        conn.execute(statement, rows)
    if batch.values:
        conn.execute(
            delete(user_field_values).where(
                user_field_values.c.user_id == bindparam("uid"),
                user_field_values.c.field_id == bindparam("fid"),
            ),
            [
                {"uid": user_id, "fid": field_id}
                for user_id, (field_ids, _) in batch.values.items()
                for field_id in field_ids
            ],
        )
        filled = [row for _, rows in batch.values.values() for row in rows]
        if filled:
            conn.execute(insert(user_field_values), filled)
    if batch.roles:
        ids = list(batch.roles)
        conn.execute(delete(user_role_departments).where(user_role_departments.c.user_id.in_(ids)))
        conn.execute(delete(user_roles).where(user_roles.c.user_id.in_(ids)))
        conn.execute(
            insert(user_roles),
            [{"user_id": u, "role_id": r.id} for u, roles in batch.roles.items() for r, _ in roles],
        )
        managed = [
            {"user_id": u, "role_id": r.id, "department_id": d.id}
            for u, roles in batch.roles.items()
            for r, depts in roles
            for d in depts
        ]
        if managed:
            conn.execute(insert(user_role_departments), managed)
    if batch.groups:
        conn.execute(delete(group_members).where(group_members.c.user_id.in_(list(batch.groups))))
        members = [{"group_id": g, "user_id": u} for u, gs in batch.groups.items() for g in gs]
        insert_many(conn, group_members, members)
    insert_many(conn, group_members, batch.group_additions)
    touched = [user_id for _, user_id in batch.created] + list(batch.before)
    refresh_memberships(conn, account, touched)
    record(
        conn,
        account,
        [registered(conn, account, actor.user_id, plan, user_id) for plan, user_id in batch.created]
        + [
            password_changed(user_id, actor.user_id, had_password=had)
            for user_id, had in batch.passwords.items()
        ],
    )
    record_user_changes(conn, account, actor.user_id, batch.before or None)


def write_results(conn: Connection, job_id: str, results: Sequence[RowResult]) -> None:
    if results:
        insert_many(conn, import_results, [r.as_row(job_id) for r in results])
