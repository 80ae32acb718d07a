"""User groups of an account: plain groups whose members are set by hand, and smart groups
whose members follow their rules (core/smart_groups.py)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update

from learndir.core import smart_groups
from learndir.core.account_settings import account_settings, settings_changed
from learndir.core.actor import Actor, Scope
from learndir.core.changes import Change, EventType, TargetKind, record
from learndir.core.common import as_uuid_text, new_id
from learndir.core.departments import within_scope
from learndir.core.errors import DomainError, ErrorCode, denied, invalid
from learndir.core.paging import PageRequest, encode_page_token, page_request, split_page
from learndir.core.roles import Permission
from learndir.core.users.keys import rows_by_keys
from learndir.db.engine import Database
from learndir.db.schema import departments, group_members, groups, users

if TYPE_CHECKING:
    from learndir.core.users.queries import UserView

MAX_NAME_LENGTH = 255
_CHUNK = 1000

_SELECT_KINDS = select(groups.c.id, groups.c.is_smart).where(
    groups.c.account_id == bindparam("account_id"),
    groups.c.id.in_(bindparam("ids", expanding=True)),
)


@dataclass(frozen=True)
class Group:
    id: str
    name: str
    is_smart: bool = False


@dataclass(frozen=True)
class DetailedGroup:
    id: str
    name: str
    is_smart: bool
    # The members the actor may see, in id order.
    user_ids: list[str]


@dataclass(frozen=True)
class GroupsPage:
    groups: list[Group]
    next_page_token: str | None


def check_manual_groups(
    conn: Connection, account_id: str, ids: Iterable[str], parameter: str
) -> None:
    """Wrong parameters naming `parameter` unless every id (canonical uuid text) is a group of
    the account whose members are set by hand."""
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return
    kinds = {
        r.id: r.is_smart
        for r in conn.execute(_SELECT_KINDS, {"account_id": account_id, "ids": wanted})
    }
    for group_id in wanted:
        if group_id not in kinds:
            raise invalid(parameter, f"no group {group_id!r} in this account")
        if kinds[group_id]:
            raise invalid(parameter, f"group {group_id}: {smart_groups.SMART_MEMBERSHIP}")


def _check_name(name: str | None) -> str:
    if name is None or not isinstance(name, str) or not name.strip():
        raise invalid("name", "is required")
    name = name.strip()
    if len(name) > MAX_NAME_LENGTH:
        raise invalid("name", f"longer than {MAX_NAME_LENGTH} characters")
    return name


def insert_group(conn: Connection, account_id: str, name: str) -> str:
    group_id = new_id()
    conn.execute(insert(groups).values(id=group_id, account_id=account_id, name=_check_name(name)))
    return group_id


# ---- reading --------------------------------------------------------------------------------


def require_not_learner(actor: Actor) -> None:
    if actor.is_learner_only:
        raise denied("learners cannot see groups")


def account_groups(conn: Connection, account_id: str) -> list[Group]:
    """Every group of the account, by name."""
    rows = conn.execute(
        select(groups.c.id, groups.c.name, groups.c.is_smart)
        .where(groups.c.account_id == account_id)
        .order_by(groups.c.name, groups.c.id)
    )
    return [Group(id=r.id, name=r.name, is_smart=r.is_smart) for r in rows]


def list_groups(db: Database, actor: Actor) -> list[Group]:
    require_not_learner(actor)
    with db.read() as conn:
        return account_groups(conn, actor.account_id)


def page_groups(
    db: Database, actor: Actor, page_size: int | None, page_token: str | None
) -> GroupsPage:
    """One keyset page of the account's groups in id order."""
    page = page_request(page_size, page_token)
    require_not_learner(actor)
    with db.read() as conn:
        rows, next_token = split_page(
            page,
            conn.execute(
                select(groups.c.id, groups.c.name, groups.c.is_smart)
                .where(groups.c.account_id == actor.account_id, groups.c.id > page.after)
                .order_by(groups.c.id)
                .limit(page.limit)
            ).all(),
        )
    return GroupsPage([Group(id=r.id, name=r.name, is_smart=r.is_smart) for r in rows], next_token)


def find_group(conn: Connection, account_id: str, group_id: str, *, lock: bool = False) -> Group:
    """The group; with `lock`, its row is locked until the transaction ends (PostgreSQL), so
    concurrent changes of its members run one after the other instead of colliding."""
    canonical = as_uuid_text(group_id or "") or ""
    query = select(groups.c.id, groups.c.name, groups.c.is_smart).where(
        groups.c.account_id == account_id, groups.c.id == canonical
    )
    if lock:
        query = query.with_for_update(key_share=True)
    row = conn.execute(query).first()
    if row is None:
        raise DomainError(
            ErrorCode.NOT_FOUND,
            f"no group {group_id!r} in this account",
            parameter="groupId",
            message="Unknown group",
        )
    return Group(id=row.id, name=row.name, is_smart=row.is_smart)


def _members(conn: Connection, group_id: str) -> list[tuple[str, str]]:
    """(user id, department path) of every member, in id order."""
    rows = conn.execute(
        select(users.c.id, departments.c.path)
        .join(group_members, group_members.c.user_id == users.c.id)
        .join(departments, departments.c.id == users.c.department_id)
        .where(group_members.c.group_id == group_id)
        .order_by(users.c.id)
    )
    return [(r.id, r.path) for r in rows]


def get_group(db: Database, actor: Actor, group_id: str) -> DetailedGroup:
    """The group with the members inside the departments the actor may see."""
    require_not_learner(actor)
    scope = actor.visible_scope()
    with db.read() as conn:
        group = find_group(conn, actor.account_id, group_id)
        members = [u for u, path in _members(conn, group.id) if scope.covers(path)]
    return DetailedGroup(group.id, group.name, group.is_smart, members)


def get_smart_group_rules(db: Database, actor: Actor, group_id: str) -> smart_groups.SmartGroup:
    require_not_learner(actor)
    with db.read() as conn:
        group = find_group(conn, actor.account_id, group_id)
        if not group.is_smart:
            raise invalid("groupId", "not a smart group")
        text = conn.execute(select(groups.c.rules).where(groups.c.id == group.id)).scalar_one()
    return smart_groups.SmartGroup(group.id, group.name, smart_groups.load_rules(text))


# ---- changing -------------------------------------------------------------------------------


def _manage_scope(actor: Actor) -> Scope:
    scope = actor.scope(Permission.MANAGE_GROUPS)
    if scope.is_empty:
        raise denied("your roles cannot manage groups")
    return scope


def _account_wide_scope(actor: Actor) -> Scope:
    """Smart group rules reach the whole account, so only account-wide managers write them."""
    scope = _manage_scope(actor)
    if not scope.account_wide:
        raise denied(
            "a smart group's rules reach the whole account; only the owner and account "
            "administrators can create or change them"
        )
    return scope


def _require_all_members_within(conn: Connection, scope: Scope, group: Group) -> None:
    """Renaming or deleting a group: a department administrator may do it only to a plain group
    whose every member is inside its departments (a smart group's rules reach the account)."""
    if scope.account_wide:
        return
    if group.is_smart:
        raise denied(
            "a smart group's rules reach the whole account; only the owner and account "
            "administrators can rename or delete it",
            "groupId",
        )
    for user_id, path in _members(conn, group.id):
        if not scope.covers(path):
            raise denied(
                f"the group has members outside the departments you manage (user {user_id})",
                "groupId",
            )


def _canonical_user_ids(raw_ids: Sequence[Any]) -> list[str]:
    result: list[str] = []
    for raw in raw_ids:
        value = as_uuid_text(raw) if isinstance(raw, str) else None
        if value is None:
            raise invalid("userIds", f"{raw!r} is not a user id")
        result.append(value)
    return list(dict.fromkeys(result))


def _require_users_within(
    conn: Connection, account_id: str, ids: Sequence[str], scope: Scope
) -> None:
    """Every id is a user of the account inside `scope`."""
    found: dict[str, str] = {}
    for start in range(0, len(ids), _CHUNK):
        rows = conn.execute(
            select(users.c.id, departments.c.path)
            .join(departments, departments.c.id == users.c.department_id)
            .where(users.c.account_id == account_id, users.c.id.in_(ids[start : start + _CHUNK]))
        )
        found.update((r.id, r.path) for r in rows)
    for user_id in ids:
        if user_id not in found:
            raise invalid("userIds", f"no user {user_id!r} in this account")
        if not scope.covers(found[user_id]):
            raise denied(f"user {user_id} is outside the departments you manage", "userIds")


def _add_members(conn: Connection, group_id: str, user_ids: Sequence[str]) -> None:
    for start in range(0, len(user_ids), _CHUNK):
        conn.execute(
            insert(group_members),
            [{"group_id": group_id, "user_id": u} for u in user_ids[start : start + _CHUNK]],
        )


def _group_change(
    conn: Connection,
    actor: Actor,
    kind: EventType,
    group_id: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    added: Sequence[str] = (),
    removed: Sequence[str] = (),
) -> None:
    details: dict[str, Any] = {}
    if kind is EventType.GROUP_MEMBERS_CHANGED:
        details = {"addedUserIds": list(added), "removedUserIds": list(removed)}
    record(
        conn,
        actor.account,
        [
            Change(
                kind,
                TargetKind.GROUP,
                group_id,
                actor.user_id,
                before=before,
                after=after,
                details=details,
                user_ids=(*added, *removed),
            )
        ],
    )


def _group_view(group_id: str, name: str, is_smart: bool) -> dict[str, Any]:
    return {"groupId": group_id, "name": name, "isSmart": is_smart}


def create_group(db: Database, actor: Actor, name: str | None, user_ids: list[str]) -> str:
    with db.write() as conn:
        return create_group_in(conn, actor, name, user_ids)


def create_group_in(
    conn: Connection, actor: Actor, name: str | None, user_ids: Sequence[Any]
) -> str:
    name = _check_name(name)
    scope = _manage_scope(actor)
    members = _canonical_user_ids(user_ids)
    _require_users_within(conn, actor.account_id, members, scope)
    group_id = insert_group(conn, actor.account_id, name)
    _add_members(conn, group_id, members)
    view = _group_view(group_id, name, False)
    _group_change(conn, actor, EventType.GROUP_CREATED, group_id, after=view)
    if members:
        _group_change(
            conn, actor, EventType.GROUP_MEMBERS_CHANGED, group_id, after=view, added=members
        )
    return group_id


def rename_group(db: Database, actor: Actor, group_id: str, name: str | None) -> None:
    with db.write() as conn:
        rename_group_in(conn, actor, group_id, name)


def rename_group_in(conn: Connection, actor: Actor, group_id: str, name: str | None) -> None:
    name = _check_name(name)
    scope = _manage_scope(actor)
    group = find_group(conn, actor.account_id, group_id)
    _require_all_members_within(conn, scope, group)
    conn.execute(update(groups).where(groups.c.id == group.id).values(name=name))
    if group.is_smart:
        settings_changed(conn, actor.account_id)
    _group_change(
        conn,
        actor,
        EventType.GROUP_UPDATED,
        group.id,
        before=_group_view(group.id, group.name, group.is_smart),
        after=_group_view(group.id, name, group.is_smart),
    )


def delete_group(db: Database, actor: Actor, group_id: str) -> None:
    with db.write() as conn:
        delete_group_in(conn, actor, group_id)


def delete_group_in(conn: Connection, actor: Actor, group_id: str) -> None:
    scope = _manage_scope(actor)
    group = find_group(conn, actor.account_id, group_id)
    _require_all_members_within(conn, scope, group)
    referring = smart_groups.rules_referring_to(
        conn, actor.account, smart_groups.AttributeType.GROUP, group.id
    )
    if referring:
        raise invalid("groupId", f"the rules of smart group {referring[0].name!r} name it")
    conn.execute(delete(group_members).where(group_members.c.group_id == group.id))
    conn.execute(delete(groups).where(groups.c.id == group.id))
    if group.is_smart:
        settings_changed(conn, actor.account_id)
    _group_change(
        conn,
        actor,
        EventType.GROUP_DELETED,
        group.id,
        before=_group_view(group.id, group.name, group.is_smart),
    )


def set_members(db: Database, actor: Actor, group_id: str, user_ids: Sequence[Any]) -> None:
    """Replaces the members: afterwards the group holds exactly `user_ids`, except that a
    department administrator's call leaves members outside their departments in place."""
    with db.write() as conn:
        set_members_in(conn, actor, group_id, user_ids)


def set_members_in(conn: Connection, actor: Actor, group_id: str, user_ids: Sequence[Any]) -> None:
    scope = _manage_scope(actor)
    wanted = _canonical_user_ids(user_ids)
    group = find_group(conn, actor.account_id, group_id, lock=True)
    if group.is_smart:
        raise invalid("userIds", smart_groups.SMART_MEMBERSHIP)
    _require_users_within(conn, actor.account_id, wanted, scope)
    current = _members(conn, group.id)
    current_ids = {u for u, _ in current}
    keep = set(wanted)
    removed = [u for u, path in current if u not in keep and scope.covers(path)]
    added = [u for u in wanted if u not in current_ids]
    for start in range(0, len(removed), _CHUNK):
        conn.execute(
            delete(group_members).where(
                group_members.c.group_id == group.id,
                group_members.c.user_id.in_(removed[start : start + _CHUNK]),
            )
        )
    _add_members(conn, group.id, added)
    # Smart groups may follow this group's membership.
    smart_groups.refresh_memberships(conn, actor.account, [*removed, *added])
    if added or removed:
        _group_change(
            conn,
            actor,
            EventType.GROUP_MEMBERS_CHANGED,
            group.id,
            after=_group_view(group.id, group.name, False),
            added=added,
            removed=removed,
        )


def create_smart_group(db: Database, actor: Actor, name: str | None, rules: Any) -> str:
    name = _check_name(name)
    _account_wide_scope(actor)
    with db.write() as conn:
        parsed = smart_groups.parse_rules(conn, actor.account, rules)
        group_id = new_id()
        conn.execute(
            insert(groups).values(
                id=group_id,
                account_id=actor.account_id,
                name=name,
                is_smart=True,
                rules=smart_groups.dump_rules(parsed),
            )
        )
        settings_changed(conn, actor.account_id)
        smart_groups.recompute_group(
            conn, actor.account, smart_groups.SmartGroup(group_id, name, parsed)
        )
        _group_change(
            conn,
            actor,
            EventType.GROUP_CREATED,
            group_id,
            after={
                **_group_view(group_id, name, True),
                "rules": smart_groups.rules_to_data(parsed),
            },
        )
        return group_id


def update_smart_group(
    db: Database, actor: Actor, group_id: str, name: str | None, rules: Any
) -> None:
    """Replaces the rules (and the name, when given) and recomputes the membership."""
    new_name = _check_name(name) if name is not None else None
    _account_wide_scope(actor)
    with db.write() as conn:
        group = find_group(conn, actor.account_id, group_id)
        if not group.is_smart:
            raise invalid("groupId", "not a smart group; its members are set by hand")
        parsed = smart_groups.parse_rules(conn, actor.account, rules, own_group_id=group.id)
        conn.execute(
            update(groups)
            .where(groups.c.id == group.id)
            .values(name=new_name or group.name, rules=smart_groups.dump_rules(parsed))
        )
        settings_changed(conn, actor.account_id)
        smart_groups.recompute_group(
            conn, actor.account, smart_groups.SmartGroup(group.id, new_name or group.name, parsed)
        )
        _group_change(
            conn,
            actor,
            EventType.GROUP_UPDATED,
            group.id,
            before=_group_view(group.id, group.name, True),
            after={
                **_group_view(group.id, new_name or group.name, True),
                "rules": smart_groups.rules_to_data(parsed),
            },
        )


# ---- the console: counts, one-by-one membership changes, smart group previews ---------------


def _department_ids_within(conn: Connection, account_id: str, scope: Scope) -> list[str]:
    """The ids of the account's departments inside a department-scoped `scope`: a few rows,
    so that members are then filtered by an IN list on users.department_id (a LIKE on each
    member's department path makes a planner without statistics loop per member)."""
    return list(
        conn.scalars(
            select(departments.c.id).where(
                departments.c.account_id == account_id, within_scope(scope)
            )
        )
    )


def member_counts(
    db: Database, actor: Actor, group_ids: Sequence[str] | None = None
) -> dict[str, int]:
    """Members per group of the account (or of `group_ids` among them), counting (like
    get_group) only members inside the departments the actor may see: one grouped count on
    group_members."""
    require_not_learner(actor)
    scope = actor.visible_scope()
    query = (
        select(group_members.c.group_id, func.count())
        .join(groups, groups.c.id == group_members.c.group_id)
        .where(groups.c.account_id == actor.account_id)
        .group_by(group_members.c.group_id)
    )
    wanted = set(group_ids) if group_ids is not None else None
    with db.read() as conn:
        if not scope.account_wide:
            within = _department_ids_within(conn, actor.account_id, scope)
            if not within:
                return {}
            query = query.join(users, users.c.id == group_members.c.user_id).where(
                users.c.department_id.in_(within)
            )
            # On PostgreSQL always over every group: asked for one group, a planner without
            # statistics expects a few members and probes the group once per visible user
            # (200,000 users: 190 ms), where the whole count hashes (110 ms). SQLite walks
            # the group's members either way, so there one group costs only its own.
            if wanted is not None and conn.dialect.name == "sqlite":
                query = query.where(group_members.c.group_id.in_(list(wanted)))
        elif wanted is not None:
            query = query.where(group_members.c.group_id.in_(list(wanted)))
        counts = {group_id: int(n) for group_id, n in conn.execute(query)}
    return counts if wanted is None else {g: n for g, n in counts.items() if g in wanted}


def _members_among(conn: Connection, group_id: str, user_ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(user_ids), _CHUNK):
        found.update(
            conn.scalars(
                select(group_members.c.user_id).where(
                    group_members.c.group_id == group_id,
                    group_members.c.user_id.in_(user_ids[start : start + _CHUNK]),
                )
            )
        )
    return found


def add_members(db: Database, actor: Actor, group_id: str, user_ids: Sequence[Any]) -> list[str]:
    """Adds users to a plain group, leaving its other members alone (unlike set_members, two
    administrators adding people at once both get theirs). Returns the users that were not
    members yet."""
    return _change_members(db, actor, group_id, user_ids, add=True)


def remove_members(db: Database, actor: Actor, group_id: str, user_ids: Sequence[Any]) -> list[str]:
    """Removes users from a plain group, leaving its other members alone. Returns the users
    that were members."""
    return _change_members(db, actor, group_id, user_ids, add=False)


def _change_members(
    db: Database, actor: Actor, group_id: str, user_ids: Sequence[Any], *, add: bool
) -> list[str]:
    """Some members in or out of a plain group, under set_members' rules (the group's row
    locked, users inside the actor's departments, no smart group), audited as one change."""
    with db.write() as conn:
        scope = _manage_scope(actor)
        wanted = _canonical_user_ids(user_ids)
        if not wanted:
            raise invalid("userIds", "is required")
        group = find_group(conn, actor.account_id, group_id, lock=True)
        if group.is_smart:
            raise invalid("userIds", smart_groups.SMART_MEMBERSHIP)
        _require_users_within(conn, actor.account_id, wanted, scope)
        present = _members_among(conn, group.id, wanted)
        changed = [u for u in wanted if (u in present) != add]
        if add:
            _add_members(conn, group.id, changed)
        else:
            for start in range(0, len(changed), _CHUNK):
                conn.execute(
                    delete(group_members).where(
                        group_members.c.group_id == group.id,
                        group_members.c.user_id.in_(changed[start : start + _CHUNK]),
                    )
                )
        smart_groups.refresh_memberships(conn, actor.account, changed)
        if changed:
            _group_change(
                conn,
                actor,
                EventType.GROUP_MEMBERS_CHANGED,
                group.id,
                after=_group_view(group.id, group.name, False),
                added=changed if add else (),
                removed=() if add else changed,
            )
        return changed


def count_matching(db: Database, actor: Actor, rules: Any, group_id: str | None = None) -> int:
    """How many users a smart group with these rules (SmartGroupRuleNodes, as create_smart_group
    takes them) would hold, without saving anything: the rules are checked exactly as when they
    are saved (`group_id`: the smart group being edited, which cannot follow itself). Only
    those who may write smart group rules (account-wide) ask, and they see the whole account."""
    _account_wide_scope(actor)
    with db.read() as conn:
        own = find_group(conn, actor.account_id, group_id).id if group_id else None
        parsed = smart_groups.parse_rules(conn, actor.account, rules, own_group_id=own)
        fields = account_settings(conn, actor.account).fields
        # Department by department (the account's departments, then their users through the
        # (department_id, status) index): a department rule is then answered from the index
        # alone. Over the account's users instead, a planner without statistics reads every
        # row (100,000 matches at 200,000 users: 126 -> 14 ms on SQLite, 48 -> 15 ms on
        # PostgreSQL).
        return int(
            conn.execute(
                select(func.count())
                .select_from(departments.join(users, users.c.department_id == departments.c.id))
                .where(
                    departments.c.account_id == actor.account_id,
                    smart_groups.membership_condition(parsed, actor.account_id, fields),
                )
            ).scalar_one()
        )


def group_info(db: Database, actor: Actor, group_id: str) -> Group:
    """The group's name and kind, without its members (get_group reads every member)."""
    require_not_learner(actor)
    with db.read() as conn:
        return find_group(conn, actor.account_id, group_id)


# A department administrator's page of members reads the group's members in id order this
# many at a time, and at most SCOPED_SCAN_BUDGET of them per request: a page then costs a
# bounded amount whatever the group's size and however few of its members are the actor's
# (a page may then hold fewer members than asked, with a token to read on).
SCOPED_SCAN_BATCH = 1_000
SCOPED_SCAN_BUDGET = 10_000


def member_page(
    db: Database, actor: Actor, group_id: str, page_size: int | None, page_token: str | None
) -> tuple[list[UserView], str | None]:
    """One keyset page of the group's members the actor may view (VIEW_USERS, as page_users),
    in id order, and the next page's token; the views carry no roles. The ids come from the
    group's own index in id order, then each member by primary key: a page costs about its own
    rows whatever the size of the group or the account. For a department administrator the
    members read are kept when their department is the administrator's; see
    SCOPED_SCAN_BUDGET. (Driven from the account's users instead, or joined to them, a
    PostgreSQL without statistics reads the whole account: 230-400 ms at 200,000 users.)"""
    from learndir.core.users.queries import views_of

    require_not_learner(actor)
    page = page_request(page_size, page_token)
    scope = actor.scope(Permission.VIEW_USERS)
    if scope.is_empty:
        raise denied("your roles do not allow viewing users")
    with db.read() as conn:
        group = find_group(conn, actor.account_id, group_id)
        if scope.account_wide:
            rows = conn.execute(
                select(group_members.c.user_id.label("id"))
                .where(group_members.c.group_id == group.id, group_members.c.user_id > page.after)
                .order_by(group_members.c.user_id)
                .limit(page.limit)
            ).all()
            found, next_token = split_page(page, rows)
            ids = [r.id for r in found]
        else:
            ids, next_token = _scoped_member_ids(conn, actor, scope, group.id, page)
        views = {v.id: v for v in views_of(conn, actor.account, ids, with_roles=False)}
    return [views[i] for i in ids if i in views], next_token


def _scoped_member_ids(
    conn: Connection, actor: Actor, scope: Scope, group_id: str, page: PageRequest
) -> tuple[list[str], str | None]:
    within = set(_department_ids_within(conn, actor.account_id, scope))
    kept: list[str] = []
    cursor = page.after
    scanned = 0
    while within:
        batch = list(
            conn.scalars(
                select(group_members.c.user_id)
                .where(group_members.c.group_id == group_id, group_members.c.user_id > cursor)
                .order_by(group_members.c.user_id)
                .limit(SCOPED_SCAN_BATCH)
            )
        )
        where = dict(
            (r.id, r.department_id)
            for r in rows_by_keys(
                conn, select(users.c.id, users.c.department_id), users.c.id, batch
            )
        )
        for user_id in batch:
            if where.get(user_id) in within:
                if len(kept) == page.size:
                    return kept, encode_page_token(kept[-1])
                kept.append(user_id)
            cursor = user_id
        scanned += len(batch)
        if len(batch) < SCOPED_SCAN_BATCH:
            break
        if scanned >= SCOPED_SCAN_BUDGET:
            # More to read: the next request goes on from here.
            return kept, encode_page_token(cursor)
    return kept, None
