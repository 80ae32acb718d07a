"""On PostgreSQL a request that waits for the database holds up only itself: its process serves
its other requests meanwhile (api/execution.py, db/engine.py `_LoopWaitingConnection`), and a
request that needs a pooled connection while all are out waits for one without stopping the
event loop that the holders need to finish (`_LoopSharingPool`). Against a real server and a
real PostgreSQL; nothing here depends on timing: the blocked request is seen waiting for its
lock in pg_locks before the other request is sent."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.util.concurrency import await_, greenlet_spawn

from learndir.db.engine import _LoopSharingPool
from tests.support import PG_ADMIN_URL, Server, World, count_users


def _waiting_for_lock(database_url: str) -> int:
    """Sessions of the server's database waiting for a lock on its users table."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'users'::regclass"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_request_waiting_for_a_lock_does_not_hold_up_its_process(
    server: Server, world: World, database_url: str, backend: str
) -> None:
    if backend != "postgres":
        pytest.skip("SQLite's calls are local: a request never waits for a server")
    headers = {"Authorization": f"Bearer {world.token('owner')}", "Accept": "application/json"}
    login = f"waits.{uuid.uuid4().hex[:8]}"
    added: list[httpx.Response] = []

    def add() -> None:
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            added.append(
                client.post(
                    "/user",
                    headers=headers,
                    json={
                        "departmentId": world.root_id,
                        "fields": {"login": login, "employee_id": login},
                    },
                )
            )

    # Inserts into users wait for this lock; reads of users do not.
    locker = psycopg.connect(database_url)
    adding = threading.Thread(target=add)
    try:
        locker.execute("LOCK TABLE users IN EXCLUSIVE MODE")
        adding.start()
        deadline = time.monotonic() + 30
        while _waiting_for_lock(database_url) == 0:
            assert time.monotonic() < deadline, "the addUser never reached its insert"
            assert adding.is_alive(), added[0].text
            time.sleep(0.05)
        # The server's only process has a request waiting for PostgreSQL: another request,
        # which needs no lock, is answered meanwhile (before, the process waited with it).
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            read = client.get("/user", params={"logins[]": "owner"}, headers=headers)
        assert read.status_code == 200, read.text
        assert adding.is_alive() and not added
        assert count_users(world.db, world.account_id, login) == 0
    finally:
        locker.rollback()
        locker.close()
        adding.join(timeout=60)
    # Once the lock is gone, the waiting request completes as if nothing had happened.
    assert added and added[0].status_code == 201, added[0].text
    assert count_users(world.db, world.account_id, login) == 1


@contextlib.contextmanager
def _pool_of_one(timeout: float) -> Iterator[_LoopSharingPool]:
    pool = _LoopSharingPool(
        lambda: psycopg.connect(PG_ADMIN_URL, autocommit=True),
        pool_size=1,
        max_overflow=0,
        timeout=timeout,
    )
    try:
        yield pool
    finally:
        pool.dispose()


def _side_by_side(*calls: Callable[[], None]) -> None:
    """Each call in a greenlet of its own on one event loop, as requests run on PostgreSQL
    (api/execution.py). The loop runs in a thread of its own: another test of this process may
    have left one running in this thread."""

    async def all_of_them() -> None:
        await asyncio.gather(*(greenlet_spawn(call) for call in calls))

    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, all_of_them()).result(timeout=60)


def test_a_checkout_from_an_exhausted_pool_lets_the_loop_run(backend: str) -> None:
    """Two requests' greenlets share a pool of one connection: the second waits in the loop
    until the first, which needs the loop to go on, gives the connection back. A plain
    QueuePool would block the loop's thread until its timeout instead."""
    if backend != "postgres":
        pytest.skip("the pool of PostgreSQL connections")
    order: list[str] = []
    with _pool_of_one(timeout=5) as pool:

        def request(name: str) -> None:
            connection: Any = pool.connect()
            try:
                order.append(f"{name} has the connection")
                # Waits in the loop (as a request waiting for PostgreSQL does), holding it.
                await_(asyncio.sleep(0.05))
                connection.cursor().execute("SELECT 1")
            finally:
                connection.close()
                order.append(f"{name} gave it back")

        _side_by_side(lambda: request("first"), lambda: request("second"))
    assert order == [
        "first has the connection",
        "first gave it back",
        "second has the connection",
        "second gave it back",
    ]


def test_a_checkout_that_finds_no_connection_in_time_fails_as_the_pool_would(
    backend: str,
) -> None:
    """The wait in the loop ends at the pool's timeout with the pool's own error, and the loop
    kept running meanwhile: the holder finished its work."""
    if backend != "postgres":
        pytest.skip("the pool of PostgreSQL connections")
    done: list[str] = []
    with _pool_of_one(timeout=0.2) as pool:

        def holder() -> None:
            connection: Any = pool.connect()
            try:
                await_(asyncio.sleep(1.0))
                done.append("holder")
            finally:
                connection.close()

        def latecomer() -> None:
            await_(asyncio.sleep(0.01))  # the holder has the connection by now
            with pytest.raises(PoolTimeoutError, match="no database connection came free"):
                pool.connect()
            done.append("latecomer refused")

        _side_by_side(holder, latecomer)
    assert done == ["latecomer refused", "holder"]
