"""SCIM documents without HTTP: schema, canonical form, projection, filters and PATCH, with the
requests Okta and Entra really send."""

from __future__ import annotations

from typing import Any

import pytest
from scim2_models import EnterpriseUser, Group, User
from sqlalchemy import column, literal

from learndir.core.errors import DomainError, ErrorCode
from learndir.core.scim.attributes import (
    ResourceSchema,
    canonical_document,
    drop_never,
    project,
)
from learndir.core.scim.filters import (
    And,
    Compare,
    Condition,
    Leaf,
    Not,
    Or,
    Present,
    ValuePath,
    matches,
    parse_filter,
    to_sql,
)
from learndir.core.scim.patch import PATCH_OP, apply_patch

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"


def _schema_doc(model: Any) -> dict[str, Any]:
    return dict(model.to_schema().model_dump(mode="json", exclude_none=True))


USERS = ResourceSchema.from_documents(_schema_doc(User), [_schema_doc(EnterpriseUser)])
GROUPS = ResourceSchema.from_documents(_schema_doc(Group), [])

ALICE: dict[str, Any] = {
    "schemas": [CORE_USER, ENTERPRISE],
    "id": "u1",
    "externalId": "Ext-1",
    "userName": "Alice@Example.com",
    "name": {"givenName": "Alice", "familyName": "Smith"},
    "active": True,
    "emails": [
        {"value": "alice@x.com", "type": "work", "primary": True},
        {"value": "alice@home.org", "type": "home"},
    ],
    "meta": {"resourceType": "User", "lastModified": "2024-05-13T04:42:34Z"},
    ENTERPRISE: {"employeeNumber": "701984", "manager": {"value": "u9"}},
}


def _fails(code: ErrorCode, call: Any, *args: Any) -> DomainError:
    with pytest.raises(DomainError) as caught:
        call(*args)
    assert caught.value.code is code, caught.value.describe()
    return caught.value


# --- Schema ---------------------------------------------------------------------------------


def test_schema_adds_common_attributes_and_resolves_paths() -> None:
    assert USERS.core_urn == CORE_USER
    assert USERS.extension_urns == (ENTERPRISE,)
    id_ = USERS.attribute(None, "ID")
    assert id_ is not None and id_.mutability == "readOnly" and id_.returned == "always"
    meta = USERS.attribute(None, "meta")
    assert meta is not None and meta.sub("lastmodified") is not None
    ref = USERS.resolve("name.GIVENNAME")
    assert ref is not None and (ref.urn, ref.name, ref.sub) == (None, "name", "givenName")
    ref = USERS.resolve(f"{CORE_USER}:emails.value")
    assert ref is not None and (ref.urn, ref.name, ref.sub) == (None, "emails", "value")
    ref = USERS.resolve(f"{ENTERPRISE.lower()}:manager.value")
    assert ref is not None and (ref.urn, ref.name, ref.sub) == (ENTERPRISE, "manager", "value")
    ref = USERS.resolve(ENTERPRISE)
    assert ref is not None and ref.is_extension
    assert USERS.resolve("nope") is None
    assert USERS.resolve("name.nope") is None


# --- Canonical documents --------------------------------------------------------------------


def test_canonical_document_from_entra() -> None:
    doc = canonical_document(
        {
            "schemas": [CORE_USER, ENTERPRISE],
            "UserName": "bob@x.com",
            "Active": "False",
            "id": "ignored",
            "meta": {"resourceType": "User"},
            "groups": [{"value": "g1"}],
            "displayName": None,
            "Emails": {"Value": "bob@x.com", "Primary": "true", "Type": "work"},
            ENTERPRISE.upper(): {"Manager": "u9", "EmployeeNumber": "12"},
        },
        USERS,
    )
    assert doc == {
        "schemas": [CORE_USER, ENTERPRISE],
        "userName": "bob@x.com",
        "active": False,
        "emails": [{"value": "bob@x.com", "primary": True, "type": "work"}],
        ENTERPRISE: {"manager": {"value": "u9"}, "employeeNumber": "12"},
    }


def test_canonical_document_empty_manager_and_microsoft_group_extension() -> None:
    doc = canonical_document({"userName": "b", ENTERPRISE: {"manager": ""}}, USERS)
    assert doc == {"userName": "b"}
    microsoft = "urn:ietf:params:scim:schemas:extension:Microsoft:2.0:Group"
    group = canonical_document(
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group", microsoft],
            "displayName": "G",
            microsoft: {"x": 1},
        },
        GROUPS,
    )
    assert group["displayName"] == "G" and microsoft not in group


@pytest.mark.parametrize(
    ("doc", "parameter"),
    [
        ({"userNam": "x"}, "userNam"),
        ({"userName": ["a"]}, "userName"),
        ({"userName": {"a": 1}}, "userName"),
        ({"active": "yes"}, "active"),
        ({"name": {"nickname": "x"}}, "name.nickname"),
        ({ENTERPRISE: {"boss": "x"}}, "boss"),
        ({"urn:example:unlisted": {"a": 1}}, "urn:example:unlisted"),
    ],
)
def test_canonical_document_refuses(doc: dict[str, Any], parameter: str) -> None:
    error = _fails(ErrorCode.INVALID_VALUE, canonical_document, doc, USERS)
    assert error.parameter == parameter
    assert error.reason and parameter in error.reason


# --- Projection -----------------------------------------------------------------------------


def test_project_attributes_keeps_always_and_selection() -> None:
    doc = {**ALICE, "password": "secret"}
    assert project(doc, USERS, ["userName"], None) == {
        "schemas": ALICE["schemas"],
        "id": "u1",
        "userName": "Alice@Example.com",
    }
    assert project(doc, USERS, ["NAME.givenName", f"{ENTERPRISE}:manager"], None) == {
        "schemas": ALICE["schemas"],
        "id": "u1",
        "name": {"givenName": "Alice"},
        ENTERPRISE: {"manager": {"value": "u9"}},
    }
    assert project(doc, USERS, ["emails.value", "meta"], None)["emails"] == [
        {"value": "alice@x.com"},
        {"value": "alice@home.org"},
    ]
    assert "meta" in project(doc, USERS, ["meta"], None)
    assert "password" not in project(doc, USERS, ["password"], None)


def test_project_excluded_attributes() -> None:
    doc = {**ALICE, "password": "secret"}
    projected = project(doc, USERS, None, ["emails", "name.familyName", "id", ENTERPRISE])
    assert projected["id"] == "u1"
    assert "emails" not in projected and ENTERPRISE not in projected
    assert projected["name"] == {"givenName": "Alice"}
    assert "password" not in projected and "meta" in projected
    assert project(doc, USERS, None, [f"{ENTERPRISE}:employeeNumber"])[ENTERPRISE] == {
        "manager": {"value": "u9"}
    }


def test_drop_never() -> None:
    assert drop_never({**ALICE, "password": "secret"}, USERS) == ALICE


# --- Filters --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('userName eq "alice@example.com"', True),
        ('userName EQ "ALICE@EXAMPLE.COM"', True),
        ('userName Ne "alice@example.com"', False),
        ('userName co "example"', True),
        ('userName sw "alice"', True),
        ('userName ew ".com"', True),
        ('userName ew ".org"', False),
        ('externalId eq "ext-1"', False),
        ('externalId eq "Ext-1"', True),
        ('id eq "U1"', False),
        ("active eq true", True),
        ("active eq FALSE", False),
        ("title pr", False),
        ('title ne "x"', True),
        ("title eq null", True),
        ("name.givenName pr", True),
        ('emails.value eq "alice@home.org"', True),
        ('emails eq "ALICE@HOME.ORG"', True),
        ('emails[type eq "work" and value co "@x"]', True),
        ('emails[type eq "home" and value co "@x"]', False),
        ('emails[type eq "work"].value eq "alice@x.com"', True),
        ('emails[type eq "home"].value eq "alice@x.com"', False),
        ('emails[not (type eq "work")]', True),
        ('meta.lastModified gt "2024-05-13T00:00:00Z"', True),
        ('meta.lastModified lt "2024-05-13T06:00:00+02:00"', False),
        ('meta.lastModified ge "2024-05-13T04:42:34.000Z"', True),
        (f'{ENTERPRISE}:employeeNumber eq "701984"', True),
        (f'{ENTERPRISE}:manager.value eq "u9"', True),
        ('userName eq "bob" or name.givenName sw "al"', True),
        ('(userName eq "bob" or active eq true) and not (title pr)', True),
        ('userName eq "bob" or active eq true and title pr', False),
        ('displayName eq "A \\"quoted\\" name"', False),
    ],
)
def test_filter_matches(text: str, expected: bool) -> None:
    assert matches(parse_filter(text, USERS), ALICE) is expected


def test_filter_numbers_and_tree() -> None:
    node = parse_filter('userName eq "x" and not (emails[type eq "work"])', USERS)
    assert isinstance(node, And) and isinstance(node.b, Not)
    assert isinstance(node.b.x, ValuePath) and node.b.x.attr.name == "emails"
    compare = node.a
    assert isinstance(compare, Compare) and (compare.op, compare.value) == ("eq", "x")
    literal_true = parse_filter('userName eq "true"', USERS)
    assert isinstance(literal_true, Compare) and literal_true.value == "true"
    members = parse_filter('members[value eq "42"]', GROUPS)
    assert matches(members, {"members": [{"value": "42"}]})


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("userName eq", "userName eq"),
        ('(userName eq "x"', "parenthesis"),
        ('emails[type eq "work"', "closing bracket"),
        ('userName foo "x"', "foo"),
        ('nickNames eq "x"', "nickNames"),
        ('name.nope eq "x"', "name.nope"),
        ('emails[nope eq "x"]', "nope"),
        ("active gt true", "boolean"),
        ('name gt "x"', "complex"),
        ("userName eq bob", "bob"),
        ("userName co 5", "co"),
        ("", "empty"),
        ("userName eq 10", "string"),
        ('active eq "yes"', "boolean"),
        ("not userName pr", "userName"),
        ('userName eq "x', "closing quote"),
    ],
)
def test_filter_errors(text: str, word: str) -> None:
    error = _fails(ErrorCode.INVALID_FILTER, parse_filter, text, USERS)
    assert error.parameter == "filter"
    assert error.reason and word in error.reason


def _leaf(node: Leaf) -> Condition:
    """Fake translator: userName exactly, emails roughly, anything else not at all."""
    if isinstance(node, Compare) and node.path.name == "userName":
        return column("user_name") == literal(node.value), True
    if isinstance(node, ValuePath) or (isinstance(node, Present) and node.path.name == "emails"):
        return column("email").is_not(None), False
    return None, False


def test_to_sql_combination_rules() -> None:
    def sql(text: str) -> tuple[str | None, bool]:
        condition, exact = to_sql(parse_filter(text, USERS), _leaf)
        return (str(condition) if condition is not None else None), exact

    assert sql('userName eq "a"') == ("user_name = :param_1", True)
    assert sql('userName eq "a" and userName eq "b"')[1] is True
    assert sql('userName eq "a" and title eq "b"') == ("user_name = :param_1", False)
    assert sql('title eq "b" and userName eq "a"') == ("user_name = :param_1", False)
    assert sql('title eq "a" and title eq "b"') == (None, False)
    condition, exact = sql('userName eq "a" or userName eq "b"')
    assert condition and " OR " in condition and exact
    condition, exact = sql('userName eq "a" or emails[type eq "work"]')
    assert condition and " OR " in condition and not exact
    assert sql('userName eq "a" or title eq "b"') == (None, False)
    condition, exact = sql('not (userName eq "a")')
    assert condition == "user_name != :param_1" and exact
    assert sql("not (emails pr)") == (None, False)
    assert sql("not (title pr)") == (None, False)


def test_filter_node_types() -> None:
    assert isinstance(parse_filter("title pr", USERS), Present)
    assert isinstance(parse_filter('title eq "a" or title eq "b"', USERS), Or)


# --- PATCH ----------------------------------------------------------------------------------


def _patch(doc: dict[str, Any], *operations: dict[str, Any], schema: ResourceSchema = USERS) -> Any:
    return apply_patch(doc, {"schemas": [PATCH_OP], "Operations": list(operations)}, schema)


def test_okta_replace_without_path() -> None:
    result = _patch(ALICE, {"op": "replace", "value": {"active": False}})
    assert result["active"] is False and ALICE["active"] is True


def test_okta_group_members() -> None:
    group = {"displayName": "G", "members": [{"value": "a"}, {"value": "b"}]}
    result = _patch(group, {"op": "remove", "path": 'members[value eq "a"]'}, schema=GROUPS)
    assert result["members"] == [{"value": "b"}]
    result = _patch(
        result,
        {"op": "add", "path": "members", "value": [{"value": "c", "display": "C"}, {"value": "b"}]},
        schema=GROUPS,
    )
    assert result["members"] == [{"value": "b"}, {"value": "c", "display": "C"}]
    unchanged = _patch(group, {"op": "remove", "path": 'members[value eq "z"]'}, schema=GROUPS)
    assert unchanged == group
    emptied = _patch(group, {"op": "remove", "path": "members"}, schema=GROUPS)
    assert emptied == {"displayName": "G"}


def test_entra_replace_boolean_string_and_add_work_email() -> None:
    doc = {"userName": "b", "emails": [{"value": "b@home.org", "type": "home"}]}
    result = _patch(
        doc,
        {"op": "Replace", "path": "active", "value": "False"},
        {"op": "Add", "path": 'emails[type eq "work"].value', "value": "b@x.com"},
    )
    assert result["active"] is False
    assert result["emails"] == [
        {"value": "b@home.org", "type": "home"},
        {"type": "work", "value": "b@x.com"},
    ]
    again = _patch(
        result, {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "n@x"}
    )
    assert again["emails"][1] == {"type": "work", "value": "n@x"}
    created = _patch(doc, {"op": "replace", "path": 'emails[type eq "other"].value', "value": "o"})
    assert created["emails"][1] == {"type": "other", "value": "o"}


def test_entra_no_path_dotted_and_extension_keys() -> None:
    result = _patch(
        ALICE,
        {
            "op": "Add",
            "value": {
                "name.givenName": "Alicia",
                "Title": "CTO",
                f"{ENTERPRISE}:employeeNumber": "42",
                ENTERPRISE: {"department": "R&D"},
            },
        },
    )
    assert result["name"] == {"givenName": "Alicia", "familyName": "Smith"}
    assert result["title"] == "CTO"
    assert result[ENTERPRISE]["employeeNumber"] == "42"
    assert result[ENTERPRISE]["department"] == "R&D"
    assert result[ENTERPRISE]["manager"] == {"value": "u9"}


def test_entra_remove_listed_members_only() -> None:
    group = {"displayName": "G", "members": [{"value": "a"}, {"value": "b"}]}
    result = _patch(
        group, {"op": "Remove", "path": "members", "value": [{"value": "a"}]}, schema=GROUPS
    )
    assert result["members"] == [{"value": "b"}]


def test_entra_manager_as_string() -> None:
    doc = {"userName": "b"}
    added = _patch(doc, {"op": "Add", "path": f"{ENTERPRISE}:manager", "value": "u7"})
    assert added[ENTERPRISE] == {"manager": {"value": "u7"}}
    cleared = _patch(added, {"op": "Replace", "path": f"{ENTERPRISE}:manager", "value": ""})
    assert ENTERPRISE not in cleared
    ref_null = _patch(
        doc, {"op": "add", "path": f"{ENTERPRISE}:manager", "value": {"value": "u7", "$ref": None}}
    )
    assert ref_null[ENTERPRISE] == {"manager": {"value": "u7"}}


def test_replace_complex_whole_and_sub() -> None:
    whole = _patch(ALICE, {"op": "replace", "path": "name", "value": {"givenName": "A"}})
    assert whole["name"] == {"givenName": "A"}
    sub = _patch(ALICE, {"op": "replace", "path": "name.familyName", "value": "Jones"})
    assert sub["name"] == {"givenName": "Alice", "familyName": "Jones"}
    merged = _patch(ALICE, {"op": "add", "path": "name", "value": {"formatted": "A S"}})
    assert merged["name"] == {"givenName": "Alice", "familyName": "Smith", "formatted": "A S"}
    emails = _patch(ALICE, {"op": "replace", "path": "emails", "value": {"value": "n@x.com"}})
    assert emails["emails"] == [{"value": "n@x.com"}]


def test_remove_forms() -> None:
    assert "title" not in _patch({**ALICE, "title": "x"}, {"op": "remove", "path": "title"})
    result = _patch(ALICE, {"op": "remove", "path": "emails.type"})
    assert [set(e) for e in result["emails"]] == [{"value", "primary"}, {"value"}]
    result = _patch(ALICE, {"op": "remove", "path": 'emails[type eq "home"]'})
    assert len(result["emails"]) == 1
    result = _patch(ALICE, {"op": "remove", "path": 'emails[type eq "work"].primary'})
    assert "primary" not in result["emails"][0]
    result = _patch(ALICE, {"op": "remove", "path": f"{ENTERPRISE}:employeeNumber"})
    assert result[ENTERPRISE] == {"manager": {"value": "u9"}}
    result = _patch(result, {"op": "remove", "path": f"{ENTERPRISE}:manager"})
    assert ENTERPRISE not in result


def test_primary_stays_unique() -> None:
    result = _patch(
        ALICE, {"op": "replace", "path": 'emails[type eq "home"].primary', "value": True}
    )
    assert [e.get("primary") for e in result["emails"]] == [None, True]
    added = _patch(
        ALICE, {"op": "add", "path": "emails", "value": {"value": "n@x", "primary": True}}
    )
    assert [e.get("primary") for e in added["emails"]] == [None, None, True]


def test_immutable_attribute() -> None:
    group = {"displayName": "G", "members": [{"value": "a"}]}
    change = {"op": "replace", "path": 'members[value eq "a"].value', "value": "b"}
    error = _fails(ErrorCode.READ_ONLY, lambda: _patch(group, change, schema=GROUPS))
    assert error.reason == "members.value is immutable"
    same = _patch(
        group, {"op": "replace", "path": 'members[value eq "a"].value', "value": "a"}, schema=GROUPS
    )
    assert same == group


@pytest.mark.parametrize(
    ("operation", "code", "parameter"),
    [
        ({"op": "remove", "path": "userName"}, ErrorCode.INVALID_VALUE, "userName"),
        ({"op": "replace", "path": "userName", "value": None}, ErrorCode.INVALID_VALUE, "userName"),
        ({"op": "replace", "path": "id", "value": "x"}, ErrorCode.READ_ONLY, "id"),
        ({"op": "add", "path": "groups", "value": [{"value": "g"}]}, ErrorCode.READ_ONLY, "groups"),
        (
            {"op": "replace", "path": "meta.created", "value": "x"},
            ErrorCode.READ_ONLY,
            "meta.created",
        ),
        ({"op": "replace", "value": {"id": "other"}}, ErrorCode.READ_ONLY, "id"),
        ({"op": "remove"}, ErrorCode.NO_TARGET, "path"),
        ({"op": "move", "path": "title"}, ErrorCode.INVALID_VALUE, "op"),
        ({"op": "add", "path": "nope", "value": 1}, ErrorCode.INVALID_PATH, "path"),
        ({"op": "add", "path": "emails[type eq", "value": 1}, ErrorCode.INVALID_PATH, "path"),
        ({"op": "add", "path": 'title[value eq "x"]', "value": 1}, ErrorCode.INVALID_PATH, "path"),
        ({"op": "add", "path": 'emails[nope eq "x"]', "value": 1}, ErrorCode.INVALID_PATH, "path"),
        (
            {"op": "replace", "path": 'emails[type eq "home"]', "value": {"value": "x"}},
            ErrorCode.NO_TARGET,
            "path",
        ),
        ({"op": "add", "value": "x"}, ErrorCode.INVALID_VALUE, "value"),
        ({"op": "add", "path": "active", "value": "maybe"}, ErrorCode.INVALID_VALUE, "active"),
    ],
)
def test_patch_errors(operation: dict[str, Any], code: ErrorCode, parameter: str) -> None:
    doc = {"userName": "b", "emails": [{"value": "b@x", "type": "work"}]}
    error = _fails(code, _patch, doc, operation)
    assert error.parameter == parameter
    assert error.reason


def test_patch_path_error_names_the_path() -> None:
    operation = {"op": "add", "path": 'emails[type eq "work"] extra', "value": "x"}
    error = _fails(ErrorCode.INVALID_PATH, _patch, ALICE, operation)
    assert error.reason == "unexpected 'extra' in 'emails[type eq \"work\"] extra'"


def test_patch_body_checks() -> None:
    _fails(ErrorCode.INVALID_VALUE, apply_patch, ALICE, {"Operations": []}, USERS)
    _fails(ErrorCode.INVALID_VALUE, apply_patch, ALICE, {"schemas": [PATCH_OP]}, USERS)
    result = apply_patch(
        ALICE,
        {"schemas": [PATCH_OP], "operations": [{"op": "add", "path": "title", "value": "x"}]},
        USERS,
    )
    assert result["title"] == "x"
    echoed = _patch(ALICE, {"op": "replace", "value": {"id": "u1", "active": False}})
    assert echoed["id"] == "u1" and echoed["active"] is False
