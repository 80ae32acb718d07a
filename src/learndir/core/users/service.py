"""addUser: every rule of the two seed documents, checked once for every interface.

Order of checks: can the actor add users at all; then the parameters (Wrong parameters); then
whether the actor may act on the chosen department and roles (Permission Denied); then
duplicates; then the seat limit, which is taken last with a conditional counter update so the
account row is locked only for the end of the transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import Connection, Table, bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from learndir.core import departments as departments_repo
from learndir.core import groups as groups_repo
from learndir.core.account_settings import account_settings
from learndir.core.actor import AccountInfo, Actor, Scope
from learndir.core.changes import Change, EventType, TargetKind, record, user_snapshot
from learndir.core.common import as_uuid_text, fold, new_id, utcnow
from learndir.core.departments import Department
from learndir.core.errors import MESSAGES, DomainError, ErrorCode, denied, invalid
from learndir.core.passwords import hash_password
from learndir.core.profile_fields import (
    ProfileField,
    check_value,
    is_email,
    phone_e164,
    resolve_field,
)
from learndir.core.roles import ROLE_SPELLINGS, Permission, Role, RoleKind
from learndir.core.smart_groups import account_smart_groups, refresh_memberships
from learndir.core.users.commands import AddUser, ApiGeneration, RoleItem
from learndir.core.users.keys import users_by_key
from learndir.core.users.queries import UserView
from learndir.db.bulk import insert_many
from learndir.db.engine import Database, defer_insert, defer_update, defers
from learndir.db.schema import (
    account_seats,
    group_members,
    outbox,
    user_field_values,
    user_role_departments,
    user_roles,
    users,
)

ACTIVE = 1
MAX_PASSWORD_LENGTH = 256
_BUILTIN_COLUMNS = ("first_name", "last_name", "job_title", "phone")


# Statements built once: addUser is the hot path, and reusing a statement lets SQLAlchemy skip
# rebuilding it and its cache key on every call.
_TAKE_SEAT = (
    update(account_seats)
    .where(
        account_seats.c.account_id == bindparam("seats_of"),
        or_(
            account_seats.c.seat_limit.is_(None),
            account_seats.c.active_users < account_seats.c.seat_limit,
        ),
    )
    .values(active_users=account_seats.c.active_users + 1)
)
_SELECT_FIELD_VALUE_HOLDER = select(user_field_values.c.user_id).where(
    user_field_values.c.field_id == bindparam("field_id"),
    user_field_values.c.unique_key == bindparam("unique_key"),
)


_INSERT_USER_ROLE = insert(user_roles)
_INSERT_MANAGED = insert(user_role_departments)
_INSERT_MEMBER = insert(group_members)
_INSERT_OUTBOX = insert(outbox)


@dataclass
class Invitation:
    channel: str
    recipient: str
    message: str


@dataclass
class UserPlan:
    """A request whose parameters have all been checked: what will be written."""

    login: str
    email: str | None
    department: Department
    builtin: dict[str, str] = field(default_factory=dict)
    custom: list[tuple[ProfileField, str]] = field(default_factory=list)
    roles: list[tuple[Role, list[Department]]] = field(default_factory=list)
    group_ids: list[str] = field(default_factory=list)
    invitations: list[Invitation] = field(default_factory=list)
    # The account at the settings version the plan was checked against.
    account: AccountInfo | None = None

    @classmethod
    def of(cls, profile: Profile, department: Department) -> UserPlan:
        return cls(
            login=profile.login,
            email=profile.email,
            department=department,
            builtin=profile.builtin,
            custom=profile.custom,
        )


def add_user(
    db: Database, actor: Actor, cmd: AddUser, generation: ApiGeneration = ApiGeneration.TOKEN
) -> str:
    """Adds the user and returns their id; any failure changes nothing."""
    scope = _add_scope(actor)
    password = check_password(actor, cmd)
    # Hashing takes tens of milliseconds: never while holding the write transaction.
    password_hash = hash_password(password) if password else None
    # The plan's checks are held again by the writes (unique indexes, foreign keys, the seat
    # counter's guarded update): on SQLite the writers' turn waits for the writes.
    with db.write(checked_by_writes=True) as conn:
        return add_user_in(conn, actor, cmd, generation, password_hash, scope)


def _add_scope(actor: Actor) -> Scope:
    scope = actor.scope(Permission.ADD_USERS)
    if scope.is_empty:
        raise denied("your roles do not allow adding users")
    return scope


def check_password(actor: Actor, cmd: AddUser) -> str | None:
    if cmd.password is None or cmd.password.get_secret_value() == "":
        return None
    password = cmd.password.get_secret_value()
    check_password_policy(password, actor.account.password_min_length)
    return password


def check_password_policy(password: str, minimum: int) -> None:
    """The account's password policy, with the same messages wherever a password is set."""
    if len(password) < minimum:
        raise invalid("password", f"must be at least {minimum} characters long")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise invalid("password", f"must be at most {MAX_PASSWORD_LENGTH} characters long")


def add_user_in(
    conn: Connection,
    actor: Actor,
    cmd: AddUser,
    generation: ApiGeneration,
    password_hash: str | None,
    scope: Scope | None = None,
    *,
    status: int = ACTIVE,
) -> str:
    """addUser inside a transaction the caller owns (used by account files too). A user added
    in another status than active (SCIM's `active: false`) takes no seat: a full account
    accepts them, and activating them later takes one as any activation does."""
    scope = scope or _add_scope(actor)
    plan = _plan(conn, actor, cmd, generation)
    _authorize(actor, scope, plan, "roles" if cmd.roles else "role")
    try:
        user_id = insert_user(conn, actor.account_id, actor.user_id, plan, password_hash, status)
        # Smart groups follow profile values and departments: the new user joins those that
        # match.
        refresh_memberships(conn, plan.account or actor.account, [user_id], account_is_current=True)
    except IntegrityError as exc:
        raise duplicate_from_integrity_error(exc, plan.login, plan.email, plan.custom) from None
    account = plan.account or actor.account
    record(conn, account, [registered(conn, account, actor.user_id, plan, user_id, status)])
    if actor.account.seat_limit is None or status != ACTIVE:
        # No limit, no counter: taking the account row's lock would make every add of the
        # account wait for the previous one's commit (measured: 1.5x slower on PostgreSQL).
        return user_id
    defer_update(
        conn, _TAKE_SEAT, {"seats_of": actor.account_id}, rowcount=1, otherwise=_no_seat_left
    )
    return user_id


def _no_seat_left() -> DomainError:
    return DomainError(
        ErrorCode.SEAT_LIMIT_EXCEEDED, "every user account of the subscription is in use"
    )


def registered(
    conn: Connection,
    account: AccountInfo,
    actor_id: str | None,
    plan: UserPlan,
    user_id: str,
    status: int = ACTIVE,
) -> Change:
    """The change record of a user added from a checked plan."""
    return Change(
        EventType.USER_REGISTERED,
        TargetKind.USER,
        user_id,
        actor_id,
        after=registered_snapshot(conn, account, plan, user_id, status),
    )


def registered_snapshot(
    conn: Connection, account: AccountInfo, plan: UserPlan, user_id: str, status: int = ACTIVE
) -> dict[str, object] | None:
    """The new user as a read shows them, made from the plan without reading the rows back
    (addUser's hot path); None when the account has smart groups, which may have taken the
    user in: then the change record reads the user."""
    if account_smart_groups(conn, account):
        return None
    custom = {f.name: value for f, value in plan.custom}
    fields = {"login": plan.login}
    if plan.email:
        fields["email"] = plan.email
    fields.update((c, plan.builtin[c]) for c in _BUILTIN_COLUMNS if plan.builtin.get(c))
    for f in account_settings(conn, account).fields:
        if f.name in custom and not f.is_builtin:
            fields[f.name] = custom[f.name]
    view = UserView(
        id=user_id,
        department_id=plan.department.id,
        status=status,
        added_at=utcnow(),
        added_by=None,
        fields=fields,
        roles=[(role, sorted(d.id for d in depts)) for role, depts in plan.roles],
        groups=sorted(plan.group_ids),
    )
    return user_snapshot(view)


def _plan(conn: Connection, actor: Actor, cmd: AddUser, generation: ApiGeneration) -> UserPlan:
    values = merge_profile_values(cmd.fields, cmd.login, cmd.email)
    if not values.get("login"):
        raise invalid("login", "is required")
    if not cmd.department_id or not cmd.department_id.strip():
        raise invalid("departmentId", "is required")

    wanted_departments = [cmd.department_id, *(cmd.manageable_department_ids or [])]
    for item in cmd.roles or []:
        wanted_departments.extend(item.manageable_department_ids or [])
    # The account's settings as this transaction sees them: profile fields, roles or smart
    # groups changed since the actor authenticated (while its password was hashed) count.
    known, account = departments_repo.get_many_and_account(
        conn, actor.account, [as_uuid_text(d) or "" for d in wanted_departments]
    )
    settings = account_settings(conn, account)
    profile = checked_profile(settings.fields, values)
    department = known.get(as_uuid_text(cmd.department_id) or "")
    if department is None:
        raise invalid("departmentId", f"no department {cmd.department_id!r} in this account")

    plan = UserPlan.of(profile, department)
    plan.account = account
    plan.roles = resolve_roles(settings.roles, cmd, generation, known)
    plan.group_ids = resolve_groups(conn, account, cmd.groups or [])
    plan.invitations = _invitations(cmd, generation, plan, settings.invitation_message)
    return plan


def merge_profile_values(
    fields: Mapping[str, str | None], login: str | None, email: str | None
) -> dict[str, str]:
    """login and e-mail may come top-level or inside `fields`; names are case-insensitive.
    Values are keyed by the name the client gave (so an error names what it sent), login and
    email by those names."""
    values: dict[str, str] = {}
    seen: set[str] = set()
    for name, raw in fields.items():
        key = name.strip().casefold()
        if not key:
            raise invalid("fields", "a profile field has no name")
        if key in seen:
            raise invalid(f"fields.{name}", "given more than once")
        seen.add(key)
        values[key if key in _TOP_LEVEL else name.strip()] = raw or ""
    for key, top in (("login", login), ("email", email)):
        if top is None:
            continue
        inner = values.get(key)
        if inner and top.strip() and fold(inner) != fold(top):
            raise invalid(key, f"differs from fields.{key}")
        if top.strip() or key not in values:
            values[key] = top
    return values


_TOP_LEVEL = frozenset({"login", "email"})


@dataclass
class Profile:
    """A new user's checked profile values."""

    login: str
    email: str | None
    # Built-in fields stored in the users row (first_name, ...), by name.
    builtin: dict[str, str]
    # Custom fields with a value.
    custom: list[tuple[ProfileField, str]]


def checked_profile(
    fields: Sequence[ProfileField], values: Mapping[str, str], *, require: bool = True
) -> Profile:
    """`values` (from merge_profile_values, with a login) checked against the account's fields;
    with `require`, every required field but those of the country type must have a value."""
    checked = check_profile_values(fields, values)
    if require:
        for profile_field in fields:
            if not profile_field.is_required or profile_field.type == "country":
                continue
            given = checked.get(profile_field.name.casefold())
            if given is None or not given[1]:
                raise required_field_missing(profile_field)
    email_entry = checked.pop("email", None)
    profile = Profile(
        login=checked.pop("login")[1],
        email=email_entry[1] if email_entry and email_entry[1] else None,
        builtin={},
        custom=[],
    )
    for key, (profile_field, value) in checked.items():
        if profile_field.is_builtin:
            profile.builtin[key] = value
        elif value:
            profile.custom.append((profile_field, value))
    return profile


def check_profile_values(
    fields: Sequence[ProfileField], values: Mapping[str, str]
) -> dict[str, tuple[ProfileField, str]]:
    """Each given value checked against its field, keyed by the field's case-folded name."""
    checked: dict[str, tuple[ProfileField, str]] = {}
    for name, raw in values.items():
        profile_field = resolve_field(fields, name)
        parameter = name if name in ("login", "email") else f"fields.{name}"
        if profile_field is None:
            raise invalid(parameter, "this account has no such profile field")
        key = profile_field.name.casefold()
        if key in checked:
            raise invalid(parameter, "given more than once")
        checked[key] = (profile_field, check_value(profile_field, raw, parameter))
    return checked


def field_parameter(profile_field: ProfileField) -> str:
    return profile_field.name if profile_field.is_builtin else f"fields.{profile_field.name}"


def required_field_missing(profile_field: ProfileField) -> DomainError:
    return invalid(field_parameter(profile_field), "is required by this account's profile settings")


class RoleRequest(Protocol):
    """The role parameters shared by addUser and the profile update."""

    role: str | None
    role_id: str | None
    roles: list[RoleItem] | None
    manageable_department_ids: list[str] | None


def resolve_roles(
    account_role_list: tuple[Role, ...],
    cmd: RoleRequest,
    generation: ApiGeneration,
    known_departments: dict[str, Department],
) -> list[tuple[Role, list[Department]]]:
    by_id = {r.id: r for r in account_role_list}
    by_kind: dict[RoleKind, Role] = {
        r.kind: r for r in account_role_list if r.kind is not RoleKind.CUSTOM
    }
    chosen: list[tuple[Role, list[str] | None, str]] = []

    if cmd.roles:
        if len(cmd.roles) > 2:
            raise invalid("roles", "at most two roles: Learner and one administrative role")
        for i, item in enumerate(cmd.roles):
            parameter = f"roles[{i}].roleId"
            role = by_id.get(as_uuid_text(item.role_id) or "")
            if role is None:
                raise invalid(parameter, f"no role {item.role_id!r} in this account")
            if role.kind is RoleKind.OWNER:
                raise invalid(parameter, "the account owner role cannot be assigned")
            departments_given = item.manageable_department_ids
            if departments_given is None and role.kind is not RoleKind.LEARNER:
                departments_given = cmd.manageable_department_ids
            chosen.append((role, departments_given, f"roles[{i}].manageableDepartmentIds"))
        if len(chosen) == 2:
            learners = [r for r, _, _ in chosen if r.kind is RoleKind.LEARNER]
            if len(learners) != 1:
                raise invalid(
                    "roles",
                    "with two roles, one must be Learner and the other an administrative role",
                )
    else:
        role = _single_role(cmd, generation, by_id, by_kind)
        chosen.append((role, cmd.manageable_department_ids, "manageableDepartmentIds"))

    result: list[tuple[Role, list[Department]]] = []
    for role, department_ids, parameter in chosen:
        ids = [d for d in (department_ids or []) if d and d.strip()]
        if role.is_department_scoped and not ids:
            raise invalid(parameter, f"is required for the {role.name} role")
        if not role.is_department_scoped and ids:
            raise invalid(
                parameter,
                "only department administrator, publisher and custom "
                f"roles manage departments, not {role.name}",
            )
        managed: dict[str, Department] = {}
        for raw in ids:
            dept = known_departments.get(as_uuid_text(raw) or "")
            if dept is None:
                raise invalid(parameter, f"no department {raw!r} in this account")
            managed[dept.id] = dept
        result.append((role, list(managed.values())))
    return result


def _single_role(
    cmd: RoleRequest,
    generation: ApiGeneration,
    by_id: dict[str, Role],
    by_kind: dict[RoleKind, Role],
) -> Role:
    role_id = as_uuid_text(cmd.role_id) if cmd.role_id and cmd.role_id.strip() else None
    if cmd.role_id and cmd.role_id.strip() and role_id is None:
        raise invalid("roleId", f"no role {cmd.role_id!r} in this account")
    if not cmd.role or not cmd.role.strip():
        if role_id is None:
            return by_kind[RoleKind.LEARNER]
        role = by_id.get(role_id)
        if role is None:
            raise invalid("roleId", f"no role {cmd.role_id!r} in this account")
        if role.kind is RoleKind.OWNER:
            raise invalid("roleId", "the account owner role cannot be assigned")
        return role
    kind = ROLE_SPELLINGS.get(cmd.role.strip().casefold())
    if kind is None:
        spellings = ", ".join(s for s in ROLE_SPELLINGS if "owner" not in s)
        raise invalid("role", f"unknown role {cmd.role!r}; use one of: {spellings}")
    if kind is RoleKind.OWNER:
        raise invalid("role", "the account owner role cannot be assigned")
    if kind is RoleKind.CUSTOM:
        if role_id is None:
            raise invalid("roleId", "is required when role is custom")
        role = by_id.get(role_id)
        if role is None:
            raise invalid("roleId", f"no role {cmd.role_id!r} in this account")
        if role.kind is RoleKind.CUSTOM:
            return role
        if role.kind is RoleKind.PUBLISHER and generation is ApiGeneration.CREDENTIALS:
            return role
        hint = "; use role=publisher" if role.kind is RoleKind.PUBLISHER else ""
        raise invalid(
            "roleId", f"role custom needs the id of a custom role, and {role.name} is not one{hint}"
        )
    role = by_kind[kind]
    if role_id is not None and role_id != role.id:
        raise invalid("roleId", f"does not match role {cmd.role!r}")
    return role


def resolve_groups(
    conn: Connection, account: AccountInfo, raw_ids: Sequence[str], parameter: str = "groups"
) -> list[str]:
    """Canonical ids of existing ordinary groups of the account; smart groups choose their
    members by their rules, so nobody is put into one by hand."""
    wanted: dict[str, str] = {}
    for raw in raw_ids:
        if not raw or not raw.strip():
            continue
        canonical = as_uuid_text(raw)
        if canonical is None:
            raise invalid(parameter, f"no group {raw!r} in this account")
        wanted[canonical] = raw
    groups_repo.check_manual_groups(conn, account.id, wanted, parameter)
    return list(wanted)


def _invitations(
    cmd: AddUser, generation: ApiGeneration, plan: UserPlan, default_message: str
) -> list[Invitation]:
    """The older generation invites by default and the newer one on request; only the newer
    SOAP generation demands the message's text, elsewhere the account's default is sent."""
    result = []
    explicit = cmd.send_login_email is True
    wanted = (
        cmd.send_login_email
        if cmd.send_login_email is not None
        else (generation is ApiGeneration.CREDENTIALS)
    )
    if wanted:
        recipient = plan.email or (plan.login if is_email(plan.login) else None)
        message = (cmd.invitation_message or "").strip()
        if explicit and generation is ApiGeneration.TOKEN and not message:
            raise invalid("invitationMessage", "is required when sendLoginEmail is true")
        if recipient is None:
            if explicit:
                raise invalid(
                    "sendLoginEmail",
                    "the user has no e-mail address (neither email "
                    "nor a login that is an e-mail) to invite",
                )
        else:
            result.append(Invitation("email", recipient, message or default_message))
    if cmd.send_login_sms:
        message = (cmd.invitation_sms_message or "").strip()
        if not message:
            raise invalid("invitationSMSMessage", "is required when sendLoginSMS is true")
        phone = plan.builtin.get("phone")
        if not phone:
            raise invalid("sendLoginSMS", "the user has no phone number in the profile")
        result.append(Invitation("sms", phone_e164(phone), message))
    return result


def _authorize(actor: Actor, scope: Scope, plan: UserPlan, role_parameter: str) -> None:
    if not scope.covers(plan.department.path):
        raise denied("the department is outside the departments you manage", "departmentId")
    authorize_roles(actor, scope, plan.roles, role_parameter)


def authorize_roles(
    actor: Actor,
    scope: Scope,
    granted: Sequence[tuple[Role, Sequence[Department]]],
    role_parameter: str,
) -> None:
    """A department-limited actor grants no account-wide role, no right it lacks, and no
    department outside its scope."""
    if scope.account_wide:
        return
    own = actor.permissions_within_departments()
    for role, managed in granted:
        if role.is_account_wide:
            raise denied(
                f"only the account owner and account administrators can grant the {role.name} role",
                role_parameter,
            )
        if not role.permissions <= own:
            raise denied(f"the {role.name} role has rights your roles do not have", role_parameter)
        for dept in managed:
            if not scope.covers(dept.path):
                raise denied(
                    f"department {dept.id} is outside the departments you manage",
                    "manageableDepartmentIds",
                )


def check_unique_values(
    conn: Connection,
    account_id: str,
    login: str | None,
    email: str | None,
    custom: Sequence[tuple[ProfileField, str]],
    user_id: str | None = None,
) -> None:
    """409 when another user (not `user_id`) holds the login, e-mail or a unique field value;
    each value looked up on its own unique index."""
    for value, column, taken in (
        (login, "login_key", login_taken(login)),
        (email, "email_key", email_taken(email)),
    ):
        if value and any(
            h != user_id for h in users_by_key(conn, account_id, column, [fold(value)])
        ):
            raise taken
    for profile_field, value in custom:
        if not profile_field.is_unique or not value:
            continue
        holder = conn.execute(
            _SELECT_FIELD_VALUE_HOLDER, {"field_id": profile_field.id, "unique_key": fold(value)}
        ).scalar()
        if holder is not None and holder != user_id:
            raise _field_taken(profile_field.name, f"value {value!r} is taken")


def _duplicate(
    conn: Connection,
    account_id: str,
    login: str | None,
    email: str | None,
    custom: Sequence[tuple[ProfileField, str]],
) -> DomainError:
    """The 409 for an insert that a unique index refused. When nobody holds the value any more
    (its holder was deleted since), the insert lost a race all the same."""
    try:
        check_unique_values(conn, account_id, login, email, custom)
    except DomainError as exc:
        return exc
    if custom:
        return _field_taken(next(f.name for f, _ in custom if f.is_unique), "the value is taken")
    return login_taken(login)


def login_taken(login: str | None) -> DomainError:
    return DomainError(ErrorCode.LOGIN_TAKEN, f"login {login!r} is taken", parameter="login")


def email_taken(email: str | None) -> DomainError:
    return DomainError(ErrorCode.EMAIL_TAKEN, f"e-mail {email!r} is taken", parameter="email")


def _field_taken(name: str, reason: str) -> DomainError:
    """409 "User with the same <field> is already registered.", blaming fields.<field>."""
    message = MESSAGES[ErrorCode.FIELD_VALUE_TAKEN].format(parameter=name)
    return DomainError(
        ErrorCode.FIELD_VALUE_TAKEN, reason, parameter=f"fields.{name}", message=message
    )


def duplicate_from_integrity_error(
    exc: IntegrityError,
    login: str | None,
    email: str | None,
    custom: Sequence[tuple[ProfileField, str]],
) -> DomainError:
    """A concurrent request won the race for a unique value: the same answer as the pre-check."""
    text = str(exc.orig)
    if "login_key" in text:
        return login_taken(login)
    if "email_key" in text:
        return email_taken(email)
    if "unique_key" in text:
        name = next((f.name for f, _ in custom if f.is_unique), "value")
        return _field_taken(name, "the value is taken")
    if "foreign key" in text.lower():
        # A department, group or role the request names was deleted by a concurrent request
        # between the checks and the write (PostgreSQL; SQLite serialises writers).
        return invalid(
            "request", "a department, group or role it names was deleted meanwhile; try again"
        )
    raise exc


@dataclass
class PlanRows:
    """The rows that write one checked plan, built without touching the database: addUser
    inserts one plan's, an import a whole batch's at once."""

    user: dict[str, object]
    values: list[dict[str, object]]
    roles: list[dict[str, object]]
    managed: list[dict[str, object]]
    members: list[dict[str, object]]
    invitations: list[dict[str, object]]


def plan_rows(
    account_id: str,
    added_by: str | None,
    plan: UserPlan,
    password_hash: str | None,
    status: int = ACTIVE,
    user_id: str | None = None,
) -> PlanRows:
    user_id = user_id or new_id()
    now = utcnow()
    return PlanRows(
        user={
            "id": user_id,
            "account_id": account_id,
            "department_id": plan.department.id,
            "login": plan.login,
            "login_key": fold(plan.login),
            "email": plan.email,
            "email_key": fold(plan.email) if plan.email else None,
            "password_hash": password_hash,
            "status": status,
            "added_at": now,
            "added_by": added_by,
            **{c: plan.builtin.get(c) or None for c in _BUILTIN_COLUMNS},
        },
        values=[
            {
                "user_id": user_id,
                "field_id": f.id,
                "value": value,
                "unique_key": fold(value) if f.is_unique else None,
            }
            for f, value in plan.custom
        ],
        roles=[{"user_id": user_id, "role_id": r.id} for r, _ in plan.roles],
        managed=[
            {"user_id": user_id, "role_id": r.id, "department_id": d.id}
            for r, depts in plan.roles
            for d in depts
        ],
        members=[{"group_id": g, "user_id": user_id} for g in plan.group_ids],
        invitations=[
            {
                "id": new_id(),
                "account_id": account_id,
                "user_id": user_id,
                "channel": inv.channel,
                "recipient": inv.recipient,
                "message": inv.message,
                "status": "pending",
                "created_at": now,
                "next_attempt_at": now,
                "password_link": password_hash is None,
            }
            for inv in plan.invitations
        ],
    )


def insert_user(
    conn: Connection,
    account_id: str,
    added_by: str | None,
    plan: UserPlan,
    password_hash: str | None,
    status: int = ACTIVE,
) -> str:
    """Writes a checked plan: the user, profile values, roles, groups and invitations."""
    rows = plan_rows(account_id, added_by, plan, password_hash, status)
    if defers(conn):
        # A request's rows go with its commit: on PostgreSQL in one round trip, on SQLite in
        # the writers' turn, which then holds only the writes. The unique indexes decide.
        user_taken = _refused(conn, account_id, plan, plan.login, plan.email, [])
        value_taken = _refused(conn, account_id, plan, None, None, plan.custom)
        defer_insert(conn, users, [rows.user], on_integrity_error=user_taken)
        defer_insert(conn, user_field_values, rows.values, on_integrity_error=value_taken)
        for table, table_rows in (
            (user_roles, rows.roles),
            (user_role_departments, rows.managed),
            (group_members, rows.members),
        ):
            defer_insert(conn, table, table_rows, on_integrity_error=value_taken)
        # Sent now: the delivery worker wakes on this insert (see delivery.worker).
        insert_many(conn, outbox, rows.invitations)
        return str(rows.user["id"])
    if insert_many(conn, users, [rows.user], skip_taken=True) != 1:
        raise _duplicate(conn, account_id, plan.login, plan.email, [])
    # One statement for every value, so its row count tells whether all went in.
    if insert_many(conn, user_field_values, rows.values, skip_taken=True) != len(rows.values):
        raise _duplicate(conn, account_id, None, None, plan.custom)
    write_plan_rows(conn, [rows], users_and_values=False)
    return str(rows.user["id"])


def _refused(
    conn: Connection,
    account_id: str,
    plan: UserPlan,
    login: str | None,
    email: str | None,
    custom: Sequence[tuple[ProfileField, str]],
) -> Callable[[IntegrityError], Exception]:
    """What a constraint refusing one of a plan's deferred inserts means: on SQLite, whose
    transaction goes on after a refused statement, a unique value's holder is read (the answer
    the pre-check gives: `login`, `email`, then `custom`); otherwise the answer is read from the
    error (PostgreSQL's transaction is aborted), as for a foreign key that vanished."""

    def told(exc: IntegrityError) -> Exception:
        if conn.dialect.name == "sqlite" and "UNIQUE" in str(exc.orig):
            return _duplicate(conn, account_id, login, email, custom)
        return duplicate_from_integrity_error(exc, plan.login, plan.email, plan.custom)

    return told


def write_plan_rows(
    conn: Connection, batch: Sequence[PlanRows], *, users_and_values: bool = True
) -> None:
    """Inserts the rows of checked plans, one statement per table for the whole batch."""
    tables: list[tuple[Table, list[dict[str, object]]]] = [
        (user_roles, [r for rows in batch for r in rows.roles]),
        (user_role_departments, [r for rows in batch for r in rows.managed]),
        (group_members, [r for rows in batch for r in rows.members]),
        (outbox, [r for rows in batch for r in rows.invitations]),
    ]
    if users_and_values:
        tables[:0] = [
            (users, [rows.user for rows in batch]),
            (user_field_values, [r for rows in batch for r in rows.values]),
        ]
    for table, rows in tables:
        insert_many(conn, table, rows)
