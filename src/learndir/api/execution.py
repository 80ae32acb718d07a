"""Where a core call runs: on the event loop, in a greenlet of its own, or in the thread pool.

The core is synchronous. A call that does not hash a password runs on the event loop's thread:
a hop to a worker thread costs more CPU than it saves (measured: a third of a request's CPU on
SQLite; on PostgreSQL, addUser at 32 clients went from 341 to 412-517 users/s with 2 processes,
and a thread pool tried again later lost to the inline call; see docs/benchmarks.md).

- SQLite: in a greenlet (`sqlalchemy.util.greenlet_spawn`). Its statements are local and take
  well under a millisecond, so nothing waits for them; what waits is the commit: a request
  whose writes all waited to its end commits them with the other requests of the process that
  reached their end in the same turn of the loop, in one transaction (db/engine.py,
  `Database._join_group`).
- PostgreSQL: in a greenlet, so that while one request
  waits for PostgreSQL's answer the loop serves the process's other requests: the statements
  are the same synchronous calls, and the connection waits in the loop (db/engine.py,
  `_LoopWaitingConnection`). Inline, the whole process waited for each round trip: a commit
  slow to reach the disk or a statement waiting for a lock held up every request of the
  process (the 150-400 ms pauses of both processes seen at load). At most `slots(db)` requests
  of a process wait side by side; each holds a pooled connection while it reads and may take
  a second one (a token's last-use time is written apart). A request whose writes all waited
  to its end gives its connection back and joins the process's next group commit, which sends
  the writes of every request that reached its end meanwhile in one transaction
  (`Database._join_pg_group`).

Calls that may hash or verify a password (tens of milliseconds of Argon2) run in the thread
pool, so they never hold up the other requests of their process.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.util.concurrency import greenlet_spawn
from starlette.concurrency import run_in_threadpool

from learndir.db.engine import Database

T = TypeVar("T")

# One semaphore per event loop and database (a test process runs several of each).
_slots: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, weakref.WeakKeyDictionary[Database, asyncio.Semaphore]
] = weakref.WeakKeyDictionary()


def slots(db: Database) -> int:
    """How many of a process's requests may run side by side on PostgreSQL: as many as the pool
    has connections. A request holds one while it reads and may take a second (a token's
    last-use time is written apart); one whose writes wait for the group commit holds none
    (db/engine.py, `Database._join_pg_group`), and the more requests reach their end while a
    group is sent, the more share the next one's transaction. Measured at 32 clients on 2
    cores with the group commit (docs/benchmarks.md): 4 side by side 1,020-1,080 users/s, 8
    1,140-1,290/s, 16 1,270-1,320/s. The pool's overflow leaves room for the second
    connections and the group committer's (`_LoopSharingPool` makes a request that finds it
    exhausted wait in the loop)."""
    return min(_MAX_SLOTS, max(1, db.pool_size))


_MAX_SLOTS = 16


def _semaphore(db: Database) -> asyncio.Semaphore:
    per_db = _slots.setdefault(asyncio.get_running_loop(), weakref.WeakKeyDictionary())
    semaphore = per_db.get(db)
    if semaphore is None:
        semaphore = per_db[db] = asyncio.Semaphore(slots(db))
    return semaphore


async def call_core(db: Database, work: Callable[[], T], *, may_hash: bool) -> T:
    if may_hash:
        return await run_in_threadpool(work)
    if db.is_sqlite:
        return await greenlet_spawn(work)
    async with _semaphore(db):
        return await greenlet_spawn(work)


def body_may_carry_password(body: bytes) -> bool:
    """Conservative: any mention of a password sends the call to the thread pool."""
    return b"assword" in body
