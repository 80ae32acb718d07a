"""The change record's hot path, on both databases: when nobody listens, recording a change
runs no query at all; once a subscriber listens, the very next change is recorded (the
listeners are cached with the account settings and every subscriber change bumps them)."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import func, select

from learndir.core import webhooks
from learndir.core.auth import authenticate_token, load_actor
from learndir.core.changes import differences, user_snapshots
from learndir.core.users.changes import update_user
from learndir.core.users.commands import AddUser, UpdateUser, parse_command
from learndir.core.users.service import add_user
from learndir.db.engine import Database
from learndir.db.schema import audit_log, events, webhook_deliveries, webhook_subscribers
from tests.support import acme_spec, make_world, statements_sent


def new_user(root: str) -> AddUser:
    tag = uuid.uuid4().hex[:8]
    return parse_command(
        AddUser, {"login": f"c{tag}", "departmentId": root, "fields": {"employee_id": tag}}
    )


def test_no_listener_no_query_then_the_next_change_is_recorded(db: Database) -> None:
    world = make_world(db, acme_spec())
    owner = authenticate_token(db, world.token("owner"))
    add_user(db, owner, new_user(world.root_id))  # warms the settings cache
    with statements_sent(db.engine) as seen:
        user_id = add_user(db, owner, new_user(world.root_id))
        update_user(db, owner, user_id, UpdateUser(fields={"job_title": "Quiet"}))
    assert not [s for s in seen if "webhook" in s.lower() or "events" in s.lower()]

    webhooks.register(db, owner, "core", "https://example.com/hook", None)
    with db.write() as conn:
        conn.execute(
            webhook_subscribers.update()
            .where(webhook_subscribers.c.account_id == world.account_id)
            .values(confirmed=True)
        )
    webhooks.subscribe(db, owner, "core", {"subscriptionType": "USER_UPDATED"})
    owner = authenticate_token(db, world.token("owner"))
    update_user(db, owner, user_id, UpdateUser(fields={"job_title": "Loud"}))
    with db.read() as conn:
        recorded = conn.execute(
            select(events.c.type, func.count(webhook_deliveries.c.id))
            .join(webhook_deliveries, webhook_deliveries.c.event_id == events.c.id)
            .where(events.c.account_id == world.account_id)
            .group_by(events.c.type)
        ).all()
    assert [tuple(r) for r in recorded] == [("USER_UPDATED", 1)]


def test_add_users_snapshot_from_the_plan_equals_the_user_read_back(db: Database) -> None:
    """addUser describes the new user from its plan (no read-back); that description must be
    what a read shows."""
    world = make_world(db, acme_spec())
    with db.read() as conn:
        actor = load_actor(conn, world.users["owner"])
    assert actor is not None
    cmd = AddUser(
        login=f"plan.{uuid.uuid4().hex[:8]}",
        email=f"plan.{uuid.uuid4().hex[:8]}@acme.test",
        department_id=world.departments["sales"],
        role="department_administrator",
        manageable_department_ids=[world.departments["sales-eu"], world.departments["sales-us"]],
        groups=[world.groups["Managers"], world.groups["Newcomers"]],
        fields={
            "first_name": "Plan",
            "job_title": "Tester",
            "mobile": "+49 30 1234567",
            "country": "DE",
            "employee_id": f"P{uuid.uuid4().hex[:6]}",
        },
    )
    user_id = add_user(db, actor, cmd)
    with db.read() as conn:
        read_back = user_snapshots(conn, actor.account, [user_id])[user_id]
        recorded = conn.execute(
            select(audit_log.c.changes).where(
                audit_log.c.target_id == user_id, audit_log.c.operation == "USER_REGISTERED"
            )
        ).scalar_one()
    assert json.loads(recorded) == differences({}, read_back)
