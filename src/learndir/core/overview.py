"""What the console's overview shows an administrator: seats, users by status, invitations,
recent imports and recent changes, each within what the actor may see.

Every count is one statement on an index: users by status goes department by department
through the (department_id, status) index, reading no user row; the outbox counts read its
(status, next_attempt_at) index's unsent range; imports and the audit trail read their newest
rows by (account_id, created_at) and the audit's id."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from learndir.core.actor import Actor
from learndir.core.audit import AuditRecord, audit_query, read_audit
from learndir.core.departments import within_scope
from learndir.core.errors import denied
from learndir.core.imports.jobs import JobView, recent_jobs
from learndir.db.engine import Database
from learndir.db.schema import account_seats, departments, outbox, users

STATUS_NAMES = {1: "active", 3: "inactive", 5: "terminated"}


@dataclass(frozen=True)
class Overview:
    seat_limit: int | None
    # Users holding a seat (active users), account-wide.
    seats_used: int
    # Users by status name, within what the actor sees.
    by_status: dict[str, int]
    invitations_pending: int
    invitations_failed: int
    imports: list[JobView]
    changes: list[AuditRecord]

    @property
    def seats_left(self) -> int | None:
        return None if self.seat_limit is None else max(0, self.seat_limit - self.seats_used)

    @property
    def seats_percent(self) -> int:
        if not self.seat_limit:
            return 0
        return min(100, round(100 * self.seats_used / self.seat_limit))

    @property
    def users(self) -> int:
        return sum(self.by_status.values())


def account_overview(db: Database, actor: Actor, recent: int = 8) -> Overview:
    if actor.is_learner_only:
        raise denied("learners have no overview of the account")
    scope = actor.visible_scope()
    with db.read() as conn:
        seats = conn.execute(
            select(account_seats.c.seat_limit, account_seats.c.active_users).where(
                account_seats.c.account_id == actor.account_id
            )
        ).first()
        # Department by department through the (department_id, status) index: no user row is
        # read, whatever the planner knows of the tables.
        count = (
            select(users.c.status, func.count())
            .select_from(departments.join(users, users.c.department_id == departments.c.id))
            .where(departments.c.account_id == actor.account_id)
            .group_by(users.c.status)
        )
        if not scope.account_wide:
            count = count.where(within_scope(scope))
        by_status = {name: 0 for name in STATUS_NAMES.values()}
        for status, n in conn.execute(count):
            by_status[STATUS_NAMES.get(status, str(status))] = int(n)
        unsent = conn.execute(
            select(func.count()).where(
                outbox.c.status.in_(("pending", "sending")), outbox.c.account_id == actor.account_id
            )
        ).scalar_one()
        failed = conn.execute(
            select(func.count()).where(
                outbox.c.status == "failed",
                outbox.c.account_id == actor.account_id,
                outbox.c.revoked_at.is_(None),
            )
        ).scalar_one()
    # Who may import sees the imports get_job would show them.
    imports = recent_jobs(db, actor, recent) if actor.manages_users else []
    changes: list[AuditRecord] = []
    if actor.administers_account:
        changes, _ = read_audit(db, actor, audit_query(page_size=recent))
    return Overview(
        seat_limit=seats.seat_limit if seats is not None else None,
        seats_used=int(seats.active_users) if seats is not None else by_status["active"],
        by_status=by_status,
        invitations_pending=int(unsent),
        invitations_failed=int(failed),
        imports=imports,
        changes=changes,
    )
