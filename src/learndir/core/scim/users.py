"""SCIM Users (RFC 7643 §4.1, RFC 7644 §3): learndir's users as User resources, created and
changed through the same core functions as over REST and SOAP, so every rule holds.

A resource is read as the document its SCIM client last wrote (attributes learndir has no
place for are kept as sent), with the values learndir holds laid over it wherever they differ
from what the document says: a change made through another interface shows. Mapping:
userName = login; the primary (else work, else first) e-mail = email; name.givenName and
familyName; title = job title; the primary (else work, else first) phone number = phone;
active = status (a terminated user stays terminated and reads false); the Enterprise User's
department = a department by code or name (created under the provisioning department when
none matches), manager = the manual supervisor, employeeNumber = a custom field holding an
employee number when the account has one; custom profile fields in learndir's extension.
PATCH is applied to the resource as read and the result is written as a PUT would be.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Connection, delete, false, func, insert, select, true

from learndir.core import departments as departments_repo
from learndir.core.account_settings import AccountSettings, account_settings
from learndir.core.actor import Actor
from learndir.core.changes import Change, EventType, TargetKind, record
from learndir.core.common import as_utc, as_uuid_text, fold
from learndir.core.departments import Department
from learndir.core.errors import DomainError, denied, invalid, not_found
from learndir.core.groups import account_groups
from learndir.core.passwords import hash_password
from learndir.core.roles import Permission
from learndir.core.scim import filters
from learndir.core.scim.attributes import canonical_document
from learndir.core.scim.patch import apply_patch
from learndir.core.scim.resources import (
    Page,
    Query,
    Stored,
    ids_with_external_id,
    require_version,
    shown,
    sorted_by,
    store_document,
    stored_documents,
    timestamp,
    with_version,
)
from learndir.core.scim.schemas import (
    ENTERPRISE_URN,
    LEARNDIR_URN,
    USER_URN,
    UserSchemas,
    user_schemas,
)
from learndir.core.users.changes import (
    ACTIVE,
    INACTIVE,
    change_status_in,
    change_subordination_in,
    delete_user,
    set_password_hash_in,
    update_user_in,
)
from learndir.core.users.commands import (
    AddUser,
    ApiGeneration,
    ChangeSubordination,
    Subordination,
    UpdateUser,
)
from learndir.core.users.keys import users_by_key
from learndir.core.users.queries import UserView, views_of, views_of_rows, visible_users
from learndir.core.users.service import add_user_in, check_password_policy
from learndir.db.engine import Database
from learndir.db.schema import departments, scim_user_emails, scim_users, users

# The department SCIM puts users in when a provider names none, and under which it creates
# the departments a provider names that the account does not have.
PROVISIONING_CODE = "scim-provisioned"
PROVISIONING_NAME = "Provisioned users"
_BATCH = 1000
# Kept with the stored document: the status the provider last left the user in (see _render).
_STATUS_KEY = "$status"
_SQL_SORTS = {
    "username": users.c.login_key,
    "id": users.c.id,
    "meta.created": users.c.added_at,
    "name.givenname": users.c.first_name,
    "name.familyname": users.c.last_name,
    "title": users.c.job_title,
}


@dataclass
class _Context:
    conn: Connection
    actor: Actor
    settings: AccountSettings
    schemas: UserSchemas
    base_url: str
    _departments: dict[str, Department] = field(default_factory=dict)
    _groups: dict[str, tuple[str, bool]] | None = None
    # The provisioning department's id once looked up ("" when the account has none yet).
    _provisioning: str | None = None

    def location(self, user_id: str) -> str:
        return f"{self.base_url}/Users/{user_id}"

    def department(self, department_id: str) -> Department:
        found = self._departments.get(department_id)
        if found is None:
            self._departments.update(
                departments_repo.get_many(self.conn, self.actor.account_id, [department_id])
            )
            found = self._departments[department_id]
        return found

    def groups(self) -> dict[str, tuple[str, bool]]:
        if self._groups is None:
            self._groups = {
                g.id: (g.name, g.is_smart) for g in account_groups(self.conn, self.actor.account_id)
            }
        return self._groups


def _context(conn: Connection, actor: Actor, base_url: str) -> tuple[_Context, Any]:
    base, settings = visible_users(conn, actor)
    return _Context(conn, actor, settings, user_schemas(settings.fields), base_url), base


# ---- from a document to learndir's values ---------------------------------------------------


def _chosen(items: Any) -> int | None:
    """The element of a multi-valued attribute learndir holds: the primary one, else the
    work one, else the first."""
    if not isinstance(items, list) or not items:
        return None
    for key, wanted in (("primary", True), ("type", "work")):
        for i, element in enumerate(items):
            if not isinstance(element, dict) or not element.get("value"):
                continue
            value = element.get(key)
            if value is wanted or (isinstance(value, str) and value.casefold() == wanted):
                return i
    for i, element in enumerate(items):
        if isinstance(element, dict) and element.get("value"):
            return i
    return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


@dataclass
class _Wanted:
    """learndir's values as a SCIM document gives them ("" for none)."""

    login: str
    email: str
    first_name: str
    last_name: str
    job_title: str
    phone: str
    active: bool | None
    department: str
    manager: str
    custom: dict[str, str]
    extra_emails: list[str]


def _wanted(doc: dict[str, Any], schemas: UserSchemas) -> _Wanted:
    emails = doc.get("emails") or []
    phones = doc.get("phoneNumbers") or []
    email_at = _chosen(emails)
    phone_at = _chosen(phones)
    name = doc.get("name") or {}
    enterprise = doc.get(ENTERPRISE_URN) or {}
    extension = doc.get(LEARNDIR_URN) or {}
    custom = {f.name: _text(extension.get(attr)) for attr, f in schemas.custom.items()}
    if schemas.employee_number is not None:
        custom[schemas.employee_number.name] = _text(enterprise.get("employeeNumber"))
    manager = enterprise.get("manager") or {}
    active = doc.get("active")
    return _Wanted(
        login=_text(doc.get("userName")).strip(),
        email=_text(emails[email_at].get("value")).strip() if email_at is not None else "",
        first_name=_text(name.get("givenName")).strip(),
        last_name=_text(name.get("familyName")).strip(),
        job_title=_text(doc.get("title")).strip(),
        phone=_text(phones[phone_at].get("value")).strip() if phone_at is not None else "",
        active=active if isinstance(active, bool) else None,
        department=_text(enterprise.get("department")).strip(),
        manager=_text(manager.get("value")).strip() if isinstance(manager, dict) else "",
        custom=custom,
        extra_emails=[
            fold(_text(e.get("value")))
            for i, e in enumerate(emails)
            if i != email_at and isinstance(e, dict) and _text(e.get("value")).strip()
        ],
    )


def _same(field_value: str | None, wanted: str, compare: Callable[[str], str] = str.strip) -> bool:
    return compare(field_value or "") == compare(wanted)


# ---- from learndir's values to a document ---------------------------------------------------


def _set_chosen(doc: dict[str, Any], key: str, value: str) -> None:
    items = doc.get(key) or []
    at = _chosen(items)
    if not value:
        if at is not None:
            del items[at]
    elif at is not None:
        items[at]["value"] = value
    else:
        items.append({"value": value, "type": "work", "primary": True})
    if items:
        doc[key] = items
    else:
        doc.pop(key, None)


def _set(doc: dict[str, Any], path: Sequence[str], value: str | dict[str, Any] | None) -> None:
    holder = doc
    for part in path[:-1]:
        holder = holder.setdefault(part, {})
    if value:
        holder[path[-1]] = value
    else:
        holder.pop(path[-1], None)
    if len(path) > 1 and not holder:
        doc.pop(path[0], None)


def _render(ctx: _Context, view: UserView, stored: Stored | None) -> dict[str, Any]:
    # Each stored document is parsed for this one read: changed in place.
    doc = stored.document if stored else {}
    wanted = _wanted(doc, ctx.schemas)
    values = view.fields
    if not _same(values.get("login"), wanted.login, fold):
        doc["userName"] = values.get("login", "")
    if not _same(values.get("email"), wanted.email, fold):
        _set_chosen(doc, "emails", values.get("email", ""))
    if not _same(values.get("phone"), wanted.phone):
        _set_chosen(doc, "phoneNumbers", values.get("phone", ""))
    for key, column in (("givenName", "first_name"), ("familyName", "last_name")):
        if not _same(values.get(column), getattr(wanted, column)):
            _set(doc, ("name", key), values.get(column))
    if not _same(values.get("job_title"), wanted.job_title):
        _set(doc, ("title",), values.get("job_title"))
    for attr, profile_field in ctx.schemas.custom.items():
        if not _same(values.get(profile_field.name), wanted.custom[profile_field.name]):
            _set(doc, (LEARNDIR_URN, attr), values.get(profile_field.name))
    number = ctx.schemas.employee_number
    if number is not None and not _same(values.get(number.name), wanted.custom[number.name]):
        _set(doc, (ENTERPRISE_URN, "employeeNumber"), values.get(number.name))
    # `active` reads the status; a provider that removed it reads it unset until the status
    # is changed elsewhere.
    recorded = doc.pop(_STATUS_KEY, None)
    if stored is None or wanted.active is not None or recorded != view.status:
        doc["active"] = view.status == ACTIVE
    # The department reads as the provider wrote it while the user is there; a provider that
    # never sent one (Okta's default mapping) does not manage it and reads none.
    department = ctx.department(view.department_id) if stored is None or wanted.department else None
    if department is not None and not _names_department(wanted.department, department):
        provisioning = _provisioning_department(ctx, create=False)
        shown_name = None if provisioning and provisioning.id == department.id else department.name
        _set(doc, (ENTERPRISE_URN, "department"), shown_name)
    supervisor = view.subordination.supervisor_id if view.subordination.type == "manual" else None
    if (supervisor or "") != wanted.manager:
        manager = {"value": supervisor, "$ref": ctx.location(supervisor)} if supervisor else None
        _set(doc, (ENTERPRISE_URN, "manager"), manager)
    groups = ctx.groups() if view.groups else {}
    member_of = [
        {
            "value": g,
            "$ref": f"{ctx.base_url}/Groups/{g}",
            "display": groups[g][0],
            "type": "indirect" if groups[g][1] else "direct",
        }
        for g in view.groups
        if g in groups
    ]
    if member_of:
        doc["groups"] = member_of
    else:
        doc.pop("groups", None)
    doc["schemas"] = [USER_URN] + [u for u in (ENTERPRISE_URN, LEARNDIR_URN) if doc.get(u)]
    doc["id"] = view.id
    doc["meta"] = {
        "resourceType": "User",
        "created": timestamp(view.added_at),
        "lastModified": timestamp(
            max(as_utc(view.added_at), as_utc(stored.updated_at if stored else view.added_at))
        ),
        "location": ctx.location(view.id),
    }
    for name in ctx.schemas.never_returned:
        doc.pop(name, None)
    return with_version(doc)


def _names_department(text: str, department: Department) -> bool:
    return bool(text) and fold(text) in (fold(department.code or ""), fold(department.name))


def _render_many(ctx: _Context, views: Sequence[UserView]) -> list[dict[str, Any]]:
    stored = stored_documents(ctx.conn, scim_users, "user_id", [v.id for v in views])
    # The departments of the users whose department is shown (see _render), in one query.
    missing = {
        v.department_id
        for v in views
        if v.id not in stored or (stored[v.id].document.get(ENTERPRISE_URN) or {}).get("department")
    } - set(ctx._departments)
    if missing:
        ctx._departments.update(
            departments_repo.get_many(ctx.conn, ctx.actor.account_id, list(missing))
        )
    return [_render(ctx, v, stored.get(v.id)) for v in views]


# ---- reads ----------------------------------------------------------------------------------


def _views(ctx: _Context, base: Any, condition: ColumnElement[bool] | None) -> list[UserView]:
    statement = base if condition is None else base.where(condition)
    return views_of_rows(ctx.conn, ctx.settings, ctx.conn.execute(statement).all())


def _read(ctx: _Context, base: Any, user_id: str) -> dict[str, Any]:
    return _loaded(ctx, base, user_id)[0]


def get_user(db: Database, actor: Actor, user_id: str, base_url: str) -> dict[str, Any]:
    with db.read() as conn:
        ctx, base = _context(conn, actor, base_url)
        return _read(ctx, base, user_id)


def _leaf(ctx: _Context, node: filters.Node) -> tuple[ColumnElement[bool] | None, bool]:
    """A filter term as SQL on indexed columns: lookups by userName, externalId, e-mail and id
    are turned into ids on their own indexes first, so they never depend on statistics."""
    conn, account_id = ctx.conn, ctx.actor.account_id
    if isinstance(node, filters.ValuePath):
        # emails[type eq "work" and value eq "x"] (Entra's matching filter): the users holding
        # the address, checked against the whole filter as read.
        if node.attr.urn is None and node.attr.name == "emails":
            for term in _conjuncts(node.filter):
                if isinstance(term, filters.Compare) and term.path.sub == "value":
                    condition, _ = _leaf(ctx, filters.Compare(term.path, term.op, term.value))
                    if condition is not None:
                        return condition, False
        return None, False
    if not isinstance(node, filters.Compare) or node.op != "eq":
        return None, False
    attr, value = node.path, node.value
    if attr.urn is not None or not isinstance(value, str):
        return None, False
    if attr.name == "id" and attr.sub is None:
        canonical = as_uuid_text(value)
        return (users.c.id == canonical if canonical else false()), True
    if attr.name == "userName" and attr.sub is None:
        ids = users_by_key(conn, account_id, "login_key", [fold(value)])
        return (users.c.id.in_(ids) if ids else false()), True
    if attr.name == "externalId" and attr.sub is None:
        ids = ids_with_external_id(conn, scim_users, "user_id", account_id, value)
        return (users.c.id.in_(ids) if ids else false()), True
    if attr.name == "emails" and attr.sub in (None, "value"):
        ids = users_by_key(conn, account_id, "email_key", [fold(value)])
        ids += conn.execute(
            select(scim_user_emails.c.user_id).where(
                scim_user_emails.c.account_id == account_id,
                scim_user_emails.c.value_key == fold(value),
            )
        ).scalars()
        return (users.c.id.in_(ids) if ids else false()), False
    return None, False


def _conjuncts(node: filters.Node) -> list[filters.Node]:
    if isinstance(node, filters.And):
        return _conjuncts(node.a) + _conjuncts(node.b)
    return [node]


def list_users(db: Database, actor: Actor, query: Query, base_url: str) -> Page:
    with db.read() as conn:
        ctx, base = _context(conn, actor, base_url)
        tree = ctx.schemas.tree
        node = filters.parse_filter(query.filter, tree) if query.filter else None
        condition, exact = filters.to_sql(node, lambda n: _leaf(ctx, n)) if node else (None, True)
        sort_column = _SQL_SORTS.get(query.sort_by.casefold()) if query.sort_by else None
        if exact and (query.sort_by is None or sort_column is not None):
            return _page_in_sql(ctx, base, condition, sort_column, query)
        return _page_in_python(ctx, base, condition, node, query)


class _Anchors:
    """Where page-throughs left off: a walk (account, actor, filter) and the startIndex of its
    next page -> the id of the last user it was given. Okta imports by stepping startIndex; the
    next page is read from the index after that id instead of skipping every user before it
    again. It is what OFFSET gives while nothing changes, and better when something does: a
    user deleted or added behind the walk neither skips nor repeats anyone. Kept per process,
    for a few minutes; a page not found here is read by OFFSET."""

    def __init__(self, size: int = 1024, seconds: float = 300.0) -> None:
        self._size = size
        self._seconds = seconds
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[Any, int], tuple[str, float]] = OrderedDict()

    def get(self, walk: Any, start_index: int) -> str | None:
        with self._lock:
            found = self._items.pop((walk, start_index), None)
        if found is None or found[1] < time.monotonic():
            return None
        return found[0]

    def put(self, walk: Any, start_index: int, last_id: str) -> None:
        with self._lock:
            self._items[(walk, start_index)] = (last_id, time.monotonic() + self._seconds)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


_anchors = _Anchors()


@contextlib.contextmanager
def _ordered_by_index(conn: Connection) -> Iterator[None]:
    """On PostgreSQL, a page of an account read in index order rather than by sorting it all:
    without statistics (a new or fast-growing account) the planner takes the account for a
    handful of rows and sorts all of them (measured at 50,000 users: 55 ms a page, against 13
    ms reading the index in order). Reads run in autocommit, so the setting is the session's,
    and is reset before the connection is used again."""
    if conn.dialect.name != "postgresql":
        yield
        return
    conn.exec_driver_sql("SET enable_sort = off")
    try:
        yield
    finally:
        conn.exec_driver_sql("RESET enable_sort")


def _page_in_sql(
    ctx: _Context,
    base: Any,
    condition: ColumnElement[bool] | None,
    sort_column: Any,
    query: Query,
) -> Page:
    statement = base.where(condition if condition is not None else true())
    order = [users.c.id]
    if sort_column is not None:
        order.insert(0, sort_column.desc() if query.descending else sort_column)
    # The page's ids first, then their users by primary key: skipping `startIndex` users
    # reads only the (account_id, id) index, not every skipped user's row; and where the
    # previous page of the same walk ended is known, not even that.
    walk = (ctx.actor.account_id, ctx.actor.user_id, query.filter) if sort_column is None else None
    after = _anchors.get(walk, query.start_index) if walk else None
    chosen = statement.with_only_columns(users.c.id).order_by(*order).limit(query.count)
    if after is not None:
        chosen = chosen.where(users.c.id > after)
    else:
        chosen = chosen.offset(query.start_index - 1)
    # A filter SQL answers exactly is a lookup on a unique index: a handful of users.
    with _ordered_by_index(ctx.conn) if condition is None else contextlib.nullcontext():
        ids = list(ctx.conn.execute(chosen).scalars())
    if walk and ids:
        _anchors.put(walk, query.start_index + len(ids), ids[-1])
    if query.start_index == 1 and len(ids) < query.count:
        # The first page holds every match (a lookup): no need to count them again.
        total = len(ids)
    else:
        total = int(ctx.conn.execute(statement.with_only_columns(func.count())).scalar_one())
    found = {v.id: v for v in views_of(ctx.conn, ctx.actor.account, ids, with_roles=False)}
    views = [found[i] for i in ids if i in found]
    resources = [shown(d, ctx.schemas.tree, query) for d in _render_many(ctx, views)]
    return Page(resources, total, query.start_index)


def _page_in_python(
    ctx: _Context,
    base: Any,
    condition: ColumnElement[bool] | None,
    node: filters.Node | None,
    query: Query,
) -> Page:
    """A filter or sort SQL cannot answer exactly: the candidates SQL narrows to are read a
    batch at a time, in id order, and the filter decides on each resource as read."""
    statement = base.where(condition) if condition is not None else base
    found: list[dict[str, Any]] = []
    after = ""
    while True:
        rows = ctx.conn.execute(
            statement.where(users.c.id > after).order_by(users.c.id).limit(_BATCH)
        ).all()
        docs = _render_many(ctx, views_of_rows(ctx.conn, ctx.settings, rows))
        found.extend(d for d in docs if node is None or filters.matches(node, d))
        if len(rows) < _BATCH:
            break
        after = rows[-1].id
    if query.sort_by:
        found = sorted_by(found, ctx.schemas.tree, query)
    start = query.start_index - 1
    chosen = found[start : start + query.count]
    return Page([shown(d, ctx.schemas.tree, query) for d in chosen], len(found), query.start_index)


# ---- writes ---------------------------------------------------------------------------------


def requested_password(body: Any) -> str | None:
    """The password a POST, PUT or PATCH body sets, if any: hashed before the write begins."""
    if not isinstance(body, dict):
        return None
    for key, value in body.items():
        if key.casefold() == "password" and isinstance(value, str):
            return value
        if key.casefold() == "operations" and isinstance(value, list):
            for op in value:
                if not isinstance(op, dict):
                    continue
                path = str(op.get("path") or "").casefold()
                given = op.get("value")
                if path.endswith("password") and isinstance(given, str):
                    return given
                if not path and isinstance(given, dict):
                    found = requested_password(given)
                    if found is not None:
                        return found
    return None


def hash_requested_password(actor: Actor, body: Any) -> str | None:
    """The Argon2id hash of the password `body` sets, under the account's policy; called
    before the write transaction begins (hashing takes tens of milliseconds)."""
    password = requested_password(body)
    if not password:
        return None
    check_password_policy(password, actor.account.password_min_length)
    return hash_password(password)


def _document_of(body: Any, ctx: _Context) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid("body", "must be a JSON object")
    doc = canonical_document(body, ctx.schemas.tree)
    doc.pop("password", None)
    if not _text(doc.get("userName")).strip():
        raise invalid("userName", "is required")
    return doc


def _provisioning_department(ctx: _Context, *, create: bool) -> Department | None:
    """Where users go whom a provider gives no department: for an actor adding users
    account-wide, the account's provisioning department (made on first need); for a
    department administrator, the top of the first subtree it manages."""
    scope = ctx.actor.scope(Permission.ADD_USERS)
    if not scope.account_wide:
        if not scope.paths:
            return None
        top = scope.paths[0].rstrip("/").rsplit("/", 1)[-1]
        return ctx.department(top)
    if ctx._provisioning is None:
        ctx._provisioning = (
            ctx.conn.execute(
                select(departments.c.id).where(
                    departments.c.account_id == ctx.actor.account_id,
                    departments.c.code_key == fold(PROVISIONING_CODE),
                )
            ).scalar()
            or ""
        )
    if ctx._provisioning:
        return ctx.department(ctx._provisioning)
    if not create:
        return None
    root = departments_repo.root(ctx.conn, ctx.actor.account_id)
    made = _new_department(ctx, root, PROVISIONING_NAME, PROVISIONING_CODE)
    ctx._provisioning = made.id
    return made


def _new_department(ctx: _Context, parent: Department, name: str, code: str | None) -> Department:
    scope = ctx.actor.scope(Permission.MANAGE_DEPARTMENTS)
    if not scope.covers(parent.path):
        raise denied(
            f"department {name!r} does not exist and your roles cannot create it under "
            f"{parent.name!r}",
            "department",
        )
    try:
        dept_id = departments_repo.insert_department(
            ctx.conn, ctx.actor.account_id, parent, name, code
        )
    except DomainError:
        # Made meanwhile by a concurrent request (its code is unique).
        dept_id = ctx.conn.execute(
            select(departments.c.id).where(
                departments.c.account_id == ctx.actor.account_id,
                departments.c.code_key == fold(code or ""),
            )
        ).scalar_one()
        return ctx.department(dept_id)
    dept = ctx.department(dept_id)
    record(
        ctx.conn,
        ctx.actor.account,
        [
            Change(
                EventType.DEPARTMENT_CREATED,
                TargetKind.DEPARTMENT,
                dept.id,
                ctx.actor.user_id,
                after=departments_repo.snapshot(dept),
            )
        ],
    )
    return dept


def _department_named(ctx: _Context, text: str) -> Department:
    if not text:
        found = _provisioning_department(ctx, create=True)
        if found is None:
            raise denied("your roles do not allow adding users", "department")
        return found
    key = fold(text)
    row = ctx.conn.execute(
        select(departments.c.id)
        .where(
            departments.c.account_id == ctx.actor.account_id,
            (departments.c.code_key == key) | (func.lower(departments.c.name) == text.lower()),
        )
        .order_by((departments.c.code_key == key).desc(), func.length(departments.c.path))
        .limit(1)
    ).scalar()
    if row is not None:
        return ctx.department(row)
    parent = _provisioning_department(ctx, create=True)
    if parent is None:
        raise denied("your roles do not allow adding users", "department")
    return _new_department(ctx, parent, text, None)


def _field_values(wanted: _Wanted, settings: AccountSettings) -> dict[str, str | None]:
    values: dict[str, str | None] = {
        "first_name": wanted.first_name,
        "last_name": wanted.last_name,
        "job_title": wanted.job_title,
        "phone": wanted.phone,
    }
    values.update(wanted.custom)
    return values


_PARAMETERS = {
    "login": "userName",
    "email": "emails",
    "first_name": "name.givenName",
    "last_name": "name.familyName",
    "job_title": "title",
    "phone": "phoneNumbers",
    "departmentId": "department",
}


def _scim_parameter(ctx: _Context, error: DomainError) -> DomainError:
    """The core names learndir's parameters; a SCIM client reads its own attribute names."""
    parameter = error.parameter or ""
    name = parameter.removeprefix("fields.")
    renamed = _PARAMETERS.get(name)
    if renamed is None:
        for attr, profile_field in ctx.schemas.custom.items():
            if fold(profile_field.name) == fold(name):
                renamed = f"{LEARNDIR_URN}:{attr}"
        number = ctx.schemas.employee_number
        if number is not None and fold(number.name) == fold(name):
            renamed = f"{ENTERPRISE_URN}:employeeNumber"
    if renamed is not None:
        error.parameter = renamed
    return error


def create_user(
    db: Database,
    actor: Actor,
    body: Any,
    base_url: str,
    password_hash: str | None,
    *,
    invite: bool = False,
) -> dict[str, Any]:
    """A new user; with `invite` (the token's option) an active user with an e-mail address
    is sent the account's invitation, through the outbox like every invitation."""
    with db.write() as conn:
        ctx, base = _context(conn, actor, base_url)
        doc = _document_of(body, ctx)
        wanted = _wanted(doc, ctx.schemas)
        try:
            department = _department_named(ctx, wanted.department)
            cmd = AddUser(
                login=wanted.login,
                email=wanted.email or None,
                department_id=department.id,
                fields={k: v for k, v in _field_values(wanted, ctx.settings).items() if v},
            )
            # Added inactive, a user takes no seat (see add_user_in).
            status = INACTIVE if wanted.active is False else ACTIVE
            if invite and status == ACTIVE and cmd.email:
                cmd.send_login_email = True
            user_id = add_user_in(
                conn, actor, cmd, ApiGeneration.REST, password_hash, status=status
            )
            if wanted.manager:
                _set_manager(conn, actor, user_id, wanted.manager)
        except DomainError as exc:
            raise _scim_parameter(ctx, exc) from None
        _store(ctx, user_id, doc, wanted, status, exists=False)
        return _read(ctx, base, user_id)


def _set_manager(conn: Connection, actor: Actor, user_id: str, manager: str) -> None:
    subordination = (
        Subordination(subordination_type="manual", supervisor_id=manager)
        if manager
        else Subordination(subordination_type="inherit")
    )
    try:
        change_subordination_in(
            conn, actor, user_id, ChangeSubordination(subordination=subordination)
        )
    except DomainError as exc:
        if exc.parameter and exc.parameter.startswith("subordination"):
            exc.parameter = f"{ENTERPRISE_URN}:manager"
        raise


def _store(
    ctx: _Context, user_id: str, doc: dict[str, Any], wanted: _Wanted, status: int, exists: bool
) -> None:
    kept = {k: v for k, v in doc.items() if k not in ("id", "meta", "groups", "password")}
    kept[_STATUS_KEY] = status
    store_document(
        ctx.conn, scim_users, "user_id", user_id, ctx.actor.account_id, kept, exists=exists
    )
    ctx.conn.execute(delete(scim_user_emails).where(scim_user_emails.c.user_id == user_id))
    extra = sorted(set(wanted.extra_emails))
    if extra:
        ctx.conn.execute(
            insert(scim_user_emails),
            [
                {"user_id": user_id, "account_id": ctx.actor.account_id, "value_key": e}
                for e in extra
            ],
        )


def _replace(
    ctx: _Context,
    base: Any,
    current: dict[str, Any],
    view: UserView,
    doc: dict[str, Any],
    password_hash: str | None,
) -> dict[str, Any]:
    wanted = _wanted(doc, ctx.schemas)
    conn, actor = ctx.conn, ctx.actor
    values = view.fields
    try:
        changed: dict[str, str | None] = {}
        for name, value in _field_values(wanted, ctx.settings).items():
            if not _same(values.get(name), value or ""):
                changed[name] = value or ""
        cmd = UpdateUser(fields=changed)
        if values.get("login", "") != wanted.login:
            cmd.login = wanted.login
        if not _same(values.get("email"), wanted.email, fold):
            cmd.email = wanted.email
        current_dept = ctx.department(view.department_id)
        if wanted.department and not _names_department(wanted.department, current_dept):
            cmd.department_id = _department_named(ctx, wanted.department).id
        if cmd.fields or cmd.login is not None or cmd.email is not None or cmd.department_id:
            update_user_in(conn, actor, view.id, cmd, ApiGeneration.REST)
        status = view.status
        if wanted.active is True and view.status != ACTIVE:
            status = ACTIVE
            change_status_in(conn, actor, [view.id], ACTIVE, "active")
        elif wanted.active is False and view.status == ACTIVE:
            status = INACTIVE
            change_status_in(conn, actor, [view.id], INACTIVE, "active")
        supervisor = (
            view.subordination.supervisor_id if view.subordination.type == "manual" else None
        )
        if wanted.manager != (supervisor or ""):
            _set_manager(conn, actor, view.id, wanted.manager)
        if password_hash is not None:
            set_password_hash_in(conn, actor, view.id, password_hash)
    except DomainError as exc:
        raise _scim_parameter(ctx, exc) from None
    _store(ctx, view.id, doc, wanted, status, exists=True)
    return _read(ctx, base, view.id)


def _loaded(ctx: _Context, base: Any, user_id: str) -> tuple[dict[str, Any], UserView]:
    """A user the actor may see, as read and as learndir holds it; 404 otherwise."""
    canonical = as_uuid_text(user_id)
    views = _views(ctx, base, users.c.id == canonical) if canonical else []
    if not views:
        raise not_found("user", "id")
    return _render_many(ctx, views)[0], views[0]


def change_user(
    db: Database,
    actor: Actor,
    user_id: str,
    body: Any,
    base_url: str,
    password_hash: str | None,
    if_match: str | None = None,
    *,
    patch: bool,
) -> dict[str, Any]:
    """PUT (`body` is the whole new user) or PATCH (`body` holds operations, applied to the
    user as read): either way the result is written as one replacement."""
    with db.write() as conn:
        ctx, base = _context(conn, actor, base_url)
        current, view = _loaded(ctx, base, user_id)
        require_version(current, if_match)
        if patch:
            if not isinstance(body, dict):
                raise invalid("body", "must be a JSON object")
            body = apply_patch(current, body, ctx.schemas.tree)
        return _replace(ctx, base, current, view, _document_of(body, ctx), password_hash)


def remove_user(
    db: Database, actor: Actor, user_id: str, base_url: str, if_match: str | None = None
) -> None:
    with db.write() as conn:
        ctx, base = _context(conn, actor, base_url)
        current, view = _loaded(ctx, base, user_id)
        require_version(current, if_match)
        delete_user(db, actor, view.id)


def user_schemas_of(db: Database, actor: Actor) -> UserSchemas:
    """The User schemas of the actor's account (what discovery publishes)."""
    with db.read() as conn:
        return user_schemas(account_settings(conn, actor.account).fields)
