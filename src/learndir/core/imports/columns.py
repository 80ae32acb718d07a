"""Which column of an import file holds what.

Headers are matched case-insensitively, ignoring spaces, underscores and hyphens: the
vendor's import template columns (Login, Email, First Name, Last Name, Job Title, Phone,
Department ID, Department code, Status or the older Active, Password, one Group column per
group, Add to Group), every profile field of the account by its name or its label, and
learndir's own (Department path, Manager login, Role, Managed departments). A column nobody
knows is an error that names it, rather than data silently left behind; only Group and Add to
Group may repeat. The Error column of an import's error report is left out, so the report can
be fixed and uploaded again as it is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from learndir.core.errors import invalid
from learndir.core.profile_fields import ProfileField


class ColumnKind(StrEnum):
    FIELD = "field"  # a profile field, built-in or the account's own
    DEPARTMENT_ID = "department_id"
    DEPARTMENT_CODE = "department_code"
    DEPARTMENT_PATH = "department_path"
    STATUS = "status"  # Active / Inactive / Employment Ended
    ACTIVE = "active"  # the older template: Yes / No
    PASSWORD = "password"
    GROUP = "group"  # together, the user's groups (replacing the ones they are in)
    ADD_TO_GROUP = "add_to_group"  # groups the user joins, leaving the others
    MANAGER_LOGIN = "manager_login"
    ROLE = "role"
    MANAGED_DEPARTMENTS = "managed_departments"


_ALIASES: dict[ColumnKind, tuple[str, ...]] = {
    ColumnKind.DEPARTMENT_ID: ("department id",),
    ColumnKind.DEPARTMENT_CODE: ("department code", "department unique key"),
    ColumnKind.DEPARTMENT_PATH: ("department path", "department"),
    ColumnKind.STATUS: ("status",),
    ColumnKind.ACTIVE: ("active",),
    ColumnKind.PASSWORD: ("password",),
    ColumnKind.GROUP: ("group", "groups"),
    ColumnKind.ADD_TO_GROUP: ("add to group", "add to groups"),
    ColumnKind.MANAGER_LOGIN: ("manager login", "manager", "supervisor login", "supervisor"),
    ColumnKind.ROLE: ("role",),
    ColumnKind.MANAGED_DEPARTMENTS: ("managed departments", "manageable departments"),
}
_REPEATABLE = frozenset({ColumnKind.GROUP, ColumnKind.ADD_TO_GROUP})
_REPORT_COLUMNS = frozenset({"error"})
_SEPARATORS = re.compile(r"[\s_\-]+")


def header_key(header: str) -> str:
    """What headers are matched on: case-folded, without spaces, `_` and `-` ("First Name",
    "first_name" and "FIRSTNAME" are one column, as are "E-mail" and "Email")."""
    return _SEPARATORS.sub("", header.casefold())


@dataclass(frozen=True)
class Column:
    index: int
    header: str
    kind: ColumnKind
    # The profile field's name, for FIELD columns.
    field: str | None = None


@dataclass(frozen=True)
class ColumnMap:
    columns: tuple[Column, ...]

    def of(self, kind: ColumnKind) -> list[Column]:
        return [c for c in self.columns if c.kind is kind]

    def field_index(self) -> dict[str, int]:
        """Profile field name -> the index of its column."""
        return {c.field: c.index for c in self.columns if c.field is not None}


def map_columns(headers: Sequence[str], fields: Sequence[ProfileField]) -> ColumnMap:
    """The meaning of each header; Wrong parameters (`columns`) naming every header that is
    unknown or repeated, or saying that the Login column is missing."""
    known: dict[str, tuple[ColumnKind, str | None]] = {}
    for kind, aliases in _ALIASES.items():
        for alias in aliases:
            known[header_key(alias)] = (kind, None)
    # Profile fields win over learndir's own names (an account field called "Role" is data).
    for f in fields:
        for name in (f.name, f.label, f.key):
            known[header_key(name)] = (ColumnKind.FIELD, f.name)
    columns: list[Column] = []
    unknown: list[str] = []
    seen: dict[tuple[ColumnKind, str | None], str] = {}
    repeated: list[str] = []
    for index, header in enumerate(headers):
        meaning = known.get(header_key(header))
        if meaning is None and header_key(header) in _REPORT_COLUMNS:
            # The reason column of an import's error report, uploaded again once fixed.
            continue
        if meaning is None:
            unknown.append(header)
            continue
        kind, field = meaning
        if kind not in _REPEATABLE and meaning in seen:
            repeated.append(f"{header!r} (the same as {seen[meaning]!r})")
        seen.setdefault(meaning, header)
        columns.append(Column(index, header, kind, field))
    problems = []
    if unknown:
        problems.append(
            "unknown column(s) "
            + ", ".join(repr(h) for h in unknown)
            + ": use the template's columns, a profile field's name or label, or remove them"
        )
    if repeated:
        problems.append("column(s) given twice: " + ", ".join(repeated))
    if not any(c.field == "login" for c in columns):
        problems.append("there is no Login column")
    if problems:
        raise invalid("columns", "; ".join(problems))
    return ColumnMap(tuple(columns))
