"""SCIM Groups (RFC 7643 §4.2): learndir's groups, changed through the core's group functions.
Smart groups are listed with their members, read-only: their members follow their rules.
Members are users; what a provider sends about a member beyond its id ($ref, display, type)
is kept as sent."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select

from learndir.core.actor import Actor
from learndir.core.errors import DomainError, ErrorCode, invalid
from learndir.core.groups import (
    Group,
    account_groups,
    create_group_in,
    delete_group_in,
    find_group,
    rename_group_in,
    require_not_learner,
    set_members_in,
)
from learndir.core.roles import Permission
from learndir.core.scim import filters
from learndir.core.scim.attributes import canonical_document
from learndir.core.scim.patch import apply_patch
from learndir.core.scim.resources import (
    Page,
    Query,
    Stored,
    forget_document,
    require_version,
    shown,
    sorted_by,
    store_document,
    stored_documents,
    timestamp,
    with_version,
)
from learndir.core.scim.schemas import GROUP_URN, group_schema
from learndir.db.engine import Database
from learndir.db.schema import departments, group_members, scim_groups, users


def _visible_groups(conn: Connection, actor: Actor) -> list[Group]:
    require_not_learner(actor)
    return account_groups(conn, actor.account_id)


def _members(conn: Connection, actor: Actor, group_ids: Sequence[str]) -> dict[str, list[str]]:
    """Each group's members the actor may see, in id order."""
    scope = actor.visible_scope()
    result: dict[str, list[str]] = {g: [] for g in group_ids}
    if not group_ids:
        return result
    rows = conn.execute(
        select(group_members.c.group_id, group_members.c.user_id, departments.c.path)
        .join(users, users.c.id == group_members.c.user_id)
        .join(departments, departments.c.id == users.c.department_id)
        .where(group_members.c.group_id.in_(list(group_ids)))
        .order_by(group_members.c.user_id)
    )
    for group_id, user_id, path in rows:
        if scope.covers(path):
            result[group_id].append(user_id)
    return result


def _render(
    group: Group, members: list[str] | None, stored: Stored | None, base_url: str
) -> dict[str, Any]:
    doc = copy.deepcopy(stored.document) if stored else {}
    doc["displayName"] = group.name
    if members is not None:
        sent = {m.get("value"): m for m in doc.get("members") or [] if isinstance(m, dict)}
        listed = [
            sent.get(user_id)
            or {"value": user_id, "$ref": f"{base_url}/Users/{user_id}", "type": "User"}
            for user_id in members
        ]
        if listed:
            doc["members"] = listed
        else:
            doc.pop("members", None)
    else:
        doc.pop("members", None)
    doc["schemas"] = [GROUP_URN]
    doc["id"] = group.id
    meta: dict[str, Any] = {"resourceType": "Group", "location": f"{base_url}/Groups/{group.id}"}
    if stored is not None:
        meta["lastModified"] = timestamp(stored.updated_at)
    doc["meta"] = meta
    return with_version(doc)


def _find(conn: Connection, actor: Actor, group_id: str) -> Group:
    require_not_learner(actor)
    return find_group(conn, actor.account_id, group_id)


def _read(conn: Connection, actor: Actor, group: Group, base_url: str) -> dict[str, Any]:
    stored = stored_documents(conn, scim_groups, "group_id", [group.id]).get(group.id)
    members = _members(conn, actor, [group.id])[group.id]
    return _render(group, members, stored, base_url)


def get_group(db: Database, actor: Actor, group_id: str, base_url: str) -> dict[str, Any]:
    with db.read() as conn:
        return _read(conn, actor, _find(conn, actor, group_id), base_url)


def _wants_members(query: Query) -> bool:
    """Members are read only when the answer or the filter needs them (Entra reads groups with
    excludedAttributes=members)."""
    mentioned = (query.filter or "").casefold()
    if "members" in mentioned:
        return True
    if query.attributes:
        return any(a.casefold().split(".")[0].endswith("members") for a in query.attributes)
    return not any(a.casefold().endswith("members") for a in query.excluded)


def list_groups(db: Database, actor: Actor, query: Query, base_url: str) -> Page:
    schema = group_schema()
    node = filters.parse_filter(query.filter, schema) if query.filter else None
    with db.read() as conn:
        groups = sorted(_visible_groups(conn, actor), key=lambda g: g.id)
        ids = [g.id for g in groups]
        stored = stored_documents(conn, scim_groups, "group_id", ids)
        members = _members(conn, actor, ids) if _wants_members(query) else {}
        docs = [_render(g, members.get(g.id), stored.get(g.id), base_url) for g in groups]
    if node is not None:
        docs = [d for d in docs if filters.matches(node, d)]
    if query.sort_by:
        docs = sorted_by(docs, schema, query)
    start = query.start_index - 1
    chosen = docs[start : start + query.count]
    return Page([shown(d, schema, query) for d in chosen], len(docs), query.start_index)


def _document_of(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid("body", "must be a JSON object")
    doc = canonical_document(body, group_schema())
    name = doc.get("displayName")
    if not isinstance(name, str) or not name.strip():
        raise invalid("displayName", "is required")
    return doc


def _member_ids(doc: dict[str, Any]) -> list[str]:
    ids: list[str] = []
    for member in doc.get("members") or []:
        kind = str(member.get("type") or "User")
        if kind.casefold() == "group":
            raise DomainError(
                ErrorCode.INVALID_VALUE,
                "a learndir group holds users, not other groups",
                parameter="members",
            )
        value = member.get("value")
        if not isinstance(value, str) or not value.strip():
            raise invalid("members", "every member needs its user id as value")
        ids.append(value.strip())
    return ids


def _manage(actor: Actor) -> None:
    if actor.scope(Permission.MANAGE_GROUPS).is_empty:
        raise DomainError(ErrorCode.PERMISSION_DENIED, "your roles cannot manage groups")


def _kept(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in ("id", "meta", "displayName")}


def create_group(db: Database, actor: Actor, body: Any, base_url: str) -> dict[str, Any]:
    with db.write() as conn:
        doc = _document_of(body)
        members = _member_ids(doc)
        try:
            group_id = create_group_in(conn, actor, doc["displayName"], members)
        except DomainError as exc:
            raise _named(exc) from None
        store_document(
            conn, scim_groups, "group_id", group_id, actor.account_id, _kept(doc), exists=False
        )
        return _read(conn, actor, _find(conn, actor, group_id), base_url)


def _named(error: DomainError) -> DomainError:
    if error.parameter in ("userIds", "name"):
        error.parameter = "members" if error.parameter == "userIds" else "displayName"
    return error


def _read_only(group: Group) -> DomainError:
    return DomainError(
        ErrorCode.READ_ONLY,
        f"{group.name!r} is a smart group: its members follow its rules and it is read-only",
        parameter="members",
    )


def _replace(
    conn: Connection,
    actor: Actor,
    group: Group,
    current: dict[str, Any],
    doc: dict[str, Any],
    base_url: str,
) -> dict[str, Any]:
    members = _member_ids(doc)
    current_members = [m["value"] for m in current.get("members") or []]
    renamed = doc["displayName"] != group.name
    regrouped = sorted(members) != sorted(current_members)
    if group.is_smart and (renamed or regrouped):
        raise _read_only(group)
    try:
        if renamed:
            rename_group_in(conn, actor, group.id, doc["displayName"])
        if regrouped:
            set_members_in(conn, actor, group.id, members)
    except DomainError as exc:
        raise _named(exc) from None
    if not group.is_smart:
        store_document(
            conn, scim_groups, "group_id", group.id, actor.account_id, _kept(doc), exists=True
        )
    return _read(conn, actor, _find(conn, actor, group.id), base_url)


def change_group(
    db: Database,
    actor: Actor,
    group_id: str,
    body: Any,
    base_url: str,
    if_match: str | None = None,
    *,
    patch: bool,
) -> dict[str, Any]:
    """PUT (`body` is the whole new group) or PATCH (operations applied to the group as read),
    written as one replacement."""
    with db.write() as conn:
        _manage(actor)
        group = _find(conn, actor, group_id)
        current = _read(conn, actor, group, base_url)
        require_version(current, if_match)
        if patch:
            if not isinstance(body, dict):
                raise invalid("body", "must be a JSON object")
            body = apply_patch(current, body, group_schema())
        return _replace(conn, actor, group, current, _document_of(body), base_url)


def remove_group(
    db: Database, actor: Actor, group_id: str, base_url: str, if_match: str | None = None
) -> None:
    with db.write() as conn:
        _manage(actor)
        group = _find(conn, actor, group_id)
        if group.is_smart:
            raise _read_only(group)
        require_version(_read(conn, actor, group, base_url), if_match)
        delete_group_in(conn, actor, group.id)
        forget_document(conn, scim_groups, "group_id", group.id)
