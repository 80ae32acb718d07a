"""The core called directly, without any interface, on both databases."""

from __future__ import annotations

import uuid

import pytest

from learndir.core.account_settings import settings_changed
from learndir.core.actor import Scope
from learndir.core.auth import authenticate_token
from learndir.core.errors import DomainError, ErrorCode
from learndir.core.profile_fields import define_field
from learndir.core.roles import ROLE_SPELLINGS, RoleKind
from learndir.core.users.commands import AddUser, ApiGeneration, parse_command
from learndir.core.users.service import add_user
from learndir.db.engine import Database
from tests.support import acme_spec, make_world


def command(root: str, **fields: str) -> AddUser:
    login = f"c{uuid.uuid4().hex[:8]}"
    return parse_command(AddUser, {"login": login, "departmentId": root, "fields": fields})


def test_every_spelling_of_the_seeds_and_openapi_is_known() -> None:
    expected = {
        "learner": RoleKind.LEARNER,
        "learners": RoleKind.LEARNER,
        "administrator": RoleKind.ACCOUNT_ADMINISTRATOR,
        "account_administrators": RoleKind.ACCOUNT_ADMINISTRATOR,
        "department_administrator": RoleKind.DEPARTMENT_ADMINISTRATOR,
        "department_administrators": RoleKind.DEPARTMENT_ADMINISTRATOR,
        "course_authors": RoleKind.COURSE_AUTHOR,
        "publisher": RoleKind.PUBLISHER,
        "supervisor": RoleKind.SUPERVISOR,
        "custom": RoleKind.CUSTOM,
    }
    for spelling, kind in expected.items():
        assert ROLE_SPELLINGS[spelling] is kind


def test_scope_covers_subtrees_only() -> None:
    scope = Scope(account_wide=False, paths=("/root/sales/",))
    assert scope.covers("/root/sales/")
    assert scope.covers("/root/sales/eu/")
    assert not scope.covers("/root/")
    assert not scope.covers("/root/salesforce/")
    assert Scope(account_wide=True, paths=()).covers("/anything/")
    assert Scope(account_wide=False, paths=()).is_empty


def test_a_new_required_field_is_enforced_at_once(db: Database) -> None:
    """Profile fields are cached per process by settings version; a change must be seen by the
    very next request."""
    world = make_world(db, acme_spec(seatLimit=None))
    owner = authenticate_token(db, world.token("owner"))
    add_user(db, owner, command(world.root_id, employee_id=f"A{uuid.uuid4().hex[:8]}"))
    with db.write() as conn:
        define_field(conn, world.account_id, "cost_centre", "Cost centre", "string", True, False)
        settings_changed(conn, world.account_id)
    owner = authenticate_token(db, world.token("owner"))
    with pytest.raises(DomainError) as caught:
        add_user(db, owner, command(world.root_id, employee_id=f"B{uuid.uuid4().hex[:8]}"))
    assert (caught.value.code, caught.value.parameter) == (
        ErrorCode.INVALID_PARAMETERS,
        "fields.cost_centre",
    )
    add_user(
        db,
        owner,
        command(world.root_id, employee_id=f"C{uuid.uuid4().hex[:8]}", cost_centre="CC-1"),
    )


def test_generation_decides_the_invitation_default(db: Database) -> None:
    world = make_world(db, acme_spec(seatLimit=None))
    owner = authenticate_token(db, world.token("owner"))
    before = world.snapshot()["outbox"]
    for generation, invited in ((ApiGeneration.TOKEN, 0), (ApiGeneration.CREDENTIALS, 1)):
        login = f"g{uuid.uuid4().hex[:8]}"
        cmd = parse_command(
            AddUser,
            {
                "login": login,
                "email": f"{login}@acme.test",
                "departmentId": world.root_id,
                "fields": {"employee_id": login},
            },
        )
        add_user(db, owner, cmd, generation)
        assert world.snapshot()["outbox"] == before + invited
        before += invited


def test_a_failed_account_file_leaves_no_account(db: Database) -> None:
    spec = acme_spec()
    spec["users"] = [*spec["users"], {"login": "jane.doe", "fields": {"employee_id": "X"}}]
    with pytest.raises(DomainError) as caught:
        make_world(db, spec)
    assert caught.value.code is ErrorCode.LOGIN_TAKEN
    make_world(db, acme_spec(url=spec["url"]))  # the URL is still free
