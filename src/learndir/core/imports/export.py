"""The users of an account as a table that the import reads back: the export, and the empty
template an import starts from.

Columns, in order: the profile fields (built-in, then the account's own), the department (id,
code and path of names from the root), Status in words, the roles and the departments they
manage, the manual supervisor's login, then one Group column per ordinary group of the user
who is in most (smart groups follow their rules and are left out). Every header is one that
core/imports/columns.map_columns recognises with the account's fields.

Users are read a keyset page at a time (core/users/queries.pages_of_users), so memory stays
flat whatever the account's size; the departments and groups, which are few, are read once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, false, func, select

from learndir.core.account_settings import account_settings
from learndir.core.actor import Actor
from learndir.core.departments import all_in_account
from learndir.core.groups import account_groups
from learndir.core.imports.cells import STATUS_NAMES
from learndir.core.imports.columns import header_key
from learndir.core.profile_fields import ProfileField, list_fields
from learndir.core.users.queries import UserView, pages_of_users, visible_user_ids
from learndir.db.engine import Database
from learndir.db.schema import group_members, groups, users

DEPARTMENT_ID = "Department ID"
DEPARTMENT_CODE = "Department code"
DEPARTMENT_PATH = "Department path"
STATUS = "Status"
ROLE = "Role"
MANAGED_DEPARTMENTS = "Managed departments"
MANAGER_LOGIN = "Manager login"
GROUP = "Group"
PASSWORD = "Password"
ADD_TO_GROUP = "Add to Group"
# learndir's columns after the profile fields, before the Group columns.
_OWN_HEADERS = (
    DEPARTMENT_ID,
    DEPARTMENT_CODE,
    DEPARTMENT_PATH,
    STATUS,
    ROLE,
    MANAGED_DEPARTMENTS,
    MANAGER_LOGIN,
)
# Between the items of a list in one cell (core/imports/cells.list_cell reads it back).
LIST_SEPARATOR = "; "
# Users per page: one query each for the page's users, field values, roles, groups and
# supervisors.
PAGE_SIZE = 1000

Row = tuple[str, ...]


def export_headers(fields: Sequence[ProfileField], group_columns: int) -> list[str]:
    """The header row: each profile field by its label, or by its name when another field or
    column answers to the label too; learndir's own columns; `group_columns` Group columns
    (at least one)."""
    # How many columns and fields answer to each header (a field once, whether by its name,
    # label or public id).
    claimed = Counter(header_key(h) for h in _OWN_HEADERS)
    for f in fields:
        claimed.update({header_key(f.name), header_key(f.label), header_key(f.key)})
    field_headers = [
        f.label if f.label.strip() and claimed[header_key(f.label)] == 1 else f.name for f in fields
    ]
    return [*field_headers, *_OWN_HEADERS, *[GROUP] * max(1, group_columns)]


def template_headers(db: Database, actor: Actor) -> list[str]:
    """The header row of an import file for the actor's account: the export's, with one Group
    column, then Password and Add to Group. Learners may not see the account's fields."""
    return [*export_headers(list_fields(db, actor), 1), PASSWORD, ADD_TO_GROUP]


def export_users(db: Database, actor: Actor) -> tuple[list[str], Iterator[Row]]:
    """The header row and, read as they are iterated, the rows of every user the actor may see
    (their VIEW_USERS scope), in id order. Permission Denied is raised here, before any row."""
    pages = pages_of_users(db, actor, PAGE_SIZE)
    with db.read() as conn:
        fields = account_settings(conn, actor.account).fields
        directory = _Directory.load(conn, actor.account_id)
        widest = _most_groups(conn, actor)
    headers = export_headers(fields, widest)
    return headers, _rows(db, actor, fields, directory, max(1, widest), pages)


# ---- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Directory:
    """The account's departments (id -> code, path of names) and ordinary groups (id -> name)."""

    department_codes: dict[str, str]
    department_paths: dict[str, str]
    group_names: dict[str, str]

    @classmethod
    def load(cls, conn: Connection, account_id: str) -> _Directory:
        departments = all_in_account(conn, account_id)
        names = {d.id: d.name for d in departments}
        return cls(
            department_codes={d.id: d.code or "" for d in departments},
            department_paths={
                d.id: "/".join(names[i] for i in d.path.strip("/").split("/") if i in names)
                for d in departments
            },
            group_names={g.id: g.name for g in account_groups(conn, account_id) if not g.is_smart},
        )


def _most_groups(conn: Connection, actor: Actor) -> int:
    """The most ordinary groups any user the actor may see is in: the number of Group columns,
    which the header row needs before the first user is read."""
    per_user = (
        select(func.count().label("groups"))
        .select_from(group_members.join(groups, groups.c.id == group_members.c.group_id))
        .where(
            groups.c.is_smart.is_(false()),
            group_members.c.user_id.in_(visible_user_ids(conn, actor)),
        )
        .group_by(group_members.c.user_id)
        .subquery()
    )
    return int(conn.execute(select(func.max(per_user.c.groups))).scalar() or 0)


def _supervisor_logins(db: Database, account_id: str, views: Iterable[UserView]) -> dict[str, str]:
    """The logins of the page's manual supervisors, by id: one query by primary key."""
    # A supervisor id is kept only for `manual` subordination (queries.UserView).
    wanted = {v.subordination.supervisor_id for v in views if v.subordination.supervisor_id}
    if not wanted:
        return {}
    with db.read() as conn:
        rows = conn.execute(
            select(users.c.id, users.c.login, users.c.account_id).where(users.c.id.in_(wanted))
        )
        return {r.id: r.login for r in rows if r.account_id == account_id}


def _rows(
    db: Database,
    actor: Actor,
    fields: Sequence[ProfileField],
    directory: _Directory,
    group_columns: int,
    pages: Iterator[list[UserView]],
) -> Iterator[Row]:
    names = [f.name for f in fields]
    for page in pages:
        supervisors = _supervisor_logins(db, actor.account_id, page)
        for view in page:
            yield _row(view, names, directory, group_columns, supervisors)


def _row(
    view: UserView,
    field_names: Sequence[str],
    directory: _Directory,
    group_columns: int,
    supervisors: dict[str, str],
) -> Row:
    managed = dict.fromkeys(d for _, depts in view.roles for d in depts)
    group_cells = sorted(
        directory.group_names[g] for g in view.groups if g in directory.group_names
    )
    if len(group_cells) > group_columns:
        # Groups joined after the columns were counted: the last column lists the rest.
        rest = LIST_SEPARATOR.join(group_cells[group_columns - 1 :])
        group_cells = [*group_cells[: group_columns - 1], rest]
    return (
        *(view.fields.get(name, "") for name in field_names),
        view.department_id,
        directory.department_codes.get(view.department_id, ""),
        directory.department_paths.get(view.department_id, ""),
        STATUS_NAMES.get(view.status, str(view.status)),
        LIST_SEPARATOR.join(role.name for role, _ in view.roles),
        LIST_SEPARATOR.join(managed),
        supervisors.get(view.subordination.supervisor_id or "", ""),
        *group_cells,
        *[""] * (group_columns - len(group_cells)),
    )
