"""The People section: the list (search as you type, filters, keyset pages, bulk actions), a
person's page (profile, roles, groups, schedules, invitations, audit), and the add and edit
forms. Every read and change is the core's, with the signed-in user as the actor."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import SecretStr
from starlette.datastructures import FormData, QueryParams

from learndir.api.console.web import (
    Console,
    administrator,
    error_text,
    field_errors,
    posted,
    text,
    texts,
)
from learndir.core import departments as departments_core
from learndir.core import groups as groups_core
from learndir.core.audit import AuditRecord, audit_query, read_audit
from learndir.core.departments import Department
from learndir.core.errors import DomainError, ErrorCode, invalid
from learndir.core.groups import Group
from learndir.core.invitations import service as invitations
from learndir.core.invitations.service import Invitation
from learndir.core.profile_fields import ProfileField, list_fields
from learndir.core.roles import Role, RoleKind, list_roles
from learndir.core.users.changes import (
    ACTIVE,
    INACTIVE,
    TERMINATED,
    change_status,
    update_user,
)
from learndir.core.users.commands import AddUser, ApiGeneration, UpdateUser
from learndir.core.users.queries import UserView, get_user
from learndir.core.users.schedules import ScheduledChange, cancel_change, schedule_change, today
from learndir.core.users.search import PeopleCriteria, PeoplePage, search_users
from learndir.core.users.service import add_user

router = APIRouter()

PAGE_SIZE = 50
STATUS_NAMES = {ACTIVE: "active", INACTIVE: "inactive", TERMINATED: "terminated"}
STATUS_BY_NAME = {name: number for number, name in STATUS_NAMES.items()}
BUILTIN = ("first_name", "last_name", "job_title", "phone")
BUILTIN_LABELS = {
    "login": "Login",
    "email": "E-mail",
    "first_name": "First name",
    "last_name": "Last name",
    "job_title": "Job title",
    "phone": "Phone",
}
# The core's parameter names, and the form fields they concern.
FORM_FIELDS = {
    "login": "login",
    "email": "email",
    "password": "password",
    "departmentId": "department",
    "role": "role",
    "roleId": "role",
    "roles": "role",
    "manageableDepartmentIds": "managed",
    "groups": "groups",
    "groupIds": "groups",
    "sendLoginEmail": "invite",
    "userId": "",
    "fields": "",
}


@dataclass
class Directory:
    """What the section's pages name: the departments the actor sees (in tree order, with
    their depth), the account's groups and roles."""

    departments: list[tuple[Department, int]]
    groups: list[Group]
    roles: list[Role]
    department_names: dict[str, str] = field(default_factory=dict)
    group_names: dict[str, str] = field(default_factory=dict)

    @property
    def plain_groups(self) -> list[Group]:
        return [g for g in self.groups if not g.is_smart]


def _directory(console: Console) -> Directory:
    found = departments_core.list_departments(console.db, console.actor)
    top = min((d.path.count("/") for d in found), default=0)
    depts = [(d, d.path.count("/") - top) for d in found]
    groups = groups_core.list_groups(console.db, console.actor)
    roles = list_roles(console.db, console.actor)
    return Directory(
        depts,
        groups,
        roles,
        {d.id: d.name for d in found},
        {g.id: g.name for g in groups},
    )


# ---- the list ---------------------------------------------------------------------------


@dataclass
class ListQuery:
    q: str = ""
    department: str = ""
    sub: bool = True
    status: str = ""
    group: str = ""
    role: str = ""
    after: str = ""

    @classmethod
    def of(cls, params: QueryParams) -> ListQuery:
        def one(name: str) -> str:
            value = params.get(name)
            return value.strip() if isinstance(value, str) else ""

        subs = params.getlist("sub")
        return cls(
            q=one("q")[:300],
            department=one("department"),
            sub="1" in subs or "0" not in subs,
            status=one("status"),
            group=one("group"),
            role=one("role"),
            after=one("after"),
        )

    def params(self, after: str = "") -> str:
        pairs = [
            (k, v)
            for k, v in (
                ("q", self.q),
                ("department", self.department),
                ("sub", "" if self.sub else "0"),
                ("status", self.status),
                ("group", self.group),
                ("role", self.role),
                ("after", after),
            )
            if v
        ]
        return urlencode(pairs)


def _criteria(query: ListQuery) -> PeopleCriteria:
    status = None
    if query.status:
        status = STATUS_BY_NAME.get(query.status.lower())
        if status is None:
            raise invalid("status", "must be active, inactive or terminated")
    return PeopleCriteria(
        text=query.q,
        department_id=query.department or None,
        with_subdepartments=query.sub,
        status=status,
        group_id=query.group or None,
        role_id=query.role or None,
    )


def _list_context(console: Console, query: ListQuery) -> tuple[dict[str, Any], int]:
    errors: dict[str, str] = {}
    page = PeoplePage([], None)
    try:
        page = search_users(
            console.db, console.actor, _criteria(query), query.after or None, PAGE_SIZE
        )
    except DomainError as exc:
        if exc.code is not ErrorCode.INVALID_PARAMETERS:
            raise
        errors = field_errors(exc, {"limit": ""})
    directory = _directory(console)
    context = {
        "query": query,
        "page": page,
        "errors": errors,
        "directory": directory,
        "statuses": STATUS_NAMES,
        "next_url": console.url("/people?" + query.params(page.next_after))
        if page.next_after
        else None,
        "first_url": console.url("/people?" + query.params()) if query.after else None,
        "back": query.params(query.after),
    }
    return context, 422 if errors else 200


@router.get("/people", include_in_schema=False)
def people(console: Console = Depends(administrator)) -> Response:
    query = ListQuery.of(console.request.query_params)
    context, status = _list_context(console, query)
    if console.request.headers.get("x-fragment"):
        return console.render("people/results.html", context, status=status)
    return console.render(
        "people/list.html", context, status=status, section="people", title="People"
    )


@router.post("/people/bulk", include_in_schema=False)
def bulk(console: Console = Depends(administrator), form: FormData = Depends(posted)) -> Response:
    action = text(form, "action")
    selected = texts(form, "selected")
    back = text(form, "back")
    query = ListQuery.of(QueryParams(back))
    try:
        if not selected:
            raise invalid("selected", "select at least one person first")
        count = len(dict.fromkeys(selected))
        people_word = "person" if count == 1 else "people"
        if action == "deactivate":
            change_status(console.db, console.actor, selected, INACTIVE, ApiGeneration.REST)
            notice = f"Deactivated {count} {people_word}."
        elif action == "activate":
            change_status(console.db, console.actor, selected, ACTIVE, ApiGeneration.REST)
            notice = f"Activated {count} {people_word}."
        elif action == "move":
            target = text(form, "to_department")
            if not target:
                raise invalid("to_department", "choose the department to move them to")
            departments_core.move_users(console.db, console.actor, target, selected)
            notice = f"Moved {count} {people_word}."
        elif action == "group":
            target = text(form, "to_group")
            if not target:
                raise invalid("to_group", "choose the group to add them to")
            added = len(groups_core.add_members(console.db, console.actor, target, selected))
            notice = f"Added {added} of {count} {people_word} to the group (the others were in it)."
            if added == count:
                notice = f"Added {count} {people_word} to the group."
        else:
            raise invalid("action", "choose an action")
    except DomainError as exc:
        if exc.code is ErrorCode.NOT_FOUND and exc.parameter in ("groupId", "departmentId"):
            exc = invalid(
                "to_group" if exc.parameter == "groupId" else "to_department",
                "no such " + ("group" if exc.parameter == "groupId" else "department"),
            )
        if exc.code not in (
            ErrorCode.INVALID_PARAMETERS,
            ErrorCode.PERMISSION_DENIED,
            ErrorCode.SEAT_LIMIT_EXCEEDED,
        ):
            raise
        context, _ = _list_context(console, query)
        context["bulk_error"] = error_text(exc)
        context["selected"] = set(selected)
        return console.render(
            "people/list.html", context, status=422, section="people", title="People"
        )
    return console.redirect("/people" + ("?" + back if back else ""), notice)


# ---- a person's page --------------------------------------------------------------------


def _invitations(console: Console, user_id: str) -> list[Invitation] | None:
    """The person's invitations, or None when the actor may not edit them."""
    try:
        return invitations.list_invitations(console.db, console.actor, user_id)
    except DomainError as exc:
        if exc.code is ErrorCode.PERMISSION_DENIED:
            return None
        raise


def _audit(console: Console, user_id: str) -> list[AuditRecord] | None:
    if not console.actor.administers_account:
        return None
    records, _ = read_audit(console.db, console.actor, audit_query(target_id=user_id, page_size=20))
    return records


def _field_list(console: Console) -> list[ProfileField]:
    return list_fields(console.db, console.actor)


@router.get("/people/new", include_in_schema=False)
def new_person(console: Console = Depends(administrator)) -> Response:
    directory = _directory(console)
    values: dict[str, Any] = {
        "department": directory.departments[0][0].id if directory.departments else "",
        "role": next((r.id for r in directory.roles if r.kind is RoleKind.LEARNER), ""),
        "invite": True,
        "groups": [],
        "managed": [],
    }
    return _form(console, directory, values, {}, None)


@router.get("/people/{user_id}", include_in_schema=False)
def person(user_id: str, console: Console = Depends(administrator)) -> Response:
    return _person_page(console, user_id)


def _person_page(
    console: Console, user_id: str, schedule_errors: dict[str, str] | None = None
) -> Response:
    user = get_user(console.db, console.actor, user_id)
    directory = _directory(console)
    context = {
        "schedule_errors": schedule_errors or {},
        "today": today().isoformat(),
        "user": user,
        "directory": directory,
        "fields": _field_list(console),
        "statuses": STATUS_NAMES,
        "invitations": _invitations(console, user.id),
        "audit": _audit(console, user.id),
        "labels": BUILTIN_LABELS,
    }
    return console.render(
        "people/person.html",
        context,
        section="people",
        title=_display_name(user),
        status=422 if schedule_errors else 200,
    )


def _display_name(user: UserView) -> str:
    name = " ".join(v for v in (user.fields.get("first_name"), user.fields.get("last_name")) if v)
    return name or user.fields.get("login", user.id)


@router.post("/people/{user_id}/status", include_in_schema=False)
def person_status(
    user_id: str, console: Console = Depends(administrator), form: FormData = Depends(posted)
) -> Response:
    wanted = STATUS_BY_NAME.get(text(form, "status"))
    if wanted is None:
        raise invalid("status", "must be active, inactive or terminated")
    change_status(
        console.db, console.actor, [user_id], wanted, ApiGeneration.REST, parameter="userId"
    )
    return console.redirect(f"/people/{user_id}", f"The status is now {STATUS_NAMES[wanted]}.")


_SCHEDULES = {
    "deactivation": (ScheduledChange.DEACTIVATION, "deactivated"),
    "termination": (ScheduledChange.TERMINATION, "terminated (employment ended)"),
}


@router.post("/people/{user_id}/schedule", include_in_schema=False)
def schedule(
    user_id: str, console: Console = Depends(administrator), form: FormData = Depends(posted)
) -> Response:
    """Sets (a date) or cancels (`cancel`) a scheduled deactivation or termination."""
    kind = text(form, "change")
    if kind not in _SCHEDULES:
        raise invalid("change", "must be deactivation or termination")
    change, done = _SCHEDULES[kind]
    try:
        if text(form, "cancel"):
            cancel_change(console.db, console.actor, user_id, change)
            return console.redirect(f"/people/{user_id}", f"The scheduled {kind} was cancelled.")
        when = text(form, "date")
        schedule_change(console.db, console.actor, user_id, change, when)
    except DomainError as exc:
        if exc.code is ErrorCode.NOT_FOUND:
            raise
        return _person_page(console, user_id, {kind: error_text(exc)})
    return console.redirect(f"/people/{user_id}", f"The person will be {done} on {when}.")


@router.post("/people/{user_id}/invitation/resend", include_in_schema=False)
def resend(
    user_id: str, console: Console = Depends(administrator), _form: FormData = Depends(posted)
) -> Response:
    sent = invitations.resend(console.db, console.actor, user_id)
    where = ", ".join(i.recipient for i in sent)
    return console.redirect(f"/people/{user_id}", f"A new invitation is on its way to {where}.")


@router.post("/people/{user_id}/invitation/revoke", include_in_schema=False)
def revoke(
    user_id: str, console: Console = Depends(administrator), _form: FormData = Depends(posted)
) -> Response:
    voided = invitations.revoke(console.db, console.actor, user_id)
    notice = (
        f"Revoked {voided} invitation{'' if voided == 1 else 's'}: the links no longer work."
        if voided
        else "There was no open invitation to revoke."
    )
    return console.redirect(f"/people/{user_id}", notice)


# ---- adding and editing -----------------------------------------------------------------


def _role_choices(directory: Directory) -> list[Role]:
    """Every role of the account but the owner's, in the core's order (Learner first)."""
    return [r for r in directory.roles if r.kind is not RoleKind.OWNER]


def _role_value(user: UserView) -> str:
    return user.primary_role[0].id


def _form_mapping(fields: list[ProfileField]) -> dict[str, str]:
    mapping = dict(FORM_FIELDS)
    for f in fields:
        name = f.name if f.is_builtin else f"f_{f.name}"
        mapping[f"fields.{f.name}"] = name
        mapping[f.name] = name
    return mapping


_FORM_NAMES = frozenset(
    {"login", "email", "password", "department", "role", "managed", "groups", "invite", *BUILTIN}
)


def _placed(errors: dict[str, str]) -> dict[str, str]:
    """Errors under the form's own field names; one that concerns no field goes to the top."""
    return {
        (name if name in _FORM_NAMES or name.startswith("f_") else ""): message
        for name, message in errors.items()
    }


def _form(
    console: Console,
    directory: Directory,
    values: dict[str, Any],
    errors: dict[str, str],
    user: UserView | None,
    status: int = 200,
) -> Response:
    fields = _field_list(console)
    context = {
        "values": values,
        "errors": _placed(errors),
        "directory": directory,
        "fields": [f for f in fields if not f.is_builtin],
        "builtin": [f for f in fields if f.is_builtin and f.name in BUILTIN],
        "required": {f.name for f in fields if f.is_required and f.type != "country"},
        "labels": {
            **BUILTIN_LABELS,
            **{f.name: f.label or BUILTIN_LABELS.get(f.name, f.name) for f in fields},
        },
        "role_choices": _role_choices(directory),
        "user": user,
        "is_owner": user is not None and user.primary_role[0].kind is RoleKind.OWNER,
    }
    title = f"Edit {_display_name(user)}" if user else "Add a person"
    return console.render("people/form.html", context, status=status, section="people", title=title)


def _values_of(form: FormData, fields: list[ProfileField]) -> dict[str, Any]:
    values: dict[str, Any] = {
        name: text(form, name) for name in ("login", "email", "department", "role", *BUILTIN)
    }
    values["groups"] = texts(form, "groups")
    values["managed"] = texts(form, "managed")
    values["invite"] = text(form, "invite") == "1"
    for f in fields:
        if not f.is_builtin:
            values[f"f_{f.name}"] = text(form, f"f_{f.name}")
    return values


def _role_parameters(role: str) -> dict[str, Any]:
    """The chosen role, by id (addUser and the profile update take any role so)."""
    return {"role_id": role} if role else {}


@router.post("/people", include_in_schema=False)
def add_person(
    console: Console = Depends(administrator), form: FormData = Depends(posted)
) -> Response:
    fields = _field_list(console)
    values = _values_of(form, fields)
    password = form.get("password")
    secret = password if isinstance(password, str) and password else None
    profile: dict[str, str | None] = {name: values[name] for name in BUILTIN if values[name]}
    for f in fields:
        if not f.is_builtin and values[f"f_{f.name}"]:
            profile[f.name] = values[f"f_{f.name}"]
    try:
        cmd = AddUser(
            login=values["login"],
            email=values["email"] or None,
            password=SecretStr(secret) if secret else None,
            department_id=values["department"] or None,
            send_login_email=values["invite"],
            manageable_department_ids=values["managed"] or None,
            groups=values["groups"],
            fields=profile,
            **_role_parameters(values["role"]),
        )
        user_id = add_user(console.db, console.actor, cmd, ApiGeneration.REST)
    except DomainError as exc:
        if exc.code is ErrorCode.NOT_FOUND:
            exc = invalid(exc.parameter or "", exc.reason or exc.message)
        return _form(
            console,
            _directory(console),
            values,
            field_errors(exc, _form_mapping(fields)),
            None,
            422,
        )
    login = values["login"]
    notice = f"{login} has been added."
    if values["invite"]:
        notice += " An invitation is on its way."
    return console.redirect(f"/people/{user_id}", notice)


def _edit_values(
    user: UserView, fields: list[ProfileField], directory: Directory
) -> dict[str, Any]:
    plain = {g.id for g in directory.plain_groups}
    values: dict[str, Any] = {
        "login": user.fields.get("login", ""),
        "email": user.fields.get("email", ""),
        "department": user.department_id,
        "role": _role_value(user),
        "groups": [g for g in user.groups if g in plain],
        "managed": user.primary_role[1],
    }
    for name in BUILTIN:
        values[name] = user.fields.get(name, "")
    for f in fields:
        if not f.is_builtin:
            values[f"f_{f.name}"] = user.fields.get(f.name, "")
    return values


@router.get("/people/{user_id}/edit", include_in_schema=False)
def edit_person(user_id: str, console: Console = Depends(administrator)) -> Response:
    user = get_user(console.db, console.actor, user_id)
    directory = _directory(console)
    return _form(console, directory, _edit_values(user, _field_list(console), directory), {}, user)


@router.post("/people/{user_id}/edit", include_in_schema=False)
def save_person(
    user_id: str, console: Console = Depends(administrator), form: FormData = Depends(posted)
) -> Response:
    user = get_user(console.db, console.actor, user_id)
    directory = _directory(console)
    fields = _field_list(console)
    before = _edit_values(user, fields, directory)
    values = _values_of(form, fields)
    # Only what changed is sent: the core then checks and records exactly that.
    changes: dict[str, Any] = {}
    profile: dict[str, str | None] = {}
    for name in BUILTIN:
        if values[name] != before[name]:
            profile[name] = values[name]
    for f in fields:
        key = f"f_{f.name}"
        if not f.is_builtin and values[key] != before[key]:
            profile[f.name] = values[key]
    for name in ("login", "email"):
        if values[name] != before[name]:
            changes[name] = values[name]
    if values["department"] != before["department"]:
        changes["department_id"] = values["department"]
    is_owner = user.primary_role[0].kind is RoleKind.OWNER
    if not is_owner and values["role"] != before["role"]:
        changes.update(_role_parameters(values["role"]))
        changes["manageable_department_ids"] = values["managed"] or None
    elif not is_owner and sorted(values["managed"]) != sorted(before["managed"]):
        changes["manageable_department_ids"] = values["managed"]
    if sorted(values["groups"]) != sorted(before["groups"]):
        changes["groups"] = values["groups"]
    try:
        update_user(
            console.db,
            console.actor,
            user.id,
            UpdateUser(fields=profile, **changes),
            ApiGeneration.REST,
        )
    except DomainError as exc:
        if exc.code is ErrorCode.NOT_FOUND:
            exc = invalid(exc.parameter or "", exc.reason or exc.message)
        errors = field_errors(exc, _form_mapping(fields))
        return _form(console, directory, values, errors, user, 422)
    return console.redirect(f"/people/{user.id}", "The changes have been saved.")
