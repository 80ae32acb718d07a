"""The console's people search (core.users.search) on both databases: text prefixes of login,
e-mail and names, the filters, keyset pages, the actor's scope and bad criteria."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import yaml

from learndir.core.actor import Actor
from learndir.core.auth import authenticate_token
from learndir.core.errors import DomainError, ErrorCode
from learndir.core.groups import add_members
from learndir.core.users.changes import INACTIVE, change_status
from learndir.core.users.commands import AddUser
from learndir.core.users.search import PeopleCriteria, search_users
from learndir.core.users.service import add_user
from learndir.db.engine import Database
from tests.support import ROOT, World, make_world


def _spec() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "demo.yaml").read_text())
    data["url"] = f"http://s-{uuid.uuid4().hex[:10]}.learn.test"
    return data


@pytest.fixture
def world(db: Database) -> World:
    world = make_world(db, _spec())
    owner = authenticate_token(db, world.token("owner"))
    people = [
        ("anna.berg", "Anna", "Berg", "sales"),
        ("annika.roth", "Annika", "Roth", "sales-eu"),
        ("bert.anders", "Bert", "Anders", "eng"),
        ("carl.nilsson", "Carl", "Nilsson", "eng"),
        ("dora.annan", "Dora", "Annan", "sales"),
    ]
    for login, first, last, dept in people:
        world.users[login] = add_user(
            db,
            owner,
            AddUser(
                login=login,
                email=f"{login}@mail.test",
                department_id=world.departments[dept],
                fields={"first_name": first, "last_name": last},
                groups=[world.groups["Newcomers"]] if dept == "eng" else [],
            ),
        )
    return world


def _actor(world: World, login: str) -> Actor:
    return authenticate_token(world.db, world.token(login))


def _logins(world: World, actor: Actor, **criteria: Any) -> list[str]:
    page = search_users(world.db, actor, PeopleCriteria(**criteria))
    return sorted(u.fields["login"] for u in page.users)


def test_text_matches_prefixes_of_login_email_and_names(world: World) -> None:
    owner = _actor(world, "owner")
    # "ann": anna.berg and annika.roth by login and first name, dora.annan by last name.
    assert _logins(world, owner, text="ann") == ["anna.berg", "annika.roth", "dora.annan"]
    assert _logins(world, owner, text="ANDERS") == ["bert.anders"]
    assert _logins(world, owner, text="carl.nilsson@mail") == ["carl.nilsson"]
    # Two words: first and last name, either way round.
    assert _logins(world, owner, text="anna ber") == ["anna.berg"]
    assert _logins(world, owner, text="annan dora") == ["dora.annan"]
    assert _logins(world, owner, text="nobody") == []


def test_filters_combine(world: World) -> None:
    owner = _actor(world, "owner")
    sales = world.departments["sales"]
    assert _logins(world, owner, department_id=sales) == [
        "anna.berg",
        "annika.roth",
        "dora.annan",
        "sales.admin",
    ]
    assert _logins(world, owner, department_id=sales, with_subdepartments=False) == [
        "anna.berg",
        "dora.annan",
        "sales.admin",
    ]
    assert _logins(world, owner, text="ann", department_id=sales, with_subdepartments=False) == [
        "anna.berg",
        "dora.annan",
    ]
    newcomers = world.groups["Newcomers"]
    assert _logins(world, owner, group_id=newcomers) == ["bert.anders", "carl.nilsson"]
    assert _logins(world, owner, group_id=newcomers, text="carl") == ["carl.nilsson"]
    admin_role = world.roles["department_administrator"]
    assert _logins(world, owner, role_id=admin_role) == ["sales.admin"]
    assert _logins(world, owner, role_id=admin_role, text="sales") == ["sales.admin"]
    change_status(
        world.db, owner, [world.users["carl.nilsson"], world.users["anna.berg"]], INACTIVE
    )
    assert _logins(world, owner, status=INACTIVE) == ["anna.berg", "carl.nilsson"]
    assert _logins(world, owner, status=INACTIVE, text="carl") == ["carl.nilsson"]
    assert _logins(world, owner, status=INACTIVE, group_id=newcomers) == ["carl.nilsson"]


def test_keyset_pages_see_everyone_once(world: World) -> None:
    owner = _actor(world, "owner")
    seen: list[str] = []
    after = None
    while True:
        page = search_users(world.db, owner, PeopleCriteria(), after=after, limit=2)
        seen.extend(u.id for u in page.users)
        after = page.next_after
        if after is None:
            break
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen)) == 7  # owner, sales.admin and five people
    first = search_users(world.db, owner, PeopleCriteria(text="ann"), limit=2)
    rest = search_users(world.db, owner, PeopleCriteria(text="ann"), after=first.next_after)
    assert len(first.users) == 2 and len(rest.users) == 1 and rest.next_after is None


def test_a_department_administrator_sees_only_its_subtree(world: World) -> None:
    admin = _actor(world, "sales.admin")
    assert _logins(world, admin) == ["anna.berg", "annika.roth", "dora.annan", "sales.admin"]
    assert _logins(world, admin, text="ann") == ["anna.berg", "annika.roth", "dora.annan"]
    assert _logins(world, admin, text="bert") == []
    with pytest.raises(DomainError) as caught:
        search_users(world.db, admin, PeopleCriteria(department_id=world.departments["eng"]))
    assert caught.value.parameter == "department"


@pytest.mark.parametrize(
    ("criteria", "after", "parameter"),
    [
        ({"department_id": "junk"}, None, "department"),
        ({"department_id": str(uuid.uuid4())}, None, "department"),
        ({"group_id": "junk"}, None, "group"),
        ({"group_id": str(uuid.uuid4())}, None, "group"),
        ({"role_id": str(uuid.uuid4())}, None, "role"),
        ({"status": 7}, None, "status"),
        ({"text": "x" * 500}, None, "q"),
        ({}, "not-an-id", "after"),
    ],
)
def test_bad_criteria_are_wrong_parameters(
    world: World, criteria: dict[str, Any], after: str | None, parameter: str
) -> None:
    with pytest.raises(DomainError) as caught:
        search_users(world.db, _actor(world, "owner"), PeopleCriteria(**criteria), after=after)
    assert caught.value.code is ErrorCode.INVALID_PARAMETERS
    assert caught.value.parameter == parameter


def test_add_members_adds_only_the_newcomers(world: World) -> None:
    owner = _actor(world, "owner")
    newcomers = world.groups["Newcomers"]
    # bert.anders is a member already; anna.berg joins.
    added = add_members(
        world.db, owner, newcomers, [world.users["bert.anders"], world.users["anna.berg"]]
    )
    assert added == [world.users["anna.berg"]]
    assert _logins(world, owner, group_id=newcomers) == [
        "anna.berg",
        "bert.anders",
        "carl.nilsson",
    ]
    # A department administrator may not add someone outside its departments: nothing joins.
    admin = _actor(world, "sales.admin")
    with pytest.raises(DomainError) as caught:
        add_members(
            world.db, admin, newcomers, [world.users["dora.annan"], world.users["bert.anders"]]
        )
    assert caught.value.code is ErrorCode.PERMISSION_DENIED
    assert "dora.annan" not in _logins(world, owner, group_id=newcomers)
    with pytest.raises(DomainError) as caught:
        add_members(world.db, owner, newcomers, ["junk"])
    assert caught.value.parameter == "userIds"
