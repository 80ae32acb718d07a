"""The export of an account's users and the import template, on SQLite and PostgreSQL: the
columns, what each cell holds, who sees whom, and that the file maps back onto the import's
columns."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from learndir.core.account_settings import account_settings
from learndir.core.actor import Actor
from learndir.core.auth import actor_for_login, authenticate_token
from learndir.core.errors import DomainError, ErrorCode
from learndir.core.groups import create_group, create_smart_group
from learndir.core.imports.columns import ColumnKind, map_columns
from learndir.core.imports.export import export_headers, export_users, template_headers
from learndir.core.profile_fields import ProfileField
from learndir.core.roles import RoleKind
from learndir.core.users.changes import change_status, change_subordination
from learndir.core.users.commands import AddUser, ChangeSubordination, parse_command
from learndir.core.users.service import add_user
from learndir.db.engine import Database
from learndir.db.schema import user_roles, users
from learndir.imports.files import open_table
from learndir.imports.writers import write_csv, write_xlsx
from tests.support import World, acme_spec, make_world

FIELD_HEADERS = [
    "Login",
    "Email",
    "First name",
    "Last name",
    "Job title",
    "Phone",
    "Employee ID",
    "Country",
    "Birthday",
    "Mobile",
]
OWN_HEADERS = [
    "Department ID",
    "Department code",
    "Department path",
    "Status",
    "Role",
    "Managed departments",
    "Manager login",
]


def owner_of(w: World) -> Actor:
    return authenticate_token(w.db, w.token("owner"))


def fields_of(w: World) -> tuple[ProfileField, ...]:
    actor = owner_of(w)
    with w.db.read() as conn:
        return account_settings(conn, actor.account).fields


def add(w: World, login: str, department: str, **extra: Any) -> str:
    cmd = parse_command(
        AddUser,
        {
            "login": login,
            "departmentId": w.departments[department],
            "fields": {"employee_id": f"E-{login}", **extra.pop("fields", {})},
            **extra,
        },
    )
    user_id = add_user(w.db, owner_of(w), cmd)
    w.users[login] = user_id
    return user_id


def exported(w: World, actor: Actor) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The header row and each row by login, its cells by header (Group cells as a list)."""
    headers, rows = export_users(w.db, actor)
    by_login = {}
    for row in rows:
        assert len(row) == len(headers)
        cells: dict[str, Any] = {"Group": []}
        for header, cell in zip(headers, row, strict=True):
            if header == "Group":
                cells["Group"].append(cell)
            else:
                cells[header] = cell
        by_login[cells["Login"]] = cells
    return headers, by_login


@pytest.fixture(scope="module")
def w(db: Database) -> World:
    """acme, plus: a Cyrillic name in Sales EU in two groups and a smart group, an inactive
    and a former employee, a manual supervisor."""
    world = make_world(db, acme_spec(seatLimit=None))
    owner = owner_of(world)
    world.groups["Продажи"] = create_group(db, owner, "Продажи", [])
    add(
        world,
        "ivan",
        "sales-eu",
        groups=[world.groups["Newcomers"], world.groups["Продажи"]],
        fields={"first_name": "Иван", "last_name": "Петров", "country": "DE"},
    )
    rules = {
        "and": [
            {
                "or": [
                    {
                        "rule": {
                            "attributeType": 1,
                            "operator": 2,
                            "value": world.departments["sales-eu"],
                        }
                    }
                ]
            }
        ]
    }
    create_smart_group(db, owner, "Everyone in Sales EU", rules)
    add(
        world,
        "lead",
        "sales-us",
        roles=[
            {
                "roleId": world.roles["department_administrator"],
                "manageableDepartmentIds": [
                    world.departments["sales-us"],
                    world.departments["eng"],
                ],
            },
            {"roleId": world.roles["learner"]},
        ],
    )
    add(world, "paused", "eng")
    add(world, "gone", "support")
    change_status(db, owner, [world.users["paused"]], 3)
    change_status(db, owner, [world.users["gone"]], 5)
    change_subordination(
        db,
        owner,
        world.users["ivan"],
        ChangeSubordination.model_validate(
            {
                "subordination": {
                    "subordinationType": "manual",
                    "supervisorId": world.users["sales.admin"],
                }
            }
        ),
    )
    return world


def test_the_header_row(w: World) -> None:
    headers, _ = exported(w, owner_of(w))
    # ivan is in two ordinary groups (the smart one is not counted): two Group columns.
    assert headers == [*FIELD_HEADERS, *OWN_HEADERS, "Group", "Group"]


def test_the_export_and_template_headers_map_onto_the_import_columns(w: World) -> None:
    fields = fields_of(w)
    headers, _ = exported(w, owner_of(w))
    mapped = map_columns(headers, fields)
    assert set(mapped.field_index()) == {f.name for f in fields}
    assert [c.kind for c in mapped.columns[len(fields) :]] == [
        ColumnKind.DEPARTMENT_ID,
        ColumnKind.DEPARTMENT_CODE,
        ColumnKind.DEPARTMENT_PATH,
        ColumnKind.STATUS,
        ColumnKind.ROLE,
        ColumnKind.MANAGED_DEPARTMENTS,
        ColumnKind.MANAGER_LOGIN,
        ColumnKind.GROUP,
        ColumnKind.GROUP,
    ]
    template = template_headers(w.db, owner_of(w))
    assert template == [*FIELD_HEADERS, *OWN_HEADERS, "Group", "Password", "Add to Group"]
    kinds = [c.kind for c in map_columns(template, fields).columns[-3:]]
    assert kinds == [ColumnKind.GROUP, ColumnKind.PASSWORD, ColumnKind.ADD_TO_GROUP]


def field(name: str, label: str, builtin: bool = False) -> ProfileField:
    return ProfileField(name, name.upper(), name, label, "string", builtin, False, False, 0)


def test_a_label_shared_by_two_fields_gives_way_to_the_names() -> None:
    fields = [field("login", "Login", True), field("region", "Area"), field("area", "Area code")]
    # "Area" is the label of region and the name of area: both go by their names.
    headers = export_headers([*fields, field("zone", "Area")], 0)
    assert headers[:4] == ["Login", "region", "Area code", "zone"]
    assert headers[-1] == "Group"
    map_columns(headers, [*fields, field("zone", "Area")])


def test_each_cell(w: World) -> None:
    _, rows = exported(w, owner_of(w))
    ivan = rows["ivan"]
    assert ivan["First name"] == "Иван"
    assert ivan["Last name"] == "Петров"
    assert ivan["Employee ID"] == "E-ivan"
    assert ivan["Country"] == "DE"
    assert ivan["Email"] == ""
    assert ivan["Department ID"] == w.departments["sales-eu"]
    assert ivan["Department code"] == "sales-eu"
    assert ivan["Department path"] == "Acme/Sales/Sales EU"
    assert ivan["Status"] == "Active"
    assert ivan["Role"] == "Learner"
    assert ivan["Managed departments"] == ""
    assert ivan["Manager login"] == "sales.admin"
    # Sorted, the smart group left out.
    assert ivan["Group"] == ["Newcomers", "Продажи"]
    jane = rows["jane.doe"]
    assert jane["Group"] == ["Newcomers", ""]
    assert jane["Job title"] == "Account Executive"
    assert jane["Manager login"] == ""
    owner = rows["owner"]
    assert owner["Department path"] == "Acme"
    assert owner["Department code"] == ""
    assert rows["paused"]["Status"] == "Inactive"
    assert rows["gone"]["Status"] == "Employment Ended"


def test_roles_and_the_departments_they_manage(w: World) -> None:
    _, rows = exported(w, owner_of(w))
    lead = rows["lead"]
    assert lead["Role"] == "Learner; Department Administrator"
    assert lead["Managed departments"] == "; ".join(
        sorted([w.departments["sales-us"], w.departments["eng"]])
    )
    assert rows["sales.admin"]["Role"] == "Department Administrator"
    assert rows["sales.admin"]["Managed departments"] == w.departments["sales"]
    assert rows["hr.partner"]["Role"] == "HR Partner"
    assert rows["hr.partner"]["Managed departments"] == w.departments["eng"]
    assert rows["admin"]["Role"] == "Account Administrator"
    assert rows["owner"]["Role"] == "Account Owner"


def test_a_department_administrator_exports_their_subtree(w: World) -> None:
    _, rows = exported(w, actor_for_login(w.db, w.account_url, "sales.admin"))
    assert set(rows) == {"sales.admin", "jane.doe", "ivan", "lead"}


def test_a_learner_may_not_export(w: World) -> None:
    learner = actor_for_login(w.db, w.account_url, "jane.doe")
    with pytest.raises(DomainError) as caught:
        export_users(w.db, learner)
    assert caught.value.code is ErrorCode.PERMISSION_DENIED
    with pytest.raises(DomainError) as caught:
        template_headers(w.db, learner)
    assert caught.value.code is ErrorCode.PERMISSION_DENIED


def test_thousands_of_users_are_read_page_by_page(db: Database) -> None:
    world = make_world(db, acme_spec(seatLimit=None))
    learner_role = world.roles[RoleKind.LEARNER.value]
    now = datetime.now(UTC)
    new = [uuid.uuid4().hex for _ in range(3000)]
    with db.write() as conn:
        conn.execute(
            insert(users),
            [
                {
                    "id": str(uuid.UUID(hex=i)),
                    "account_id": world.account_id,
                    "department_id": world.departments["eng"],
                    "login": f"bulk-{i}",
                    "login_key": f"bulk-{i}",
                    "status": 1,
                    "added_at": now,
                }
                for i in new
            ],
        )
        conn.execute(
            insert(user_roles),
            [{"user_id": str(uuid.UUID(hex=i)), "role_id": learner_role} for i in new],
        )
    headers, rows = export_users(db, owner_of(world))
    first = next(rows)
    logins = [first[0], *(row[0] for row in rows)]
    assert len(logins) == 3000 + len(world.users)
    assert len(set(logins)) == len(logins)
    assert {f"bulk-{i}" for i in new} <= set(logins)
    assert headers.count("Group") == 1


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_the_file_reads_back_onto_the_import_columns(w: World, tmp_path: Path, fmt: str) -> None:
    headers, rows = export_users(w.db, owner_of(w))
    written = list(rows)
    path = tmp_path / f"users.{fmt}"
    with path.open("wb") as out:
        (write_csv if fmt == "csv" else write_xlsx)(headers, written, out)
    with open_table(path) as table:
        assert table.headers == headers
        assert [row.cells for row in table.rows] == written
        login = map_columns(table.headers, fields_of(w)).field_index()["login"]
    assert {row[login] for row in written} >= {"ivan", "owner", "jane.doe"}
