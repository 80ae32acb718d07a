"""What a stock WSDL client can do with the served WSDL: zeep must be able to pass every
parameter of both seed documents by name (no anonymous `_value_1` anywhere), roles included,
in both generations."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import zeep

from learndir.core.auth import authenticate_token
from learndir.core.users.queries import get_user
from tests.api.soap.helpers import auth, raw, unique
from tests.support import Server, World

SEEDS = Path("/work/shared/seeds")
# What the two seed documents list, in case their text cannot be read here.
SEED_PARAMETERS = {
    "credentials",
    "token",
    "email",
    "login",
    "password",
    "departmentId",
    "sendLoginEmail",
    "invitationMessage",
    "sendLoginSMS",
    "invitationSMSMessage",
    "role",
    "roleId",
    "manageableDepartmentIds",
    "groups",
    "roles",
}
_SEED_ROW = re.compile(r"^([A-Za-z]+) *\((?:required|optional)", re.MULTILINE)


def _seed_parameters() -> set[str]:
    found: set[str] = set()
    for seed in sorted(SEEDS.glob("*.txt")) if SEEDS.is_dir() else []:
        found |= set(_SEED_ROW.findall(seed.read_text(encoding="utf-8")))
    return found | SEED_PARAMETERS


@pytest.fixture(scope="module")
def client(server: Server) -> zeep.Client:
    return zeep.Client(f"{server.base_url}/soap?wsdl")


def _signature_names(client: zeep.Client, operation: str) -> list[str]:
    """The parameter names of an operation, as zeep shows them (`AddUser(credentials: ..., )`)."""
    doc = getattr(client.service, operation).__doc__
    inside = doc[doc.index("(") + 1 : doc.index(") ->")]
    return [part.split(":")[0].strip() for part in inside.split(", ")]


def _types_reached(client: zeep.Client, operation: str) -> dict[str, str]:
    """Every named complex type an operation's request reaches, with zeep's signature of it."""
    element = client.wsdl.types.get_element(f"{{{client.wsdl.types.prefix_map['ns0']}}}{operation}")
    seen: dict[str, str] = {}
    stack = [element.type]
    while stack:
        xsd_type = stack.pop()
        for _, child in getattr(xsd_type, "elements", []):
            child_type = child.type
            name = getattr(child_type, "qname", None)
            if name is None or not hasattr(child_type, "elements") or str(name) in seen:
                continue
            seen[str(name)] = child_type.signature(schema=client.wsdl.types)
            stack.append(child_type)
    return seen


@pytest.mark.parametrize("operation", ["AddUserRequest", "UpdateUserProfileRequest"])
def test_every_type_is_filled_by_name(client: zeep.Client, operation: str) -> None:
    reached = _types_reached(client, operation)
    assert "{http://ispringlearn.com/go/services/api/soap}UserRoleList" in reached
    for name, signature in reached.items():
        assert "_value_" not in signature, (name, signature)


def test_every_seed_parameter_by_name(client: zeep.Client) -> None:
    names = _signature_names(client, "AddUser")
    missing = _seed_parameters() - set(names)
    assert not missing, (missing, names)
    assert "fields" in names
    assert not [n for n in names if n.startswith("_value")]
    roles = client.get_type("ns0:UserRoleList").signature(schema=client.wsdl.types)
    assert "id: xsd:string[]" in roles and "userRole: ns0:UserRole[]" in roles


def _roles_of(world: World, user_id: str) -> dict[str, list[str]]:
    actor = authenticate_token(world.db, world.token("owner"))
    return {role.kind.value: managed for role, managed in get_user(world.db, actor, user_id).roles}


@pytest.mark.parametrize("generation", ["credentials", "token"])
def test_roles_as_an_id_list(client: zeep.Client, world: World, generation: str) -> None:
    """roles={"id": [...]} like groups and manageableDepartmentIds; the administrative role
    manages the departments given top-level."""
    sales = world.departments["sales"]
    user_id = client.service.AddUser(
        **auth(world, generation),
        login=unique("zroles"),
        departmentId=sales,
        sendLoginEmail=False,
        roles={"id": [world.roles["learner"], world.roles["department_administrator"]]},
        manageableDepartmentIds={"id": [sales]},
        groups={"id": [world.groups["Newcomers"]]},
        fields={"field": [{"name": "employee_id", "value": unique("E")}]},
    )
    assert _roles_of(world, user_id) == {"learner": [], "department_administrator": [sales]}
    profile = client.service.GetUserProfile(**auth(world, generation), userId=user_id)
    assert profile.role == "department_administrator"
    assert profile.manageableDepartmentIds.id == [sales]


@pytest.mark.parametrize("generation", ["credentials", "token"])
def test_roles_with_their_departments(client: zeep.Client, world: World, generation: str) -> None:
    eu = world.departments["sales-eu"]
    user_id = client.service.AddUser(
        **auth(world, generation),
        login=unique("zrich"),
        departmentId=world.departments["sales"],
        sendLoginEmail=False,
        roles={
            "id": [world.roles["learner"]],
            "userRole": [
                {"roleId": world.roles["department_administrator"]},
            ],
        },
        manageableDepartmentIds={"id": [eu]},
        fields={"field": [{"name": "employee_id", "value": unique("E")}]},
    )
    assert _roles_of(world, user_id) == {"learner": [], "department_administrator": [eu]}
    client.service.UpdateUserProfile(
        **auth(world, generation),
        userId=user_id,
        roles={
            "userRole": [
                {
                    "roleId": world.roles["department_administrator"],
                    "manageableDepartmentIds": {"id": [world.departments["sales"]]},
                }
            ]
        },
    )
    assert _roles_of(world, user_id) == {"department_administrator": [world.departments["sales"]]}
    client.service.UpdateUserProfile(
        **auth(world, generation), userId=user_id, roles={"id": [world.roles["learner"]]}
    )
    assert _roles_of(world, user_id) == {"learner": []}


def test_role_items_in_any_order_in_raw_xml(server: Server, world: World) -> None:
    """A hand-written envelope may put a userRole before an id: the same roles."""
    eu = world.departments["sales-eu"]
    login = unique("rawroles")
    response = raw(
        server,
        "AddUserRequest",
        f"<token>{world.token('owner')}</token><login>{login}</login>"
        f"<departmentId>{world.departments['sales']}</departmentId>"
        "<roles><userRole>"
        f"<roleId>{world.roles['department_administrator']}</roleId>"
        f"<manageableDepartmentIds><id>{eu}</id></manageableDepartmentIds>"
        f"</userRole><id>{world.roles['learner']}</id></roles>"
        f"<fields><field><name>employee_id</name><value>{unique('E')}</value></field></fields>",
    )
    assert response.status_code == 200, response.text
    user_id = re.search(r"<userId>([^<]+)</userId>", response.text)
    assert user_id is not None
    assert _roles_of(world, user_id.group(1)) == {
        "learner": [],
        "department_administrator": [eu],
    }


def test_profile_fields_as_name_value_items(client: zeep.Client, world: World) -> None:
    """The profile comes back as the REST API writes it: LOGIN and EMAIL first, upper case."""
    login = unique("zfields")
    user_id = client.service.AddUser(
        token=world.token("owner"),
        login=login,
        email=f"{login}@acme.test",
        departmentId=world.departments["sales"],
        first_name="Zoe",
        fields={"field": [{"name": "employee_id", "value": unique("E")}]},
    )
    profile: Any = client.service.GetUserProfile(token=world.token("owner"), userId=user_id)
    pairs = [(f.name, f.value) for f in profile.fields.field]
    assert pairs[:3] == [("LOGIN", login), ("EMAIL", f"{login}@acme.test"), ("FIRST_NAME", "Zoe")]
    assert "EMPLOYEE_ID" in {name for name, _ in pairs}
