"""addUser's department, read with the caller's token: on PostgreSQL the statement that reads
the token also reads the departments the request names (one round trip less per add); the plan
answers the same on both databases, and only from what its own request read for its own
account."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from learndir.core.auth import authenticate_token
from learndir.core.errors import DomainError, ErrorCode
from learndir.core.users.commands import AddUser
from learndir.core.users.service import add_user
from learndir.db.engine import Database
from learndir.db.schema import user_role_departments, users
from tests.support import World, acme_spec, make_world, statements_sent


def _command(department_id: str, **more: Any) -> AddUser:
    new = uuid.uuid4().hex[:8]
    return AddUser(
        login=f"ahead.{new}",
        email=f"ahead.{new}@acme.test",
        department_id=department_id,
        fields={"employee_id": f"A-{new}", "country": "DE"},
        **more,
    )


def _request(db: Database, token: str, cmd: AddUser, named: list[str | None]) -> str:
    """An addUser as the REST and SOAP handlers run it: one unit of work, authentication
    included, naming `named` as the departments to read with the token."""

    def work() -> str:
        return add_user(db, authenticate_token(db, token, departments=named), cmd)

    return db.run(work, writes=True)


def _reads_of_departments(statements: list[str]) -> list[str]:
    return [
        s for s in statements if " departments" in s and s.lstrip().upper().startswith("SELECT")
    ]


def _department_of(db: Database, user_id: str) -> str:
    with db.read() as conn:
        return str(
            conn.execute(select(users.c.department_id).where(users.c.id == user_id)).scalar_one()
        )


def test_the_named_department_is_read_with_the_token(
    db: Database, world: World, backend: str
) -> None:
    token = world.token("owner")
    target = world.departments["sales-eu"]
    cmd = _command(target)
    with statements_sent(db.engine) as statements:
        user_id = _request(db, token, cmd, [target])
    assert _department_of(db, user_id) == target
    reads = _reads_of_departments(statements)
    if backend == "postgres":
        # The token's statement only: no round trip of the plan's own for the department.
        assert len(reads) == 1 and "access_tokens" in reads[0], reads
    else:
        # SQLite's statements are local calls: nothing to save, the plan reads its own.
        assert any("access_tokens" not in r for r in reads), reads


def test_ids_not_read_ahead_are_looked_up_by_the_plan(db: Database, world: World) -> None:
    """A role's departments the handler did not name: the plan reads them itself."""
    token = world.token("owner")
    target = world.departments["sales-eu"]
    managed = world.departments["sales-us"]
    cmd = _command(target, role="department_administrator", manageable_department_ids=[managed])
    user_id = _request(db, token, cmd, [target])
    with db.read() as conn:
        held = conn.execute(
            select(user_role_departments.c.department_id).where(
                user_role_departments.c.user_id == user_id
            )
        ).scalars()
        assert list(held) == [managed]


@pytest.mark.parametrize("named", ["the same", "none", "malformed"])
def test_a_department_of_another_account_is_refused(db: Database, world: World, named: str) -> None:
    """Read ahead or not, another account's department is not one the plan can find."""
    other = make_world(db, acme_spec())
    theirs = other.departments["sales-eu"]
    names: list[str | None] = {"the same": [theirs], "none": [], "malformed": [None, "x"]}[named]
    before, theirs_before = world.snapshot(), other.snapshot()
    with pytest.raises(DomainError) as refused:
        _request(db, world.token("owner"), _command(theirs), names)
    assert refused.value.code is ErrorCode.INVALID_PARAMETERS
    assert f"no department {theirs!r} in this account" in refused.value.describe()
    assert world.snapshot() == before and other.snapshot() == theirs_before


def test_a_refused_token_keeps_nothing_read_ahead(db: Database, world: World) -> None:
    """An unknown token is refused before anything it read ahead is kept or used."""
    target = world.departments["sales-eu"]
    before = world.snapshot()
    with pytest.raises(DomainError) as refused:
        _request(db, "not-a-token", _command(target), [target])
    assert refused.value.code is ErrorCode.UNAUTHENTICATED
    assert world.snapshot() == before
