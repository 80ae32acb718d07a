"""Scheduled deactivation and termination: set and cancel them, and carry them out once due.

The background worker carries them out (learndir.delivery.worker, a job of it): every few
seconds and once at start, so dates that fell due while it was down are applied after a
restart. Several processes or machines may run it on one database: each step is a conditional
UPDATE ("still due, still in this status") inside one transaction per account, so a date is
applied once and the seat counter moves once, whoever gets there first.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from sqlalchemy import Column, Connection, and_, select, update

from learndir.core.actor import Actor
from learndir.core.changes import account_info, record_user_changes, users_before
from learndir.core.common import utcnow
from learndir.core.errors import denied, invalid
from learndir.core.users.changes import (
    ACTIVE,
    INACTIVE,
    TERMINATED,
    editable_user,
    parse_date,
    release_seats,
)
from learndir.db.engine import Database
from learndir.db.schema import roles, user_roles, users


class ScheduledChange(StrEnum):
    DEACTIVATION = "deactivation"
    TERMINATION = "termination"


def _column(change: ScheduledChange) -> Column[date]:
    return users.c.deactivate_on if change is ScheduledChange.DEACTIVATION else users.c.terminate_on


def today() -> date:
    """Schedules are UTC dates."""
    return utcnow().date()


def schedule_change(
    db: Database, actor: Actor, user_id: str, change: ScheduledChange, when: str | None
) -> None:
    """Deactivates or terminates the user on `when` (YYYY-MM-DD, today or later; today is
    carried out at the scheduler's next run). Replaces an earlier date of the same kind."""
    if when is None or not when.strip():
        raise invalid("date", "is required")
    on = parse_date(when, "date")
    assert on is not None
    if on < today():
        raise invalid("date", f"{on.isoformat()} is in the past")
    with db.write() as conn:
        target = editable_user(conn, actor, user_id)
        if target.is_owner:
            raise denied(f"the account owner cannot be scheduled for {change.value}", "userId")
        if target.id == actor.user_id:
            raise denied(f"you cannot schedule your own {change.value}", "userId")
        conn.execute(update(users).where(users.c.id == target.id).values({_column(change): on}))


def cancel_change(db: Database, actor: Actor, user_id: str, change: ScheduledChange) -> None:
    """Removes the pending date, if any."""
    with db.write() as conn:
        target = editable_user(conn, actor, user_id)
        conn.execute(update(users).where(users.c.id == target.id).values({_column(change): None}))


_OWNERS = (
    select(user_roles.c.user_id)
    .join(roles, roles.c.id == user_roles.c.role_id)
    .where(roles.c.kind == "owner")
)


def _apply_in_account(conn: Connection, account_id: str, day: date) -> int:
    """Carries out every change of the account due on `day`; returns how many users changed
    status. Deactivation moves only active users (a terminated user stays terminated);
    termination moves active and inactive ones and also settles a pending deactivation. The
    owner is never moved (scheduling refuses them; a stray date is simply cleared)."""
    # Lock the due rows first (in id order): the moves below then see statuses that no
    # concurrent activation or deactivation can change before this commits.
    due_ids = (
        conn.execute(
            select(users.c.id)
            .where(
                users.c.account_id == account_id,
                (users.c.deactivate_on <= day) | (users.c.terminate_on <= day),
            )
            .order_by(users.c.id)
            .with_for_update()
        )
        .scalars()
        .all()
    )
    account = account_info(conn, account_id)
    before = users_before(conn, account, due_ids)
    changed = 0
    released = 0
    steps: tuple[tuple[Column[date], int, tuple[int, ...], list[Column[date]]], ...] = (
        (users.c.deactivate_on, INACTIVE, (ACTIVE,), [users.c.deactivate_on]),
        (
            users.c.terminate_on,
            TERMINATED,
            (ACTIVE, INACTIVE),
            [users.c.deactivate_on, users.c.terminate_on],
        ),
    )
    for column, status, movable, clears in steps:
        due = and_(users.c.account_id == account_id, column <= day)
        cleared = {c: None for c in clears}
        for current in movable:
            moved = conn.execute(
                update(users)
                .where(due, users.c.status == current, users.c.id.not_in(_OWNERS))
                .values({users.c.status: status, **cleared})
            ).rowcount
            changed += moved
            if current == ACTIVE:
                released += moved
        conn.execute(update(users).where(due).values(cleared))
    release_seats(conn, account_id, released)
    # The scheduler acts, nobody in particular: no actor id.
    record_user_changes(conn, account, None, before)
    return changed


def apply_due_changes(db: Database, day: date | None = None) -> int:
    """Carries out every scheduled change due on `day` (default today, UTC), one transaction
    per account. Safe to run from several processes at once.

    Every server process asks this every half minute, and almost always nothing is due: the
    question is two index probes (the earliest due row of each date column), never a read of
    the whole users table, whatever the planner's statistics say (a DISTINCT over both dates
    read every user on PostgreSQL without statistics: 80-110 ms of its CPU per process and
    per half minute at 150,000 users)."""
    day = day or today()
    changed = 0
    applied: set[str] = set()
    while (account_id := _next_due_account(db, day, applied)) is not None:
        with db.write() as conn:
            changed += _apply_in_account(conn, account_id, day)
        # Its due dates are cleared now; skipping it also ends the loop should another
        # process have set a new one meanwhile (the next run applies that).
        applied.add(account_id)
    return changed


def _next_due_account(db: Database, day: date, skip: set[str]) -> str | None:
    """An account with a change due on `day`, by the earliest due date of each column: an
    ORDER BY on the date's own index with LIMIT 1, which reads from that index's start."""
    with db.read() as conn:
        for column in (users.c.deactivate_on, users.c.terminate_on):
            query = select(users.c.account_id).where(column <= day)
            if skip:
                query = query.where(users.c.account_id.not_in(sorted(skip)))
            found = conn.execute(query.order_by(column).limit(1)).scalar()
            if found is not None:
                return str(found)
    return None
