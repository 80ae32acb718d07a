"""addUser while another request changes what its plan checked, on both databases. The plan's
reads run before the writes, without holding off other writers (on SQLite the writers' turn is
taken only for the writes, see Database.write): what the plan checked is held again by the
writes themselves, and a refusal says exactly what changed and leaves nothing behind."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from learndir.core import departments as departments_core
from learndir.core.actor import Actor
from learndir.core.auth import authenticate_token
from learndir.core.errors import DomainError, ErrorCode
from learndir.core.users import service
from learndir.core.users.commands import AddUser
from learndir.db.engine import Database
from learndir.db.schema import users
from tests.support import World, acme_spec, make_world


def _command(department_id: str, login: str) -> AddUser:
    return AddUser(
        login=login,
        email=f"{uuid.uuid4().hex[:8]}@acme.test",
        department_id=department_id,
        fields={"country": "DE", "employee_id": f"E{uuid.uuid4().hex[:8]}"},
    )


def _meanwhile(monkeypatch: pytest.MonkeyPatch, change: Callable[[], None]) -> list[str]:
    """Runs `change` in another thread, as another request, right after the next addUser's
    plan; the list says whether it finished (it must not wait for that addUser)."""
    done: list[str] = []
    real_plan = service._plan

    def plan_then_change(*args: Any, **kwargs: Any) -> service.UserPlan:
        plan = real_plan(*args, **kwargs)
        monkeypatch.setattr(service, "_plan", real_plan)  # once
        other = threading.Thread(target=lambda: (change(), done.append("changed")))
        other.start()
        other.join(timeout=20)
        return plan

    monkeypatch.setattr(service, "_plan", plan_then_change)
    return done


def _add(db: Database, actor: Actor, cmd: AddUser) -> str:
    """addUser as a request runs it (one unit of work)."""
    return db.run(lambda: service.add_user(db, actor, cmd), writes=True)


def _logins(db: Database, world: World) -> list[str]:
    with db.read() as conn:
        return sorted(
            conn.execute(select(users.c.login).where(users.c.account_id == world.account_id))
            .scalars()
            .all()
        )


def _add_after(
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
    department: str,
    login: str,
    change: Callable[[Database, Actor, str], object],
) -> tuple[World, AddUser, DomainError, list[str]]:
    """An addUser by the owner into `department` that `change(db, owner, department id)`, run
    as another request right after the plan, makes refused; the world, the command, the
    refusal and the logins before."""
    world = make_world(db, acme_spec(users=[]))
    owner = authenticate_token(db, world.token("owner"))
    department_id = world.departments[department]
    before = _logins(db, world)
    done = _meanwhile(monkeypatch, lambda: change(db, owner, department_id))
    cmd = _command(department_id, login)
    with pytest.raises(DomainError) as refused:
        _add(db, owner, cmd)
    assert done == ["changed"]
    return world, cmd, refused.value, before


def test_a_department_deleted_after_the_plan_refuses_the_add(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    world, _cmd, refused, before = _add_after(
        db, monkeypatch, "support", "late.joiner", departments_core.delete_department
    )
    assert refused.code is ErrorCode.INVALID_PARAMETERS
    assert "deleted meanwhile" in str(refused)
    assert _logins(db, world) == before


def test_a_login_taken_after_the_plan_is_named_as_taken(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def first_come(db: Database, owner: Actor, department_id: str) -> str:
        return _add(db, owner, _command(department_id, "first.come"))

    world, cmd, refused, before = _add_after(db, monkeypatch, "eng", "first.come", first_come)
    assert refused.code is ErrorCode.LOGIN_TAKEN
    assert refused.parameter == "login"
    assert _logins(db, world) == sorted([*before, "first.come"])
    with db.read() as conn:
        count = conn.execute(
            select(func.count()).select_from(users).where(users.c.email == cmd.email)
        ).scalar_one()
    assert count == 0  # the refused add's e-mail was never written
