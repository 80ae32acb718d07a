"""Delivering webhook events from a real `learndir serve`'s changes to a real HTTP receiver, on
SQLite and PostgreSQL: order and batching by type, retry until 200, given up after a day but
kept and replayable, two workers never sending one event twice, an event for every change kind,
and nothing written when nobody listens."""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from learndir.core.common import utcnow
from learndir.core.users.schedules import apply_due_changes
from learndir.db.engine import Database
from learndir.db.schema import events, users, webhook_deliveries, webhook_subscribers
from learndir.delivery.webhooks import deliver_webhooks
from tests.api.rest.test_groups import new_user
from tests.cli.test_cli import learndir
from tests.receivers import HttpReceiver
from tests.support import Server, World, acme_spec, make_world, start_server, stop_server
from tests.webhook_support import events_of, hook, pump, register_confirmed, retry_now, to, verify


# The tests decide when deliveries happen (pump): their server's own worker is off, and the
# database is theirs, so no other test's server delivers from it either.
@pytest.fixture(scope="module")
def database_url(delivery_url: str) -> str:
    return delivery_url


@pytest.fixture(scope="module")
def db(ddb: Database) -> Database:
    return ddb


@pytest.fixture(scope="module")
def server(delivery_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    logs = Path(tmp_path_factory.mktemp("logs"))
    running = start_server(delivery_url, logs, env={"LEARNDIR_WORKER_ENABLED": "false"})
    yield running
    stop_server(running)


ALL_TYPES = (
    "USER_REGISTERED",
    "USER_UPDATED",
    "USER_STATUS_CHANGED",
    "USER_MOVED",
    "USER_DELETED",
    "DEPARTMENT_CREATED",
    "DEPARTMENT_UPDATED",
    "DEPARTMENT_MOVED",
    "DEPARTMENT_DELETED",
    "GROUP_CREATED",
    "GROUP_UPDATED",
    "GROUP_DELETED",
    "GROUP_MEMBERS_CHANGED",
)


@pytest.fixture
def world(db: Database) -> World:
    """An account per test: its subscribers see only its own changes."""
    return make_world(db, acme_spec())


def rest(server: Server, world: World, method: str, path: str, body: Any = None) -> Any:
    answer = httpx.request(
        method,
        f"{server.base_url}{path}",
        json=body,
        headers={"Authorization": f"Bearer {world.token('owner')}", "Accept": "application/json"},
        timeout=30,
    )
    assert answer.status_code < 300, answer.text
    return answer.json() if answer.content else None


def statuses(db: Database, name: str) -> Counter[str]:
    with db.read() as conn:
        rows = conn.execute(
            select(webhook_deliveries.c.status)
            .join(
                webhook_subscribers, webhook_subscribers.c.id == webhook_deliveries.c.subscriber_id
            )
            .where(webhook_subscribers.c.name == name)
        ).scalars()
        return Counter(rows)


def test_in_order_batched_by_type(
    server: Server, world: World, db: Database, http_receiver: HttpReceiver
) -> None:
    name, secret = "batch", "k3y"
    register_confirmed(
        server, world, db, http_receiver, name, secret, "USER_REGISTERED", "USER_UPDATED"
    )
    added = [new_user(server, world, world.root_id) for _ in range(3)]
    rest(server, world, "POST", f"/user/{added[0]}", {"fields": {"first_name": "Renamed"}})
    pump(db, http_receiver, lambda _: len(to(http_receiver, name)) == 3)
    first, second = to(http_receiver, name)[1:]
    assert [e["type"] for e in verify(first, secret)] == ["USER_REGISTERED"] * 3
    assert [e["user"]["userId"] for e in events_of(first)] == added
    (updated,) = verify(second, secret)
    assert updated["type"] == "USER_UPDATED"
    assert {"field": "FIRST_NAME", "before": None, "after": "Renamed"} in updated["changes"]
    assert first.headers["webhook-id"] != second.headers["webhook-id"]
    assert statuses(db, name) == Counter({"sent": 5})


def test_retried_until_200_and_delivered_once(
    server: Server, world: World, db: Database, http_receiver: HttpReceiver
) -> None:
    name = "flaky"
    register_confirmed(server, world, db, http_receiver, name, "s", "USER_REGISTERED")
    http_receiver.status = 500
    user_id = new_user(server, world, world.root_id)
    pump(db, http_receiver, lambda _: len(to(http_receiver, name)) == 2)
    # Backing off: nothing is sent before the delay.
    assert deliver_webhooks(db, "test") == 0
    with db.read() as conn:
        row = conn.execute(
            select(webhook_subscribers).where(webhook_subscribers.c.name == name)
        ).one()
    assert row.attempts == 1 and row.last_error == "HTTP 500" and row.next_attempt_at is not None
    assert row.failing_since is not None
    # A later user joins the backlog, but the retry sends exactly the failed batch.
    later = new_user(server, world, world.root_id)
    http_receiver.status = 200
    retry_now(db, name)
    pump(db, http_receiver, lambda _: len(to(http_receiver, name)) == 4)
    failed, retried, rest_of_backlog = to(http_receiver, name)[1:]
    assert failed.body == retried.body
    assert failed.headers["webhook-id"] == retried.headers["webhook-id"]
    assert [e["user"]["userId"] for e in events_of(retried)] == [user_id]
    assert [e["user"]["userId"] for e in events_of(rest_of_backlog)] == [later]
    verify(retried, "s")
    assert statuses(db, name) == Counter({"sent": 3})


def test_given_up_after_a_day_kept_and_replayed(
    server: Server, world: World, db: Database, http_receiver: HttpReceiver
) -> None:
    name = "down"
    register_confirmed(server, world, db, http_receiver, name, None, "USER_REGISTERED")
    http_receiver.status = 503
    lost = new_user(server, world, world.root_id)
    pump(db, http_receiver, lambda _: len(to(http_receiver, name)) == 2)
    retry_now(db, name, failing_for=timedelta(hours=25))
    pump(db, http_receiver, lambda _: len(to(http_receiver, name)) == 3)
    assert statuses(db, name) == Counter({"sent": 1, "failed": 1})
    info = hook(server, world, "subscriber/info", params={"subscriberName": name}).json()
    assert info["failedEvents"] == 1 and info["isConfirmed"] is True
    # Delivery goes on with the next events once the receiver is back.
    http_receiver.status = 200
    after = new_user(server, world, world.root_id)
    pump(db, http_receiver, lambda _: len(to(http_receiver, name)) == 4)
    assert events_of(to(http_receiver, name)[3])[0]["user"]["userId"] == after
    # Replay (learndir's extension) sends the kept event.
    answer = hook(server, world, "replay", {"subscriberName": name})
    assert answer.status_code == 200 and answer.json() == {"replayed": 1}
    pump(db, http_receiver, lambda _: len(to(http_receiver, name)) == 5)
    assert events_of(to(http_receiver, name)[4])[0]["user"]["userId"] == lost
    assert statuses(db, name) == Counter({"sent": 3})


def test_two_workers_never_send_one_event_twice(
    server: Server, world: World, db: Database, http_receiver: HttpReceiver
) -> None:
    names = [f"race-{i}" for i in range(3)]
    for name in names:
        register_confirmed(server, world, db, http_receiver, name, None, "USER_REGISTERED")
    added = [new_user(server, world, world.root_id) for _ in range(12)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def work(worker: str) -> None:
        try:
            while not stop.is_set():
                deliver_webhooks(db, worker)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    try:
        pump(
            db,
            http_receiver,
            lambda _: all(
                sum(len(events_of(r)) for r in to(http_receiver, n)[1:]) >= len(added)
                for n in names
            ),
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors
    for name in names:
        ids = [e["user"]["userId"] for r in to(http_receiver, name)[1:] for e in events_of(r)]
        assert ids == added, name


def test_an_event_for_every_change_kind(
    server: Server, world: World, db: Database, http_receiver: HttpReceiver
) -> None:
    name = "everything"
    register_confirmed(server, world, db, http_receiver, name, None, *ALL_TYPES)
    user_id = new_user(server, world, world.root_id)
    rest(server, world, "POST", f"/user/{user_id}", {"fields": {"job_title": "Chef"}})
    rest(server, world, "POST", f"/user/{user_id}/status", {"status": 3})
    rest(
        server,
        world,
        "POST",
        f"/department/{world.departments['eng']}/user/move",
        {"userIds": [user_id]},
    )
    dept = rest(
        server, world, "POST", "/department", {"name": "Ops", "parentDepartmentId": world.root_id}
    )
    rest(server, world, "POST", f"/department/{dept}", {"name": "Operations"})
    rest(
        server,
        world,
        "POST",
        f"/department/{world.departments['eng']}/department/move",
        {"departmentIds": [dept]},
    )
    rest(server, world, "DELETE", f"/department/{dept}")
    group = rest(server, world, "POST", "/group", {"name": "Cooks", "userIds": []})
    rest(server, world, "POST", f"/group/{group}", {"name": "Chefs"})
    rest(server, world, "POST", f"/group/{group}/members", {"userIds": [user_id]})
    rest(server, world, "DELETE", f"/group/{group}")
    rest(server, world, "DELETE", f"/user/{user_id}")

    def seen() -> list[dict[str, Any]]:
        return [e for r in to(http_receiver, name)[1:] for e in events_of(r)]

    pump(db, http_receiver, lambda _: {e["type"] for e in seen()} >= set(ALL_TYPES))
    by_type = {e["type"]: e for e in seen()}
    status = by_type["USER_STATUS_CHANGED"]
    assert {"field": "status", "before": 1, "after": 3} in status["changes"]
    moved = by_type["USER_MOVED"]
    assert {
        "field": "departmentId",
        "before": world.root_id,
        "after": world.departments["eng"],
    } in moved["changes"]
    assert by_type["USER_DELETED"]["user"]["userId"] == user_id
    assert by_type["USER_UPDATED"]["actorId"] == world.users["owner"]
    renamed = by_type["DEPARTMENT_UPDATED"]
    assert {"field": "name", "before": "Ops", "after": "Operations"} in renamed["changes"]
    assert (
        by_type["DEPARTMENT_MOVED"]["department"]["parentDepartmentId"] == world.departments["eng"]
    )
    assert by_type["DEPARTMENT_DELETED"]["department"]["departmentId"] == dept
    assert by_type["GROUP_MEMBERS_CHANGED"]["addedUserIds"] == [user_id]
    assert by_type["GROUP_UPDATED"]["group"]["name"] == "Chefs"
    assert by_type["GROUP_DELETED"]["group"]["groupId"] == group
    # In the order they happened.
    order = [e["type"] for e in seen()]
    assert (
        order.index("USER_REGISTERED") < order.index("USER_UPDATED") < order.index("USER_DELETED")
    )
    assert not any("password" in json.dumps(e).lower() for e in seen())


def test_scheduled_status_change_and_user_filter(
    server: Server, world: World, db: Database, http_receiver: HttpReceiver
) -> None:
    name = "filtered"
    register_confirmed(server, world, db, http_receiver, name, None)
    watched, ignored = (new_user(server, world, world.root_id) for _ in range(2))
    answer = hook(
        server,
        world,
        "subscribe",
        {
            "subscriberName": name,
            "subscription": {
                "subscriptionType": "USER_STATUS_CHANGED",
                "params": [{"name": "userIds", "value": [watched]}],
            },
        },
    )
    assert answer.status_code == 200
    today = utcnow().date()
    with db.write() as conn:
        conn.execute(
            update(users).where(users.c.id.in_([watched, ignored])).values(deactivate_on=today)
        )
    assert apply_due_changes(db, today) >= 2
    pump(db, http_receiver, lambda _: len(to(http_receiver, name)) == 2)
    (event,) = events_of(to(http_receiver, name)[1])
    assert event["type"] == "USER_STATUS_CHANGED" and event["user"]["userId"] == watched
    assert "actorId" not in event
    assert deliver_webhooks(db, "test") == 0


def test_nothing_written_when_nobody_listens(server: Server, world: World, db: Database) -> None:
    def count() -> int:
        with db.read() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(events)
                    .where(events.c.account_id == world.account_id)
                ).scalar_one()
            )

    before = count()
    user_id = new_user(server, world, world.root_id)
    rest(server, world, "POST", f"/user/{user_id}", {"fields": {"job_title": "Quiet"}})
    assert count() == before
    assert uuid.UUID(user_id)


def test_cli_lists_backlog_and_replays(
    server: Server,
    world: World,
    db: Database,
    database_url: str,
    http_receiver: HttpReceiver,
) -> None:
    name = "cli-" + uuid.uuid4().hex[:6]
    register_confirmed(server, world, db, http_receiver, name, None, "USER_REGISTERED")
    http_receiver.status = 500
    lost = new_user(server, world, world.root_id)
    pump(db, http_receiver, lambda _: len(to(http_receiver, name)) == 2)
    retry_now(db, name, failing_for=timedelta(days=2))
    pump(db, http_receiver, lambda _: len(to(http_receiver, name)) == 3)
    listed = learndir("webhooks", "list", "--json", "--database-url", database_url)
    assert listed.returncode == 0, listed.stderr
    (mine,) = [s for s in json.loads(listed.stdout) if s["subscriberName"] == name]
    assert mine["failed"] == 1 and mine["pending"] == 0 and mine["lastError"] == "HTTP 500"
    assert mine["accountUrl"] == world.account_url
    unknown = learndir(
        "webhooks",
        "replay",
        "nobody",
        "--account-url",
        world.account_url,
        "--database-url",
        database_url,
    )
    assert unknown.returncode == 7, unknown.stderr
    replayed = learndir(
        "webhooks",
        "replay",
        name,
        "--account-url",
        world.account_url,
        "--since",
        (utcnow() - timedelta(hours=1)).isoformat(),
        "--database-url",
        database_url,
    )
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.strip() == "replayed: 1"
    http_receiver.status = 200
    pump(db, http_receiver, lambda _: len(to(http_receiver, name)) == 4)
    assert events_of(to(http_receiver, name)[3])[0]["user"]["userId"] == lost


def test_subordination_and_work_leave_are_user_updates(
    server: Server, world: World, db: Database, http_receiver: HttpReceiver
) -> None:
    name = "details"
    register_confirmed(server, world, db, http_receiver, name, None, "USER_UPDATED")
    user_id = new_user(server, world, world.root_id)
    boss = world.users["owner"]
    rest(
        server,
        world,
        "POST",
        f"/user/{user_id}/subordination",
        {"subordination": {"subordinationType": "manual", "supervisorId": boss}},
    )
    start = utcnow().date() + timedelta(days=1)
    leave = {"userId": user_id, "workLeaveReason": "OnVacation", "startDate": start.isoformat()}
    rest(server, world, "POST", "/users/work-leave-status", {"workLeaveStatuses": [leave]})
    pump(
        db,
        http_receiver,
        lambda _: sum(len(events_of(r)) for r in to(http_receiver, name)[1:]) == 2,
    )
    supervised, on_leave = (e for r in to(http_receiver, name)[1:] for e in events_of(r))
    assert supervised["changes"] == [
        {
            "field": "subordination",
            "before": {"type": "inherit", "supervisorId": None},
            "after": {"type": "manual", "supervisorId": boss},
        }
    ]
    assert on_leave["changes"] == [
        {
            "field": "workLeave",
            "before": None,
            "after": {"reason": "OnVacation", "startDate": start.isoformat(), "endDate": None},
        }
    ]
