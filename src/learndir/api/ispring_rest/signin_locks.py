"""iSpring REST: sign-in locks of the caller's account (learndir's addition): the locked
logins, and unlocking one. Only the owner and account administrators; the core decides."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from learndir.api.ispring_rest.common import call, db_of, empty
from learndir.api.ispring_rest.wire import render
from learndir.core import signin
from learndir.core.changes import iso_utc

router = APIRouter()


def _lock(lock: signin.SigninLock) -> dict[str, Any]:
    return {
        "login": lock.subject,
        "failures": lock.failures,
        "firstFailedAt": iso_utc(lock.first_failed_at),
        "lastFailedAt": iso_utc(lock.last_failed_at),
        "lockedUntil": iso_utc(lock.locked_until) if lock.locked_until else None,
    }


@router.get("/signin/locks")
async def get_locks(request: Request) -> Response:
    db = db_of(request)
    found = await call(request, lambda actor, _: signin.account_locks(db, actor), with_body=False)
    return render(request, [_lock(lock) for lock in found], items="lock")


@router.delete("/signin/locks")
async def delete_lock(request: Request) -> Response:
    db = db_of(request)
    login = request.query_params.get("login")
    await call(request, lambda actor, _: signin.unlock_login(db, actor, login), with_body=False)
    return empty(204)
