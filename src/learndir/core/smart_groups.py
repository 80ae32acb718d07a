"""Smart groups: groups whose membership follows rules on a user's department, groups and
profile fields.

Rules are an AND of ORs: a user is a member when every AND item holds, and an AND item holds
when any of its rules does. Each rule compiles to one SQL condition on `users`, so membership is
recomputed set-based: for the whole account when a group's rules change, and for a few users
(`refresh_memberships`) whenever users are added or changed.

`refresh_memberships` runs on addUser's hot path, so an account's smart groups are cached per
process and keyed on `accounts.settings_version` like its profile fields and roles; every
change of a smart group bumps that version. An account without smart groups costs no query.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    bindparam,
    delete,
    exists,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.orm import aliased
from sqlalchemy.sql.expression import Executable

from learndir.core.account_settings import account_settings
from learndir.core.actor import AccountInfo
from learndir.core.common import as_uuid_text, whole_number
from learndir.core.errors import invalid
from learndir.core.profile_fields import ProfileField, resolve_field
from learndir.db.schema import (
    accounts,
    departments,
    group_members,
    groups,
    user_field_values,
    users,
)

SMART_MEMBERSHIP = "membership of a smart group follows its rules"
MAX_RULES = 100
_CHUNK = 1000


class AttributeType(IntEnum):
    DEPARTMENT = 1
    GROUP = 2
    PROFILE_FIELD = 3


class Operator(IntEnum):
    ONLY = 1
    THIS_AND_NESTED = 2


@dataclass(frozen=True)
class Rule:
    attribute_type: AttributeType
    attribute_id: str | None
    operator: Operator
    value: str


# An AND of ORs.
Rules = tuple[tuple[Rule, ...], ...]


@dataclass(frozen=True)
class SmartGroup:
    id: str
    name: str
    rules: Rules


# The columns of users that hold built-in profile fields, by field name.
_BUILTIN_COLUMNS = {
    "login": users.c.login,
    "email": users.c.email,
    "first_name": users.c.first_name,
    "last_name": users.c.last_name,
    "job_title": users.c.job_title,
    "phone": users.c.phone,
}


# ---- rules in and out ---------------------------------------------------------------------


def _as_list(value: Any, parameter: str) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and len(value) == 1:
        # An XML or form list with a single item whose element name was not recognised.
        (inner,) = value.values()
        return inner if isinstance(inner, list) else [inner]
    raise invalid(parameter, "must be a list")


def _as_enum(value: Any, enum: type[IntEnum], parameter: str) -> Any:
    number = whole_number(value) if isinstance(value, int | str) else None
    allowed = ", ".join(str(int(m)) for m in enum)
    if number is None or number not in {int(m) for m in enum}:
        raise invalid(parameter, f"must be one of {allowed}, {value!r} given")
    return enum(number)


def _as_text(value: Any, parameter: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise invalid(parameter, "must be a string")
    text = str(value).strip()
    if not text:
        raise invalid(parameter, "is required")
    if len(text) > 255:
        raise invalid(parameter, "longer than 255 characters")
    return text


def parse_rules(
    conn: Connection,
    account: AccountInfo,
    raw: Any,
    *,
    own_group_id: str | None = None,
) -> Rules:
    """Validates the OpenAPI's SmartGroupRuleNodes against the account: every department,
    group and profile field named must exist. Errors name the path, e.g.
    `rules.and[0].or[1].rule.value`."""
    if not isinstance(raw, dict) or "and" not in raw:
        raise invalid("rules.and", "is required")
    ands = _as_list(raw["and"], "rules.and")
    if not ands:
        raise invalid("rules.and", "a smart group needs at least one rule")
    fields = account_settings(conn, account).fields
    parsed: list[tuple[Rule, ...]] = []
    wanted_departments: dict[str, str] = {}
    wanted_groups: dict[str, str] = {}
    count = 0
    for i, and_item in enumerate(ands):
        where = f"rules.and[{i}]"
        if not isinstance(and_item, dict) or "or" not in and_item:
            raise invalid(f"{where}.or", "is required")
        ors = _as_list(and_item["or"], f"{where}.or")
        if not ors:
            raise invalid(f"{where}.or", "needs at least one rule")
        rules: list[Rule] = []
        for j, or_item in enumerate(ors):
            at = f"{where}.or[{j}].rule"
            count += 1
            if count > MAX_RULES:
                raise invalid("rules", f"at most {MAX_RULES} rules")
            if not isinstance(or_item, dict) or not isinstance(or_item.get("rule"), dict):
                raise invalid(at, "is required")
            rule = or_item["rule"]
            for name in ("attributeType", "operator", "value"):
                if rule.get(name) is None:
                    raise invalid(f"{at}.{name}", "is required")
            kind = _as_enum(rule["attributeType"], AttributeType, f"{at}.attributeType")
            operator = _as_enum(rule["operator"], Operator, f"{at}.operator")
            value = _as_text(rule["value"], f"{at}.value")
            attribute_id: str | None = None
            if kind is AttributeType.PROFILE_FIELD:
                if rule.get("attributeId") is None:
                    raise invalid(f"{at}.attributeId", "is required for a profile field rule")
                name = _as_text(rule["attributeId"], f"{at}.attributeId")
                field = resolve_field(fields, name)
                if field is None:
                    raise invalid(f"{at}.attributeId", f"no profile field {name!r}")
                attribute_id = field.key
            else:
                canonical = as_uuid_text(value)
                what = "department" if kind is AttributeType.DEPARTMENT else "group"
                if canonical is None:
                    raise invalid(f"{at}.value", f"{value!r} is not a {what} id")
                if kind is AttributeType.DEPARTMENT:
                    wanted_departments.setdefault(canonical, f"{at}.value")
                else:
                    if canonical == own_group_id:
                        raise invalid(f"{at}.value", "a smart group cannot follow itself")
                    wanted_groups.setdefault(canonical, f"{at}.value")
                value = canonical
            rules.append(Rule(kind, attribute_id, operator, value))
        parsed.append(tuple(rules))
    _check_exist(conn, account.id, wanted_departments, wanted_groups)
    return tuple(parsed)


def _check_exist(
    conn: Connection,
    account_id: str,
    wanted_departments: Mapping[str, str],
    wanted_groups: Mapping[str, str],
) -> None:
    if wanted_departments:
        found = set(
            conn.scalars(
                select(departments.c.id).where(
                    departments.c.account_id == account_id,
                    departments.c.id.in_(list(wanted_departments)),
                )
            )
        )
        for dept_id, parameter in wanted_departments.items():
            if dept_id not in found:
                raise invalid(parameter, f"no department {dept_id!r} in this account")
    if wanted_groups:
        rows = conn.execute(
            select(groups.c.id, groups.c.is_smart).where(
                groups.c.account_id == account_id, groups.c.id.in_(list(wanted_groups))
            )
        )
        smart = {r.id: r.is_smart for r in rows}
        for group_id, parameter in wanted_groups.items():
            if group_id not in smart:
                raise invalid(parameter, f"no group {group_id!r} in this account")
            if smart[group_id]:
                raise invalid(parameter, "a rule can follow only a group that is not smart")


def rules_to_data(rules: Rules) -> dict[str, Any]:
    """The OpenAPI's SmartGroupRuleNodes."""
    return {
        "and": [
            {
                "or": [
                    {
                        "rule": {
                            "attributeType": int(r.attribute_type),
                            **({"attributeId": r.attribute_id} if r.attribute_id else {}),
                            "operator": int(r.operator),
                            "value": r.value,
                        }
                    }
                    for r in or_rules
                ]
            }
            for or_rules in rules
        ]
    }


def dump_rules(rules: Rules) -> str:
    return json.dumps(rules_to_data(rules), separators=(",", ":"))


def load_rules(text: str | None) -> Rules:
    """Stored rules were validated when written; read them back without the account check."""
    if not text:
        return ()
    data = json.loads(text)
    return tuple(
        tuple(
            Rule(
                AttributeType(item["rule"]["attributeType"]),
                item["rule"].get("attributeId"),
                Operator(item["rule"]["operator"]),
                item["rule"]["value"],
            )
            for item in and_item["or"]
        )
        for and_item in data["and"]
    )


# ---- the per-account cache ----------------------------------------------------------------

_MAX_ENTRIES = 1024
_cache: dict[tuple[str, int], tuple[SmartGroup, ...]] = {}
_lock = threading.Lock()
_SELECT_SMART = select(groups.c.id, groups.c.name, groups.c.rules).where(
    groups.c.account_id == bindparam("account_id"), groups.c.is_smart.is_(true())
)


_SELECT_VERSION = select(accounts.c.settings_version).where(accounts.c.id == bindparam("id"))


def current(conn: Connection, account: AccountInfo) -> AccountInfo:
    """The account with the settings version this transaction sees. The actor's copy was read
    when it authenticated, before any password hashing: a smart group created or deleted since
    then must be seen. One primary-key read."""
    version = int(conn.execute(_SELECT_VERSION, {"id": account.id}).scalar_one())
    return (
        account
        if version == account.settings_version
        else replace(account, settings_version=version)
    )


def account_smart_groups(conn: Connection, account: AccountInfo) -> tuple[SmartGroup, ...]:
    """The account's smart groups at `account.settings_version` (pass `current(...)`), cached.

    Never call this after changing a smart group in the same transaction: the cache entry
    of the old settings version would hold the uncommitted change."""
    key = (account.id, account.settings_version)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    result = tuple(
        SmartGroup(id=r.id, name=r.name, rules=load_rules(r.rules))
        for r in conn.execute(_SELECT_SMART, {"account_id": account.id})
    )
    with _lock:
        if len(_cache) >= _MAX_ENTRIES:
            _cache.clear()
        _cache[key] = result
    return result


# ---- membership ---------------------------------------------------------------------------


def _rule_condition(
    rule: Rule, account_id: str, fields: Sequence[ProfileField]
) -> ColumnElement[bool]:
    """Correlated EXISTS tests: index lookups per user, whether one user is refreshed or the
    whole account is recomputed."""
    if rule.attribute_type is AttributeType.DEPARTMENT:
        if rule.operator is Operator.ONLY:
            return users.c.department_id == rule.value
        # The branch's departments, found once (not per user): the user's department is
        # among them.
        top = aliased(departments)
        return users.c.department_id.in_(
            select(departments.c.id).where(
                departments.c.account_id == account_id,
                departments.c.path.startswith(
                    select(top.c.path)
                    .where(top.c.id == rule.value, top.c.account_id == account_id)
                    .scalar_subquery(),
                    autoescape=False,
                ),
            )
        )
    if rule.attribute_type is AttributeType.GROUP:
        return exists().where(
            group_members.c.group_id == rule.value, group_members.c.user_id == users.c.id
        )
    field = resolve_field(fields, rule.attribute_id or "")
    if field is None:
        return false()
    wanted = func.lower(literal(rule.value))
    if field.is_builtin and field.name in _BUILTIN_COLUMNS:
        return func.lower(_BUILTIN_COLUMNS[field.name]) == wanted
    return exists().where(
        user_field_values.c.user_id == users.c.id,
        user_field_values.c.field_id == field.id,
        func.lower(user_field_values.c.value) == wanted,
    )


def membership_condition(
    rules: Rules, account_id: str, fields: Sequence[ProfileField]
) -> ColumnElement[bool]:
    """The SQL condition on `users` that says who belongs to a group with these rules."""
    return and_(
        true(), *(or_(*(_rule_condition(r, account_id, fields) for r in ors)) for ors in rules)
    )


def _membership_insert(
    account_id: str, group: SmartGroup, fields: Sequence[ProfileField], for_some_users: bool
) -> Executable:
    """INSERT INTO group_members SELECT the users that meet the group's rules; with
    `for_some_users`, only those of the expanding `ids` parameter."""
    query = select(literal(group.id), users.c.id).where(
        users.c.account_id == account_id,
        membership_condition(group.rules, account_id, fields),
    )
    if for_some_users:
        query = query.where(users.c.id.in_(bindparam("ids", expanding=True)))
    columns = [group_members.c.group_id, group_members.c.user_id]
    return insert(group_members).from_select(columns, query)


def recompute_group(conn: Connection, account: AccountInfo, group: SmartGroup) -> None:
    """Rebuilds the whole membership of one smart group: one DELETE and one INSERT ... SELECT."""
    conn.execute(delete(group_members).where(group_members.c.group_id == group.id))
    fields = account_settings(conn, account).fields
    conn.execute(_membership_insert(account.id, group, fields, for_some_users=False))


@dataclass(frozen=True)
class _Refresh:
    """The statements that refresh some users of an account, built once per settings version:
    building them costs more than running them."""

    delete: Executable
    inserts: tuple[Executable, ...]


_refresh_cache: dict[tuple[str, int], _Refresh] = {}


def _refresh_statements(
    conn: Connection, account: AccountInfo, smart: tuple[SmartGroup, ...]
) -> _Refresh:
    key = (account.id, account.settings_version)
    cached = _refresh_cache.get(key)
    if cached is not None:
        return cached
    fields = account_settings(conn, account).fields
    result = _Refresh(
        delete=delete(group_members).where(
            group_members.c.group_id.in_([g.id for g in smart]),
            group_members.c.user_id.in_(bindparam("ids", expanding=True)),
        ),
        inserts=tuple(
            _membership_insert(account.id, g, fields, for_some_users=True) for g in smart
        ),
    )
    with _lock:
        if len(_refresh_cache) >= _MAX_ENTRIES:
            _refresh_cache.clear()
        _refresh_cache[key] = result
    return result


def refresh_memberships(
    conn: Connection,
    account: AccountInfo,
    user_ids: Sequence[str],
    *,
    account_is_current: bool = False,
) -> None:
    """Recomputes the smart-group memberships of `user_ids` inside the caller's transaction.

    Call it after everything about those users (department, fields, manual groups) is written.
    Costs one primary-key read when the account has no smart groups, none when the caller
    read the account's settings version in this transaction already (`account_is_current`)."""
    if not user_ids:
        return
    if not account_is_current:
        account = current(conn, account)
    smart = account_smart_groups(conn, account)
    if not smart:
        return
    statements = _refresh_statements(conn, account, smart)
    ids = list(dict.fromkeys(user_ids))
    for start in range(0, len(ids), _CHUNK):
        chunk = {"ids": ids[start : start + _CHUNK]}
        conn.execute(statements.delete, chunk)
        for statement in statements.inserts:
            conn.execute(statement, chunk)


def rules_referring_to(
    conn: Connection, account: AccountInfo, kind: AttributeType, target_id: str
) -> list[SmartGroup]:
    """The smart groups whose rules name this department or group."""
    return [
        g
        for g in account_smart_groups(conn, current(conn, account))
        if any(r.attribute_type is kind and r.value == target_id for ors in g.rules for r in ors)
    ]


def recompute_after_department_move(conn: Connection, account: AccountInfo) -> None:
    """A moved subtree changes who is under a department: rebuild the groups whose rules
    follow a department and its nested ones."""
    for group in account_smart_groups(conn, current(conn, account)):
        if any(
            r.attribute_type is AttributeType.DEPARTMENT and r.operator is Operator.THIS_AND_NESTED
            for ors in group.rules
            for r in ors
        ):
            recompute_group(conn, account, group)
