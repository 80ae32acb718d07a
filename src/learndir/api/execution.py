"""Where a core call runs: inline on the event loop, or in the thread pool.

The core is synchronous. A call that does not hash a password runs inline on the event loop:
on SQLite its calls are local and take well under a millisecond, and on PostgreSQL a request
is a few round trips on one pooled connection. A hop to a worker thread costs more CPU than it
saves (measured: a third of a request's CPU on SQLite; on PostgreSQL, addUser at 32 clients
went from 341 to 412-517 users/s with 2 processes; see docs/benchmarks.md). While one request
waits for PostgreSQL its process waits too: `learndir serve` runs a process per core, so the
cores stay busy. Calls that may hash or verify a password (tens of milliseconds of Argon2) run
in the thread pool, so they never hold up the other requests of their process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

T = TypeVar("T")


async def call_core(work: Callable[[], T], *, may_hash: bool) -> T:
    if not may_hash:
        return work()
    return await run_in_threadpool(work)


def body_may_carry_password(body: bytes) -> bool:
    """Conservative: any mention of a password sends the call to the thread pool."""
    return b"assword" in body
