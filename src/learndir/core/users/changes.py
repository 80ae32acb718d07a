"""Changing existing users: profile, department, roles, groups, status, password, deletion,
subordination and work leave, with addUser's rules applied to every changed value.

Every function checks who may act first (EDIT_USERS over the user's current department; a
department-limited actor never touches a user whose roles reach further than its own), then
every parameter, and writes only once everything holds, in one transaction: a rejected call
changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Connection, bindparam, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from learndir.core import departments as departments_repo
from learndir.core.account_settings import account_settings
from learndir.core.actor import Actor
from learndir.core.changes import password_changed, record, record_user_changes, users_before
from learndir.core.common import as_uuid_text, fold, utcnow, whole_number
from learndir.core.departments import Department
from learndir.core.errors import DomainError, ErrorCode, denied, invalid
from learndir.core.passwords import hash_password
from learndir.core.profile_fields import ProfileField
from learndir.core.roles import Role
from learndir.core.smart_groups import refresh_memberships
from learndir.core.users.commands import (
    ApiGeneration,
    ChangeSubordination,
    RoleItem,
    Subordination,
    UpdateUser,
    WorkLeaveItem,
)
from learndir.core.users.service import (
    authorize_roles,
    check_password_policy,
    check_profile_values,
    check_unique_values,
    duplicate_from_integrity_error,
    merge_profile_values,
    required_field_missing,
    resolve_groups,
    resolve_roles,
)
from learndir.core.users.targets import (
    Target,
    authorize_target,
    edit_scope,
    load_targets,
)
from learndir.db.engine import Database
from learndir.db.schema import (
    account_seats,
    departments,
    group_members,
    user_field_values,
    user_role_departments,
    user_roles,
    users,
)

ACTIVE = 1
INACTIVE = 3
TERMINATED = 5
STATUSES = (ACTIVE, INACTIVE, TERMINATED)
WORK_LEAVE_REASONS = (
    "OutOfTheOffice",
    "OnVacation",
    "PersonalLeave",
    "BusinessTrip",
    "SickLeave",
    "ParentalLeave",
    "EducationalLeave",
)
SUBORDINATION_TYPES = ("manual", "inherit", "no_supervisor")
_BUILTIN_COLUMNS = ("login", "email", "first_name", "last_name", "job_title", "phone")


# ---- who is changed, and may the actor touch them -------------------------------------------


def _editable(
    conn: Connection, actor: Actor, raw_ids: Sequence[str], parameter: str
) -> list[Target]:
    scope = edit_scope(actor)
    targets = load_targets(conn, actor, raw_ids, parameter)
    for target in targets:
        authorize_target(actor, scope, target, parameter)
    return targets


def editable_user(conn: Connection, actor: Actor, user_id: str) -> Target:
    return _editable(conn, actor, [user_id], "userId")[0]


def _id_list(value: Sequence[str] | None, parameter: str) -> list[str]:
    if value is None:
        raise invalid(parameter, "is required")
    ids = [v for v in value if not isinstance(v, str) or v.strip()]
    if not ids:
        raise invalid(parameter, "needs at least one id")
    return ids


# ---- profile update ---------------------------------------------------------------------


def _role_given(cmd: UpdateUser) -> bool:
    return bool(
        (cmd.role and cmd.role.strip()) or (cmd.role_id and cmd.role_id.strip()) or cmd.roles
    )


def _role_request(cmd: UpdateUser, target: Target) -> tuple[UpdateUser, str] | None:
    """The role change asked for, as addUser's role parameters, and the parameter to blame;
    manageableDepartmentIds alone re-targets the user's current department-scoped role(s)."""
    if _role_given(cmd):
        return cmd, "roles" if cmd.roles else "role"
    if cmd.manageable_department_ids is None:
        return None
    scoped = [r for r in target.roles if r.is_department_scoped]
    if not scoped:
        names = ", ".join(r.name for r in target.roles) or "no role"
        raise invalid(
            "manageableDepartmentIds",
            "only department administrator, publisher and custom roles manage departments, "
            f"and the user holds {names}",
        )
    items = [
        RoleItem(
            role_id=r.id,
            manageable_department_ids=(
                cmd.manageable_department_ids if r.is_department_scoped else None
            ),
        )
        for r in target.roles
    ]
    return UpdateUser(roles=items), "manageableDepartmentIds"


def update_user(
    db: Database,
    actor: Actor,
    user_id: str,
    cmd: UpdateUser,
    generation: ApiGeneration = ApiGeneration.TOKEN,
) -> None:
    """Changes what `cmd` gives of the user's profile, department, roles and groups."""
    with db.write() as conn:
        update_user_in(conn, actor, user_id, cmd, generation)


def update_user_in(
    conn: Connection,
    actor: Actor,
    user_id: str,
    cmd: UpdateUser,
    generation: ApiGeneration = ApiGeneration.TOKEN,
) -> None:
    scope = edit_scope(actor)
    target = load_targets(conn, actor, [user_id], "userId")[0]
    authorize_target(actor, scope, target, "userId")
    account_id = actor.account_id
    settings = account_settings(conn, actor.account)

    # Profile values: each given one checked as addUser checks it; required ones stay filled.
    values = merge_profile_values(cmd.fields, cmd.login, cmd.email)
    checked = check_profile_values(settings.fields, values)
    builtin: dict[str, str | None] = {}
    custom: list[tuple[ProfileField, str]] = []
    for _key, (profile_field, value) in checked.items():
        if not value and profile_field.is_required and profile_field.type != "country":
            raise required_field_missing(profile_field)
        if profile_field.is_builtin:
            builtin[profile_field.name.casefold()] = value or None
        else:
            custom.append((profile_field, value))

    # Department and managed departments.
    role_request = _role_request(cmd, target)
    wanted_departments: list[str] = []
    if cmd.department_id is not None:
        if not cmd.department_id.strip():
            raise invalid("departmentId", "a user always belongs to a department")
        wanted_departments.append(cmd.department_id)
    if role_request is not None:
        request = role_request[0]
        wanted_departments.extend(request.manageable_department_ids or [])
        for item in request.roles or []:
            wanted_departments.extend(item.manageable_department_ids or [])
    known = departments_repo.get_many(
        conn, account_id, [as_uuid_text(d) or "" for d in wanted_departments]
    )
    department: Department | None = None
    if cmd.department_id is not None:
        department = known.get(as_uuid_text(cmd.department_id) or "")
        if department is None:
            raise invalid("departmentId", f"no department {cmd.department_id!r} in this account")

    new_roles: list[tuple[Role, list[Department]]] | None = None
    role_parameter = "role"
    if role_request is not None:
        request, role_parameter = role_request
        if target.is_owner:
            raise denied("the account owner's role cannot be changed", role_parameter)
        new_roles = resolve_roles(settings.roles, request, generation, known)

    group_ids = (
        resolve_groups(conn, actor.account, cmd.groups, "groupIds")
        if cmd.groups is not None
        else None
    )

    # Where the user goes and what they are granted must be inside the actor's reach.
    if department is not None and not scope.covers(department.path):
        raise denied("the department is outside the departments you manage", "departmentId")
    if new_roles is not None:
        authorize_roles(actor, scope, new_roles, role_parameter)

    login = builtin.get("login")
    email = builtin.get("email")
    check_unique_values(conn, account_id, login, email, custom, user_id=target.id)
    before = users_before(conn, actor.account, [target.id])
    try:
        _write_update(conn, target.id, department, builtin, custom, new_roles, group_ids)
    except IntegrityError as exc:
        raise duplicate_from_integrity_error(exc, login, email, custom) from None
    if department is not None or checked or group_ids is not None:
        refresh_memberships(conn, actor.account, [target.id])
    record_user_changes(conn, actor.account, actor.user_id, before)


def _write_update(
    conn: Connection,
    user_id: str,
    department: Department | None,
    builtin: dict[str, str | None],
    custom: list[tuple[ProfileField, str]],
    new_roles: list[tuple[Role, list[Department]]] | None,
    group_ids: list[str] | None,
) -> None:
    row: dict[str, Any] = {}
    if department is not None:
        row["department_id"] = department.id
    for column in _BUILTIN_COLUMNS:
        if column in builtin:
            row[column] = builtin[column]
    if "login" in row:
        row["login_key"] = fold(row["login"])
    if "email" in builtin:
        row["email_key"] = fold(row["email"]) if row["email"] else None
    if row:
        conn.execute(update(users).where(users.c.id == user_id).values(**row))
    if custom:
        conn.execute(
            delete(user_field_values).where(
                user_field_values.c.user_id == user_id,
                user_field_values.c.field_id.in_([f.id for f, _ in custom]),
            )
        )
        filled = [
            {
                "user_id": user_id,
                "field_id": f.id,
                "value": value,
                "unique_key": fold(value) if f.is_unique else None,
            }
            for f, value in custom
            if value
        ]
        if filled:
            conn.execute(insert(user_field_values), filled)
    if new_roles is not None:
        conn.execute(
            delete(user_role_departments).where(user_role_departments.c.user_id == user_id)
        )
        conn.execute(delete(user_roles).where(user_roles.c.user_id == user_id))
        conn.execute(
            insert(user_roles), [{"user_id": user_id, "role_id": r.id} for r, _ in new_roles]
        )
        managed = [
            {"user_id": user_id, "role_id": r.id, "department_id": d.id}
            for r, depts in new_roles
            for d in depts
        ]
        if managed:
            conn.execute(insert(user_role_departments), managed)
    if group_ids is not None:
        conn.execute(delete(group_members).where(group_members.c.user_id == user_id))
        if group_ids:
            conn.execute(
                insert(group_members), [{"group_id": g, "user_id": user_id} for g in group_ids]
            )


# ---- delete -----------------------------------------------------------------------------


def delete_user(db: Database, actor: Actor, user_id: str) -> None:
    """Deletes the user for good, freeing their login and e-mail."""
    with db.write() as conn:
        target = editable_user(conn, actor, user_id)
        if target.is_owner:
            raise denied("the account owner cannot be deleted", "userId")
        if target.id == actor.user_id:
            raise denied("you cannot delete yourself", "userId")
        before = users_before(conn, actor.account, [target.id])
        for table in (users, departments):
            conn.execute(
                update(table)
                .where(table.c.account_id == actor.account_id, table.c.supervisor_id == target.id)
                .values(subordination_type=None, supervisor_id=None)
            )
            conn.execute(
                update(table)
                .where(
                    table.c.account_id == actor.account_id, table.c.co_supervisor_id == target.id
                )
                .values(co_subordination_type=None, co_supervisor_id=None)
            )
        gone = conn.execute(
            delete(users)
            .where(users.c.id == target.id, users.c.account_id == actor.account_id)
            .returning(users.c.status)
        ).first()
        if gone is not None and gone.status == ACTIVE:
            release_seats(conn, actor.account_id, 1)
        record_user_changes(conn, actor.account, actor.user_id, before)


# ---- status -----------------------------------------------------------------------------

_TAKE_SEATS = (
    update(account_seats)
    .where(
        account_seats.c.account_id == bindparam("seats_of"),
        or_(
            account_seats.c.seat_limit.is_(None),
            account_seats.c.active_users + bindparam("n") <= account_seats.c.seat_limit,
        ),
    )
    .values(active_users=account_seats.c.active_users + bindparam("n"))
)
_RELEASE_SEATS = (
    update(account_seats)
    .where(
        account_seats.c.account_id == bindparam("seats_of"),
        account_seats.c.seat_limit.is_not(None),
    )
    .values(active_users=account_seats.c.active_users - bindparam("n"))
)


def release_seats(conn: Connection, account_id: str, n: int) -> None:
    """The counter is kept only while the account has a seat limit (see account_seats)."""
    if n:
        conn.execute(_RELEASE_SEATS, {"seats_of": account_id, "n": n})


def parse_status(value: object, generation: ApiGeneration = ApiGeneration.TOKEN) -> int:
    """1, 3 or 5 (the older SOAP generation knows only 1 and 3), as a number or its text."""
    allowed: tuple[int, ...] = (
        (ACTIVE, INACTIVE) if generation is ApiGeneration.CREDENTIALS else STATUSES
    )
    if value is None or (isinstance(value, str) and not value.strip()):
        raise invalid("status", "is required")
    number = whole_number(value) if isinstance(value, int | str) else None
    if number is not None and number in allowed:
        return number
    given = value if isinstance(value, str | int) and not isinstance(value, bool) else repr(value)
    if generation is ApiGeneration.CREDENTIALS:
        message = f"User status must be 1 or 3, {given} given"
        reason = "must be 1 (active) or 3 (inactive)"
    else:
        message = f"User status must be 1, 3 or 5, {given} given"
        reason = "must be 1 (active), 3 (inactive) or 5 (terminated)"
    raise DomainError(ErrorCode.INVALID_PARAMETERS, reason, parameter="status", message=message)


def change_status(
    db: Database,
    actor: Actor,
    user_ids: Sequence[str] | None,
    status: object,
    generation: ApiGeneration = ApiGeneration.TOKEN,
    *,
    parameter: str = "userIds",
) -> None:
    """Sets the status of every named user, or of none: POST /user/{id}/status (parameter
    "userId"), /users/activate, /users/deactivate, /users/terminate and SOAP ChangeUserStatus.

    Activating takes seats (one conditional counter update for all); deactivating or
    terminating frees them and refuses the owner and the actor themselves. Reaching status 3
    or 5 carries out (clears) a pending scheduled deactivation; reaching 5 also clears a
    pending termination. Activating clears nothing."""
    new = parse_status(status, generation)
    ids = _id_list(user_ids, parameter)
    with db.write() as conn:
        change_status_in(conn, actor, ids, new, parameter)


def change_status_in(
    conn: Connection, actor: Actor, user_ids: Sequence[str], new: int, parameter: str
) -> None:
    targets = _editable(conn, actor, user_ids, parameter)
    if new != ACTIVE:
        for target in targets:
            if target.is_owner:
                raise denied("the account owner cannot be deactivated or terminated", parameter)
            if target.id == actor.user_id:
                raise denied("you cannot deactivate or terminate yourself", parameter)
    ids = [t.id for t in targets]
    before = users_before(conn, actor.account, ids)
    _set_status(conn, actor, ids, new, parameter)
    record_user_changes(conn, actor.account, actor.user_id, before)


def _set_status(
    conn: Connection, actor: Actor, ids: Sequence[str], new: int, parameter: str
) -> None:
    account_id = actor.account_id
    if new == ACTIVE:
        # Conditional on the current status: a concurrent activation of the same user counts
        # once (the second UPDATE finds nothing left to change).
        taken = conn.execute(
            update(users)
            .where(users.c.id.in_(ids), users.c.account_id == account_id, users.c.status != ACTIVE)
            .values(status=ACTIVE)
        ).rowcount
        if taken and actor.account.seat_limit is not None:
            result = conn.execute(_TAKE_SEATS, {"seats_of": account_id, "n": taken})
            if result.rowcount != 1:
                raise DomainError(
                    ErrorCode.SEAT_LIMIT_EXCEEDED,
                    f"activating {taken} user(s) would exceed the subscription's user accounts",
                    parameter=parameter,
                )
        return
    schedule_columns: dict[str, Any] = {"deactivate_on": None}
    if new == TERMINATED:
        schedule_columns["terminate_on"] = None
    # Lock the rows first (in id order, so concurrent batches cannot deadlock): the seats freed
    # are counted from statuses no concurrent activation can change before this commits.
    locked = conn.execute(
        select(users.c.status)
        .where(users.c.id.in_(ids), users.c.account_id == account_id)
        .order_by(users.c.id)
        .with_for_update()
    ).all()
    freed = sum(1 for row in locked if row.status == ACTIVE)
    conn.execute(
        update(users)
        .where(users.c.id.in_(ids), users.c.account_id == account_id)
        .values(status=new, **schedule_columns)
    )
    release_seats(conn, account_id, freed)


# ---- password ---------------------------------------------------------------------------


def change_password(
    db: Database, actor: Actor, user_id: str, password: SecretStr | str | None
) -> None:
    """Sets a new password under the account's policy. A user may change their own; otherwise
    EDIT_USERS over the user's department. Hashed outside the write transaction."""
    secret = password.get_secret_value() if isinstance(password, SecretStr) else password
    if secret is None or secret == "":
        raise invalid("password", "is required")
    if not isinstance(secret, str):
        raise invalid("password", "must be a text value")
    with db.read() as conn:
        _password_target(conn, actor, user_id)
    check_password_policy(secret, actor.account.password_min_length)
    # Argon2id takes tens of milliseconds: never while holding the write transaction.
    password_hash = hash_password(secret)
    with db.write() as conn:
        set_password_hash_in(conn, actor, user_id, password_hash)


def set_password_hash_in(
    conn: Connection, actor: Actor, user_id: str, password_hash: str | None
) -> None:
    """Stores a password hashed under the account's policy (None: the user has no password
    and signs in only after setting one through an invitation)."""
    target = _password_target(conn, actor, user_id)
    conn.execute(update(users).where(users.c.id == target.id).values(password_hash=password_hash))
    record(conn, actor.account, [password_changed(target.id, actor.user_id)])


def _password_target(conn: Connection, actor: Actor, user_id: str) -> Target:
    if as_uuid_text(user_id) == actor.user_id:
        return load_targets(conn, actor, [user_id], "userId")[0]
    return editable_user(conn, actor, user_id)


# ---- groups -----------------------------------------------------------------------------


def remove_from_groups(
    db: Database, actor: Actor, user_id: str, group_ids: Sequence[str] | None
) -> None:
    """Takes the user out of the given ordinary groups (not being a member is no error)."""
    ids = _id_list(group_ids, "groupIds")
    with db.write() as conn:
        target = editable_user(conn, actor, user_id)
        groups = resolve_groups(conn, actor.account, ids, "groupIds")
        before = users_before(conn, actor.account, [target.id])
        conn.execute(
            delete(group_members).where(
                group_members.c.user_id == target.id, group_members.c.group_id.in_(groups)
            )
        )
        refresh_memberships(conn, actor.account, [target.id])
        record_user_changes(conn, actor.account, actor.user_id, before)


# ---- subordination ----------------------------------------------------------------------


def check_subordination(
    conn: Connection, actor: Actor, value: Subordination, parameter: str, own_id: str | None
) -> tuple[str | None, str | None]:
    """(stored type, supervisor id): NULL type is "inherit"; "manual" needs a supervisor who
    is a user of the account other than `own_id`."""
    kind = value.subordination_type.strip().lower()
    if kind not in SUBORDINATION_TYPES:
        raise invalid(
            f"{parameter}.subordinationType",
            f"must be one of {', '.join(SUBORDINATION_TYPES)}, not {value.subordination_type!r}",
        )
    supervisor = (value.supervisor_id or "").strip()
    if kind != "manual":
        if supervisor:
            raise invalid(
                f"{parameter}.supervisorId", "only a manual subordination names a supervisor"
            )
        return (None if kind == "inherit" else kind), None
    if not supervisor:
        raise invalid(f"{parameter}.supervisorId", "is required for a manual subordination")
    canonical = as_uuid_text(supervisor)
    found = (
        conn.execute(
            select(users.c.id).where(
                users.c.id == canonical, users.c.account_id == actor.account_id
            )
        ).first()
        if canonical
        else None
    )
    if found is None:
        raise invalid(f"{parameter}.supervisorId", f"no user {supervisor!r} in this account")
    if canonical == own_id:
        raise invalid(f"{parameter}.supervisorId", "a user cannot supervise themselves")
    return kind, canonical


def change_subordination(
    db: Database, actor: Actor, user_id: str, cmd: ChangeSubordination
) -> None:
    """Sets who supervises the user (and co-supervises), each given part only."""
    with db.write() as conn:
        change_subordination_in(conn, actor, user_id, cmd)


def change_subordination_in(
    conn: Connection, actor: Actor, user_id: str, cmd: ChangeSubordination
) -> None:
    if cmd.subordination is None and cmd.co_subordination is None:
        raise invalid("subordination", "give subordination, coSubordination or both")
    target = editable_user(conn, actor, user_id)
    row: dict[str, Any] = {}
    if cmd.subordination is not None:
        kind, supervisor = check_subordination(
            conn, actor, cmd.subordination, "subordination", target.id
        )
        row.update(subordination_type=kind, supervisor_id=supervisor)
    if cmd.co_subordination is not None:
        kind, supervisor = check_subordination(
            conn, actor, cmd.co_subordination, "coSubordination", target.id
        )
        row.update(co_subordination_type=kind, co_supervisor_id=supervisor)
    before = users_before(conn, actor.account, [target.id])
    conn.execute(update(users).where(users.c.id == target.id).values(**row))
    record_user_changes(conn, actor.account, actor.user_id, before)


# ---- work leave -------------------------------------------------------------------------


def parse_date(value: str | None, parameter: str) -> date | None:
    if value is None or not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise invalid(parameter, f"{value!r} is not a date in the form YYYY-MM-DD") from None


def set_work_leaves(db: Database, actor: Actor, items: Sequence[WorkLeaveItem]) -> None:
    """Sets each listed user's work leave; all of them or none. A missing start is today."""
    if not items:
        raise invalid("workLeaveStatuses", "needs at least one entry")
    planned: list[tuple[str, dict[str, Any]]] = []
    seen: dict[str, int] = {}
    today = utcnow().date()
    for i, item in enumerate(items):
        where = f"workLeaveStatuses[{i}]"
        if item.work_leave_reason not in WORK_LEAVE_REASONS:
            raise invalid(
                f"{where}.workLeaveReason",
                f"must be one of {', '.join(WORK_LEAVE_REASONS)}, not {item.work_leave_reason!r}",
            )
        start = parse_date(item.start_date, f"{where}.startDate") or today
        end = parse_date(item.end_date, f"{where}.endDate")
        if end is not None and end < start:
            raise invalid(f"{where}.endDate", "is before startDate")
        canonical = as_uuid_text(item.user_id) or item.user_id
        if canonical in seen:
            raise invalid(
                f"{where}.userId", f"the user is listed twice (also at [{seen[canonical]}])"
            )
        seen[canonical] = i
        planned.append(
            (
                item.user_id,
                {
                    "work_leave_reason": item.work_leave_reason,
                    "work_leave_start": start,
                    "work_leave_end": end,
                },
            )
        )
    with db.write() as conn:
        scope = edit_scope(actor)
        ids: list[str] = []
        for i, (raw, _values) in enumerate(planned):
            parameter = f"workLeaveStatuses[{i}].userId"
            target = load_targets(conn, actor, [raw], parameter)[0]
            authorize_target(actor, scope, target, parameter)
            ids.append(target.id)
        before = users_before(conn, actor.account, ids)
        for raw, values in planned:
            conn.execute(
                update(users)
                .where(users.c.id == as_uuid_text(raw), users.c.account_id == actor.account_id)
                .values(**values)
            )
        record_user_changes(conn, actor.account, actor.user_id, before)


def clear_work_leaves(db: Database, actor: Actor, user_ids: Sequence[str] | None) -> None:
    """Ends the work leave of every listed user; all of them or none."""
    ids = _id_list(user_ids, "userIds")
    with db.write() as conn:
        targets = _editable(conn, actor, ids, "userIds")
        before = users_before(conn, actor.account, [t.id for t in targets])
        conn.execute(
            update(users)
            .where(users.c.id.in_([t.id for t in targets]))
            .values(work_leave_reason=None, work_leave_start=None, work_leave_end=None)
        )
        record_user_changes(conn, actor.account, actor.user_id, before)
