"""An import file's headers mapped to what they hold: the vendor's template columns, the
account's profile fields by name or label, learndir's own columns; unknown, repeated and
missing columns named in one error."""

from __future__ import annotations

import pytest

from learndir.core.errors import DomainError
from learndir.core.imports.columns import ColumnKind, map_columns
from learndir.core.profile_fields import BUILTIN_FIELDS, ProfileField


def field(name: str, label: str, builtin: bool = False) -> ProfileField:
    return ProfileField(
        id=name,
        key=name.upper(),
        name=name,
        label=label,
        type="string",
        is_builtin=builtin,
        is_required=False,
        is_unique=False,
        order_priority=0,
    )


FIELDS = [field(name, label, True) for name, label, *_ in BUILTIN_FIELDS] + [
    field("employee_id", "Employee ID"),
    field("country", "Country"),
]


def test_the_vendors_template_columns() -> None:
    headers = [
        "Login",
        "Email",
        "First Name",
        "Last Name",
        "Job Title",
        "Phone",
        "Department ID",
        "Department code",
        "Status",
        "Password",
        "Group",
        "Group",
        "Add to Group",
    ]
    mapped = map_columns(headers, FIELDS)
    assert mapped.field_index() == {
        "login": 0,
        "email": 1,
        "first_name": 2,
        "last_name": 3,
        "job_title": 4,
        "phone": 5,
    }
    assert [c.index for c in mapped.of(ColumnKind.GROUP)] == [10, 11]
    assert [c.kind for c in mapped.columns[6:10]] == [
        ColumnKind.DEPARTMENT_ID,
        ColumnKind.DEPARTMENT_CODE,
        ColumnKind.STATUS,
        ColumnKind.PASSWORD,
    ]
    assert mapped.of(ColumnKind.ADD_TO_GROUP)[0].index == 12


def test_fields_by_name_or_label_and_learndirs_own_columns() -> None:
    headers = [
        "LOGIN",
        "employee_id",
        "country",
        "first-name",
        "Department path",
        "Manager login",
        "Role",
        "Managed departments",
        "Active",
    ]
    mapped = map_columns(headers, FIELDS)
    assert mapped.field_index() == {"login": 0, "employee_id": 1, "country": 2, "first_name": 3}
    assert [c.kind for c in mapped.columns[4:]] == [
        ColumnKind.DEPARTMENT_PATH,
        ColumnKind.MANAGER_LOGIN,
        ColumnKind.ROLE,
        ColumnKind.MANAGED_DEPARTMENTS,
        ColumnKind.ACTIVE,
    ]
    by_label = map_columns(["Login", "Employee ID"], FIELDS)
    assert by_label.field_index() == {"login": 0, "employee_id": 1}


def test_an_account_field_wins_over_a_learndir_column_name() -> None:
    mapped = map_columns(["Login", "Role"], [*FIELDS, field("role", "Role")])
    assert mapped.field_index() == {"login": 0, "role": 1}
    assert not mapped.of(ColumnKind.ROLE)


def test_problems_are_named_together() -> None:
    with pytest.raises(DomainError) as caught:
        map_columns(["Email", "Shoe size", "E-mail", "Department ID", "department_id"], FIELDS)
    error = caught.value
    assert error.parameter == "columns"
    assert error.reason is not None
    assert "unknown column(s) 'Shoe size'" in error.reason
    assert "'department_id' (the same as 'Department ID')" in error.reason
    assert "there is no Login column" in error.reason
    assert "'E-mail' (the same as 'Email')" in error.reason
