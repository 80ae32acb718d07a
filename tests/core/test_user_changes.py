"""The core of changing users, called directly on both databases: status messages by API
generation, scheduled changes applied once by concurrent schedulers, concurrent activations of
one user, the lost race for a unique value, and smart groups following a change."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from learndir.core import groups as groups_core
from learndir.core.actor import Actor
from learndir.core.auth import authenticate_token
from learndir.core.common import utcnow
from learndir.core.errors import DomainError, ErrorCode
from learndir.core.users import changes
from learndir.core.users.changes import change_status, parse_status, update_user
from learndir.core.users.commands import AddUser, ApiGeneration, UpdateUser, parse_command
from learndir.core.users.schedules import apply_due_changes
from learndir.core.users.service import add_user
from learndir.db.engine import Database
from learndir.db.schema import account_seats, group_members, users
from tests.support import World, acme_spec, make_world


def owner_of(w: World) -> Actor:
    return authenticate_token(w.db, w.token("owner"))


def new_user(w: World, department: str = "root") -> str:
    uid = uuid.uuid4().hex[:10]
    cmd = parse_command(
        AddUser,
        {
            "login": f"k{uid}",
            "departmentId": w.departments[department],
            "fields": {"employee_id": f"K{uid}"},
        },
    )
    return add_user(w.db, owner_of(w), cmd)


def status_and_seats(w: World, ids: list[str]) -> tuple[list[int], int, int]:
    with w.db.read() as conn:
        found = dict(
            conn.execute(select(users.c.id, users.c.status).where(users.c.id.in_(ids))).all()
        )
        counter = conn.execute(
            select(account_seats.c.active_users).where(account_seats.c.account_id == w.account_id)
        ).scalar_one()
    return [found[i] for i in ids], int(counter), w.snapshot()["active_users"]


@pytest.mark.parametrize(
    ("value", "generation", "message"),
    [
        (7, ApiGeneration.TOKEN, "User status must be 1, 3 or 5, 7 given"),
        ("x", ApiGeneration.TOKEN, "User status must be 1, 3 or 5, x given"),
        (5, ApiGeneration.CREDENTIALS, "User status must be 1 or 3, 5 given"),
        ("2", ApiGeneration.CREDENTIALS, "User status must be 1 or 3, 2 given"),
    ],
)
def test_status_values_by_generation(value: Any, generation: ApiGeneration, message: str) -> None:
    with pytest.raises(DomainError) as caught:
        parse_status(value, generation)
    assert caught.value.code is ErrorCode.INVALID_PARAMETERS
    assert (caught.value.message, caught.value.parameter) == (message, "status")
    assert parse_status("5", ApiGeneration.TOKEN) == 5
    assert parse_status(3, ApiGeneration.CREDENTIALS) == 3


def test_schedules_apply_once_whatever_the_number_of_schedulers(db: Database) -> None:
    """Four schedulers (separate engines, as separate processes would have) run at once; every
    due change is applied once and the seat counter moves once per user."""
    w = make_world(db, acme_spec(seatLimit=40))
    leaving = [new_user(w) for _ in range(3)]
    ending = [new_user(w) for _ in range(2)]
    already_inactive = new_user(w)
    already_ended = new_user(w)
    owner_id = w.users["owner"]
    today = utcnow().date()
    with db.write() as conn:
        conn.execute(update(users).where(users.c.id.in_(leaving)).values(deactivate_on=today))
        conn.execute(
            update(users)
            .where(users.c.id.in_(ending))
            .values(terminate_on=today - timedelta(days=2), deactivate_on=today + timedelta(days=9))
        )
        conn.execute(
            update(users).where(users.c.id == already_inactive).values(status=3, terminate_on=today)
        )
        conn.execute(
            update(users).where(users.c.id == already_ended).values(status=5, deactivate_on=today)
        )
        # A stray date on the owner (the API refuses to set one) is cleared, never applied.
        conn.execute(update(users).where(users.c.id == owner_id).values(deactivate_on=today))
        conn.execute(
            update(account_seats)
            .where(account_seats.c.account_id == w.account_id)
            .values(active_users=account_seats.c.active_users - 2)
        )
    _, seats_before, _ = status_and_seats(w, leaving)
    engines = [Database(db.url) for _ in range(4)]
    barrier = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def run(database: Database) -> None:
        try:
            barrier.wait()
            apply_due_changes(database)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in engines:
        e.dispose()
    assert not errors
    ids = [*leaving, *ending, already_inactive, already_ended, owner_id]
    got, counter, active = status_and_seats(w, ids)
    assert got == [3, 3, 3, 5, 5, 5, 5, 1]
    assert counter == seats_before - 5 == active
    with db.read() as conn:
        left = conn.execute(
            select(users.c.deactivate_on, users.c.terminate_on).where(users.c.id.in_(ids))
        ).all()
    assert all(r.deactivate_on is None and r.terminate_on is None for r in left)
    assert apply_due_changes(db) == 0


def test_concurrent_activations_of_one_user_take_one_seat(db: Database) -> None:
    w = make_world(db, acme_spec(seatLimit=40))
    user = new_user(w)
    owner = owner_of(w)
    change_status(db, owner, [user], 3)
    _, before, _ = status_and_seats(w, [user])
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        change_status(db, owner, [user], 1)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got, counter, active = status_and_seats(w, [user])
    assert got == [1] and counter == before + 1 == active


def test_lost_race_for_a_login_is_a_conflict(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another request takes the login between the pre-check and the write: the unique index
    answers, and the caller gets the same 409 as the pre-check would give."""
    w = make_world(db, acme_spec(seatLimit=None))
    user = new_user(w)
    monkeypatch.setattr(changes, "check_unique_values", lambda *a, **k: None)
    for fields, code in (
        ({"login": "jane.doe"}, ErrorCode.LOGIN_TAKEN),
        ({"email": "jane.doe@acme.test"}, ErrorCode.EMAIL_TAKEN),
        ({"employee_id": "E-4"}, ErrorCode.FIELD_VALUE_TAKEN),
    ):
        with pytest.raises(DomainError) as caught:
            update_user(db, owner_of(w), user, UpdateUser(fields=fields))
        assert caught.value.code is code


def test_smart_groups_follow_a_change_of_department(db: Database) -> None:
    w = make_world(db, acme_spec(seatLimit=None))
    owner = owner_of(w)
    rules = {
        "and": [
            {"or": [{"rule": {"attributeType": 1, "operator": 2, "value": w.departments["eng"]}}]}
        ]
    }
    smart = groups_core.create_smart_group(db, owner, "Engineers", rules)
    user = new_user(w, "sales")

    def member(user_id: str = user) -> bool:
        with db.read() as conn:
            return (
                conn.execute(
                    select(group_members.c.user_id).where(
                        group_members.c.group_id == smart, group_members.c.user_id == user_id
                    )
                ).first()
                is not None
            )

    assert not member()
    update_user(db, owner_of(w), user, UpdateUser(department_id=w.departments["eng"]))
    assert member()
    # Replacing the ordinary groups keeps smart memberships as their rules say.
    update_user(db, owner_of(w), user, UpdateUser(groups=[w.groups["Managers"]]))
    assert member()
    with pytest.raises(DomainError) as caught:
        update_user(db, owner_of(w), user, UpdateUser(groups=[smart]))
    assert (caught.value.code, caught.value.parameter) == (ErrorCode.INVALID_PARAMETERS, "groupIds")
    update_user(db, owner_of(w), user, UpdateUser(department_id=w.departments["support"]))
    assert not member()
    # A new user who matches joins at once (addUser refreshes memberships too).
    assert member(new_user(w, "eng"))


def test_a_department_administrator_cannot_take_over_another_administrators_departments(
    db: Database,
) -> None:
    """An administrator of Engineering who sits in Sales: the Sales administrator may not reset
    their password, change, move, deactivate or delete them (and so act in Engineering)."""
    from learndir.core import departments as departments_core
    from learndir.core.users.changes import change_password, delete_user

    w = make_world(db, acme_spec(seatLimit=None))
    uid = uuid.uuid4().hex[:8]
    boss = add_user(
        db,
        owner_of(w),
        parse_command(
            AddUser,
            {
                "login": f"eng.boss.{uid}",
                "departmentId": w.departments["sales-eu"],
                "role": "department_administrator",
                "manageableDepartmentIds": [w.departments["eng"]],
                "fields": {"employee_id": f"B{uid}"},
            },
        ),
    )
    sales_admin = authenticate_token(db, w.token("sales.admin"))
    before = w.snapshot()
    attempts = [
        lambda: change_password(db, sales_admin, boss, "Hijack-Pass-1"),
        lambda: update_user(
            db, sales_admin, boss, parse_command(UpdateUser, {"fields": {"job_title": "x"}})
        ),
        lambda: change_status(db, sales_admin, [boss], 3),
        lambda: departments_core.move_users(db, sales_admin, w.departments["sales-us"], [boss]),
        lambda: delete_user(db, sales_admin, boss),
    ]
    for attempt in attempts:
        with pytest.raises(DomainError) as caught:
            attempt()
        assert caught.value.code is ErrorCode.PERMISSION_DENIED
        assert "manages departments outside" in (caught.value.reason or "")
    assert w.snapshot() == before
    # The owner may.
    change_status(db, owner_of(w), [boss], 3)
