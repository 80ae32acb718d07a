"""Where a core call runs: inline on the event loop, or in the thread pool.

The core is synchronous. On SQLite its calls are local and take well under a millisecond, and
writers queue on one lock anyway, so a hop to a worker thread costs more than the call itself
(measured: about a third of a request's CPU; see docs/benchmarks.md). Those calls run inline.
Calls that may hash or verify a password (tens of milliseconds of Argon2) and every call on
PostgreSQL (network round trips that other requests should not wait behind) run in the thread
pool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi import Request
from starlette.concurrency import run_in_threadpool

T = TypeVar("T")


async def call_core(request: Request, work: Callable[[], T], *, may_hash: bool) -> T:
    if request.app.state.db.is_sqlite and not may_hash:
        return work()
    return await run_in_threadpool(work)


def body_may_carry_password(body: bytes) -> bool:
    """Conservative: any mention of a password sends the call to the thread pool."""
    return b"assword" in body
