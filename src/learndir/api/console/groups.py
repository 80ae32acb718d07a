"""Groups and smart groups: the list with member counts, a plain group's members (add, remove),
a smart group's rules in words and their edit form with a live member count. Every change is
the core's (core/groups.py), as over REST."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import pycountry
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import FormData

from learndir.api.console.form_text import check_form, shown
from learndir.api.console.web import (
    HEADERS,
    Console,
    Refused,
    administrator,
    error_text,
    field_errors,
    posted,
    status_of,
    text,
)
from learndir.core import departments, groups
from learndir.core.common import as_uuid_text, fold
from learndir.core.departments import Department
from learndir.core.errors import DomainError, invalid
from learndir.core.groups import Group
from learndir.core.profile_fields import ProfileField, check_value, list_fields
from learndir.core.roles import Permission
from learndir.core.smart_groups import AttributeType, Operator, Rule, Rules
from learndir.core.text import check_text, text_problem
from learndir.core.users.queries import UserFilter, list_users

router = APIRouter()

PAGE_SIZE = 50
# Logins or e-mails in the "Add members" box: one a line, or separated by commas or semicolons.
_SEPARATORS = re.compile(r"[\n\r,;]+")
_RULE_PARAMETER = re.compile(r"^rules\.and\[(\d+)\]\.or\[(\d+)\]\.rule\.(\w+)")
_ROW_FIELD = {"value": "value", "attributeId": "attr", "attributeType": "attr", "operator": "op"}


# ---- what the pages need to know about the account -----------------------------------------


@dataclass
class Names:
    """The account's departments, plain groups and profile fields, for rules in words and the
    rules form."""

    departments: list[Department]
    groups: list[Group]
    fields: list[ProfileField]

    def department(self, dept_id: str) -> Department | None:
        return next((d for d in self.departments if d.id == dept_id), None)

    def group(self, group_id: str) -> Group | None:
        return next((g for g in self.groups if g.id == group_id), None)

    def field(self, key: str) -> ProfileField | None:
        wanted = fold(key)
        return next((f for f in self.fields if fold(f.key) == wanted or f.name == key), None)

    @property
    def plain_groups(self) -> list[Group]:
        return [g for g in self.groups if not g.is_smart]

    def department_text(self, dept: Department) -> str:
        """How a rule's department is typed: its name, or its code when the name is shared."""
        same = [d for d in self.departments if fold(d.name) == fold(dept.name)]
        return dept.code if len(same) > 1 and dept.code else dept.name


def load_names(console: Console) -> Names:
    return Names(
        departments.list_departments(console.db, console.actor),
        groups.list_groups(console.db, console.actor),
        list_fields(console.db, console.actor),
    )


def country_name(code: str) -> str:
    country = pycountry.countries.get(alpha_2=code.upper())
    return str(country.name) if country is not None else code


# ---- rules in words and as form rows ----------------------------------------------------------


@dataclass
class RuleRow:
    """One condition of the rules form: joined to the one before by "and" or "or"."""

    join: str = "and"
    attr: str = "department"
    op: str = str(int(Operator.ONLY))
    value: str = ""

    @property
    def kind(self) -> str:
        return self.attr.split(":", 1)[0]


def rule_words(rule: Rule, names: Names) -> str:
    if rule.attribute_type is AttributeType.DEPARTMENT:
        dept = names.department(rule.value)
        # A department the rules name cannot be deleted: one not found is outside the actor's.
        words = f"Department is {dept.name if dept else 'a department outside yours'}"
        return words + (" or below" if rule.operator is Operator.THIS_AND_NESTED else "")
    if rule.attribute_type is AttributeType.GROUP:
        group = names.group(rule.value)
        return f"Member of group {group.name if group else 'an unknown group'}"
    field = names.field(rule.attribute_id or "")
    label = (field.label or field.name) if field else (rule.attribute_id or "a field")
    value = country_name(rule.value) if field and field.type == "country" else rule.value
    return f"{label} is {value}"


def rules_words(rules: Rules, names: Names) -> str:
    """ "Department is Sales or below, and Country is Germany": the AND items joined with
    "and", the alternatives inside one with "or"."""
    items = [" or ".join(rule_words(r, names) for r in ors) for ors in rules]
    return ", and ".join(items)


def rules_rows(rules: Rules, names: Names) -> list[RuleRow]:
    rows: list[RuleRow] = []
    for ors in rules:
        for j, rule in enumerate(ors):
            join = "or" if j else "and"
            if rule.attribute_type is AttributeType.DEPARTMENT:
                dept = names.department(rule.value)
                value = names.department_text(dept) if dept else rule.value
                rows.append(RuleRow(join, "department", str(int(rule.operator)), value))
            elif rule.attribute_type is AttributeType.GROUP:
                group = names.group(rule.value)
                rows.append(RuleRow(join, "group", "1", group.name if group else rule.value))
            else:
                field = names.field(rule.attribute_id or "")
                value = rule.value
                if field is not None and field.type == "country":
                    value = country_name(value)
                name = field.name if field else (rule.attribute_id or "")
                rows.append(RuleRow(join, f"field:{name}", "1", value))
    return rows


def form_rows(form: FormData) -> list[RuleRow]:
    """The rows as submitted: the form's repeated join/attr/op/value fields, by position."""

    def values(name: str) -> list[str]:
        return [v.strip() if isinstance(v, str) else "" for v in form.getlist(name)]

    attrs = values("attr")
    joins, ops, vals = values("join"), values("op"), values("value")

    def at(items: list[str], i: int, default: str) -> str:
        return items[i] if i < len(items) and items[i] else default

    return [
        RuleRow(at(joins, i, "and"), at(attrs, i, "department"), at(ops, i, "1"), at(vals, i, ""))
        for i in range(len(attrs))
    ]


def displayed(rows: list[RuleRow]) -> list[RuleRow]:
    """The rows as the page may show them back."""
    return [RuleRow(shown(r.join), shown(r.attr), shown(r.op), shown(r.value)) for r in rows]


class RowError(Exception):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


def _resolve_department(value: str, names: Names) -> str:
    canonical = as_uuid_text(value)
    if canonical and names.department(canonical):
        return canonical
    by_code = [d for d in names.departments if d.code and fold(d.code) == fold(value)]
    if by_code:
        return by_code[0].id
    by_name = [d for d in names.departments if fold(d.name) == fold(value)]
    if len(by_name) == 1:
        return by_name[0].id
    if by_name:
        raise ValueError(f"several departments are named {value!r}: type its code instead")
    raise ValueError(f"no department named {value!r}")


def _resolve_group(value: str, names: Names) -> str:
    canonical = as_uuid_text(value)
    if canonical and names.group(canonical):
        return canonical
    found = [g for g in names.groups if fold(g.name) == fold(value)]
    if not found:
        raise ValueError(f"no group named {value!r}")
    return found[0].id


def rows_to_rules(rows: list[RuleRow], names: Names) -> tuple[dict[str, Any], dict[str, int]]:
    """The SmartGroupRuleNodes the core takes, and which form row each rule came from (by its
    "and.or" position, to place the core's errors). Rows without a value are left out."""
    ands: list[list[dict[str, Any]]] = []
    where: dict[str, int] = {}
    for index, row in enumerate(rows):
        if not row.value:
            continue
        problem = text_problem(row.value)
        if problem is not None:
            raise RowError(f"value-{index}", f"Wrong parameters: {problem}")
        rule: dict[str, Any]
        try:
            if row.kind == "department":
                operator = Operator.THIS_AND_NESTED if row.op == "2" else Operator.ONLY
                rule = {
                    "attributeType": int(AttributeType.DEPARTMENT),
                    "operator": int(operator),
                    "value": _resolve_department(row.value, names),
                }
            elif row.kind == "group":
                rule = {
                    "attributeType": int(AttributeType.GROUP),
                    "operator": int(Operator.ONLY),
                    "value": _resolve_group(row.value, names),
                }
            else:
                name = row.attr.split(":", 1)[-1]
                field = names.field(name)
                if field is None:
                    raise RowError(f"attr-{index}", f"no profile field {name!r}")
                value = row.value
                if field.type == "country":
                    value = check_value(field, value, f"value-{index}")
                rule = {
                    "attributeType": int(AttributeType.PROFILE_FIELD),
                    "attributeId": field.name,
                    "operator": int(Operator.ONLY),
                    "value": value,
                }
        except ValueError as exc:
            raise RowError(f"value-{index}", str(exc)) from None
        except DomainError as exc:
            raise RowError(f"value-{index}", error_text(exc)) from None
        if row.join == "or" and ands:
            ands[-1].append({"rule": rule})
        else:
            ands.append([{"rule": rule}])
        where[f"{len(ands) - 1}.{len(ands[-1]) - 1}"] = index
    return {"and": [{"or": ors} for ors in ands]}, where


def rule_errors(exc: DomainError, where: dict[str, int]) -> dict[str, str]:
    """The core's error on a rule placed next to the form row it came from."""
    match = _RULE_PARAMETER.match(exc.parameter or "")
    if match and f"{match[1]}.{match[2]}" in where:
        row = where[f"{match[1]}.{match[2]}"]
        return {f"{_ROW_FIELD.get(match[3], 'value')}-{row}": error_text(exc)}
    if (exc.parameter or "").startswith("rules"):
        return {"rules": error_text(exc)}
    return errors_of(exc, {"name": "name"})


def errors_of(exc: DomainError, fields: dict[str, str]) -> dict[str, str]:
    """field_errors, with an error about the group itself shown for the whole form."""
    errors = field_errors(exc, fields)
    if "groupId" in errors:
        errors[""] = errors.pop("groupId")
    return errors


# ---- pages -------------------------------------------------------------------------------


def _can_write_rules(console: Console) -> bool:
    return console.actor.scope(Permission.MANAGE_GROUPS).account_wide


@router.get("/groups", include_in_schema=False)
def groups_page(console: Console = Depends(administrator)) -> Response:
    return _groups_page(console)


def _member_counts(console: Console, group_ids: list[str] | None = None) -> dict[str, int] | None:
    """Members per group, for those who see the whole account (one grouped count). A count of
    only the members in a department administrator's departments reads every membership of
    the group (hundreds of milliseconds at 200,000 users): its pages list those members
    instead, page by page."""
    if not console.actor.visible_scope().account_wide:
        return None
    return groups.member_counts(console.db, console.actor, group_ids)


def _groups_page(
    console: Console,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    found = groups.list_groups(console.db, console.actor)
    counts = _member_counts(console)
    return console.render(
        "groups.html",
        {
            "groups": found,
            "counts": counts,
            "errors": errors or {},
            "values": values or {},
            "can_manage": not console.actor.scope(Permission.MANAGE_GROUPS).is_empty,
            "can_write_rules": _can_write_rules(console),
        },
        status=status,
        section="groups",
        title="Groups",
    )


@router.post("/groups", include_in_schema=False)
def create_group(
    form: FormData = Depends(posted), console: Console = Depends(administrator)
) -> Response:
    name = text(form, "name")
    try:
        check_form(form)
        group_id = groups.create_group(console.db, console.actor, name, [])
    except DomainError as exc:
        return _groups_page(
            console,
            status=422,
            errors=field_errors(exc, {"name": "name"}),
            values={"name": shown(name)},
        )
    return console.redirect(f"/groups/{group_id}", f"Group {name} has been created.")


def _smart_form_page(
    console: Console,
    *,
    status: int = 200,
    name: str = "",
    rows: list[RuleRow] | None = None,
    errors: dict[str, str] | None = None,
    names: Names | None = None,
) -> Response:
    names = names or load_names(console)
    return console.render(
        "smart_group_new.html",
        {
            "names": names,
            "name": name,
            "rows": [*(rows or []), RuleRow()] if not rows or rows[-1].value else rows,
            "errors": errors or {},
            "countries": _countries(),
            "blank_row": RuleRow(),
        },
        status=status,
        section="groups",
        title="New smart group",
    )


@router.get("/groups/smart/new", include_in_schema=False)
def new_smart_group(console: Console = Depends(administrator)) -> Response:
    if not _can_write_rules(console):
        raise Refused(
            403,
            "Not available",
            "A smart group's rules reach the whole account: only the owner and account "
            "administrators can create smart groups.",
        )
    return _smart_form_page(console)


@router.post("/groups/smart", include_in_schema=False)
def create_smart_group(
    form: FormData = Depends(posted), console: Console = Depends(administrator)
) -> Response:
    names = load_names(console)
    name = text(form, "name")
    rows = form_rows(form)
    try:
        data, where = rows_to_rules(rows, names)
        try:
            check_text(name, "name")
            group_id = groups.create_smart_group(console.db, console.actor, name, data)
        except DomainError as exc:
            errors = rule_errors(exc, where)
            return _smart_form_page(
                console,
                status=422,
                name=shown(name),
                rows=displayed(rows),
                errors=errors,
                names=names,
            )
    except RowError as exc:
        return _smart_form_page(
            console,
            status=422,
            name=shown(name),
            rows=displayed(rows),
            errors={exc.name: exc.message},
            names=names,
        )
    return console.redirect(f"/groups/{group_id}", f"Smart group {name} has been created.")


@router.post("/groups/preview", include_in_schema=False)
def preview(
    form: FormData = Depends(posted), console: Console = Depends(administrator)
) -> Response:
    """How many people the rules being edited would match, without saving them: the live count
    of the smart group form (groups.js posts the form here as the user edits)."""
    names = load_names(console)
    try:
        data, where = rows_to_rules(form_rows(form), names)
    except RowError as exc:
        return JSONResponse({"text": f"Not counted: {exc.message}"}, 422, headers=HEADERS)
    try:
        if not data["and"]:
            raise invalid("rules.and", "add a condition to count who it matches")
        count = groups.count_matching(console.db, console.actor, data, text(form, "group") or None)
    except DomainError as exc:
        message = next(iter(rule_errors(exc, where).values()))
        return JSONResponse({"text": f"Not counted: {message}"}, 422, headers=HEADERS)
    words = "1 person matches" if count == 1 else f"{count:,} people match"
    return JSONResponse({"count": count, "text": f"{words} these rules."}, headers=HEADERS)


@functools.cache
def _countries() -> list[str]:
    return sorted(str(c.name) for c in pycountry.countries)


def _members(
    console: Console, group_id: str, after: str | None, visible: list[Department]
) -> dict[str, Any]:
    """A page of the members the actor may see (50, keyset by id), with the names of the
    `visible` departments."""
    try:
        views, next_token = groups.member_page(
            console.db, console.actor, group_id, PAGE_SIZE, after or None
        )
    except DomainError as exc:
        return {"members": [], "next": None, "members_error": error_text(exc)}
    names = {d.id: d.name for d in visible}
    return {
        "members": views,
        "next": next_token,
        "department_names": names,
        "members_error": None,
    }


def _group_page(
    console: Console,
    group_id: str,
    *,
    after: str | None = None,
    status: int = 200,
    errors: dict[str, dict[str, str]] | None = None,
    values: dict[str, dict[str, str]] | None = None,
    rows: list[RuleRow] | None = None,
) -> Response:
    found = groups.group_info(console.db, console.actor, group_id)
    counts = _member_counts(console, [found.id])
    count = None if counts is None else counts.get(found.id, 0)
    # A smart group's page names departments, groups and fields in its rules; read them once.
    names = load_names(console) if found.is_smart else None
    visible = (
        names.departments
        if names is not None
        else departments.list_departments(console.db, console.actor)
    )
    context: dict[str, Any] = {
        "group": found,
        "count": count,
        "after": after or "",
        "page_size": PAGE_SIZE,
        "form_errors": errors or {},
        "form_values": values or {},
        "can_write_rules": _can_write_rules(console),
        **_members(console, found.id, after, visible),
    }
    if names is not None:
        rules = groups.get_smart_group_rules(console.db, console.actor, found.id).rules
        shown = rows if rows is not None else rules_rows(rules, names)
        context.update(
            names=names,
            words=rules_words(rules, names),
            rows=[*shown, RuleRow()] if not shown or shown[-1].value else shown,
            countries=_countries(),
            blank_row=RuleRow(),
        )
    return console.render(
        "smart_group.html" if found.is_smart else "group.html",
        context,
        status=status,
        section="groups",
        title=found.name,
    )


@router.get("/groups/{group_id}", include_in_schema=False)
def group_page(
    group_id: str, after: str = "", console: Console = Depends(administrator)
) -> Response:
    return _group_page(console, group_id, after=after)


@router.post("/groups/{group_id}/rename", include_in_schema=False)
def rename_group(
    group_id: str, form: FormData = Depends(posted), console: Console = Depends(administrator)
) -> Response:
    name = text(form, "name")
    try:
        check_form(form)
        groups.rename_group(console.db, console.actor, group_id, name)
    except DomainError as exc:
        return _group_page(
            console,
            group_id,
            status=422,
            errors={"rename": errors_of(exc, {"name": "name"})},
            values={"rename": {"name": shown(name)}},
        )
    return console.redirect(f"/groups/{group_id}", "The group has been renamed.")


@router.post("/groups/{group_id}/delete", include_in_schema=False)
def delete_group(
    group_id: str, form: FormData = Depends(posted), console: Console = Depends(administrator)
) -> Response:
    found = groups.group_info(console.db, console.actor, group_id)
    try:
        groups.delete_group(console.db, console.actor, found.id)
    except DomainError as exc:
        return _group_page(console, found.id, status=422, errors={"delete": {"": error_text(exc)}})
    return console.redirect("/groups", f"Group {found.name} has been deleted.")


def _keys(raw: str) -> list[str]:
    return list(dict.fromkeys(k.strip() for k in _SEPARATORS.split(raw) if k.strip()))


def find_users(console: Console, keys: list[str]) -> tuple[list[str], list[str]]:
    """The ids of the users named by login or e-mail (through the core's key lookups, within
    what the actor may see), and the keys nobody has."""
    found: dict[str, str] = {}
    emails = [k for k in keys if "@" in k]
    for flt in (UserFilter(logins=tuple(keys)), UserFilter(emails=tuple(emails))):
        if not (flt.logins or flt.emails):
            continue
        for view in list_users(console.db, console.actor, flt):
            for name in ("login", "email"):
                value = view.fields.get(name)
                if value:
                    found.setdefault(fold(value), view.id)
    ids = [found[fold(k)] for k in keys if fold(k) in found]
    unknown = [k for k in keys if fold(k) not in found]
    return list(dict.fromkeys(ids)), unknown


@router.post("/groups/{group_id}/members/add", include_in_schema=False)
def add_members(
    group_id: str, form: FormData = Depends(posted), console: Console = Depends(administrator)
) -> Response:
    raw = text(form, "members")
    keys = _keys(raw)
    try:
        check_form(form)
        if not keys:
            raise invalid("members", "type at least one login or e-mail")
        ids, unknown = find_users(console, keys)
        if unknown:
            raise invalid(
                "members", "nobody has the login or e-mail " + ", ".join(repr(k) for k in unknown)
            )
        added = groups.add_members(console.db, console.actor, group_id, ids)
    except DomainError as exc:
        return _group_page(
            console,
            group_id,
            status=422,
            errors={"add": errors_of(exc, {"userIds": "members"})},
            values={"add": {"members": shown(raw)}},
        )
    n = len(added)
    message = f"{n} member{'' if n == 1 else 's'} added."
    if n < len(ids):
        message += f" {len(ids) - n} {'was' if len(ids) - n == 1 else 'were'} members already."
    return console.redirect(f"/groups/{group_id}", message)


@router.post("/groups/{group_id}/members/remove", include_in_schema=False)
def remove_members(
    group_id: str, form: FormData = Depends(posted), console: Console = Depends(administrator)
) -> Response:
    one = text(form, "remove")
    ids = [one] if one else [v for v in form.getlist("selected") if isinstance(v, str) and v]
    try:
        if not ids:
            raise invalid("userIds", "tick the members to remove")
        removed = groups.remove_members(console.db, console.actor, group_id, ids)
    except DomainError as exc:
        return _group_page(console, group_id, status=422, errors={"remove": {"": error_text(exc)}})
    n = len(removed)
    return console.redirect(f"/groups/{group_id}", f"{n} member{'' if n == 1 else 's'} removed.")


@router.post("/groups/{group_id}/rules", include_in_schema=False)
def save_rules(
    group_id: str, form: FormData = Depends(posted), console: Console = Depends(administrator)
) -> Response:
    names = load_names(console)
    name = text(form, "name")
    rows = form_rows(form)
    try:
        data, where = rows_to_rules(rows, names)
        try:
            check_text(name, "name")
            groups.update_smart_group(console.db, console.actor, group_id, name, data)
        except DomainError as exc:
            errors = rule_errors(exc, where)
            if "groupId" in errors:
                errors[""] = errors.pop("groupId")
            return _group_page(
                console,
                group_id,
                status=status_of(exc),
                errors={"rules": errors},
                values={"rules": {"name": shown(name)}},
                rows=displayed(rows),
            )
    except RowError as exc:
        return _group_page(
            console,
            group_id,
            status=422,
            errors={"rules": {exc.name: exc.message}},
            values={"rules": {"name": shown(name)}},
            rows=displayed(rows),
        )
    return console.redirect(f"/groups/{group_id}", "The smart group has been saved.")
