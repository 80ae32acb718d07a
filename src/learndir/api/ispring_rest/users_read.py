"""iSpring REST: reading users (profiles, lists, pages, lookups)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from learndir.api.ispring_rest import present
from learndir.api.ispring_rest.common import call, db_of, single
from learndir.core.users.queries import get_user

router = APIRouter()


@router.get("/user/{user_id}")
async def get_user_profile(request: Request, user_id: str) -> Response:
    db = db_of(request)
    found = await call(request, lambda actor, _: get_user(db, actor, user_id), with_body=False)
    return single(request, present.user(found))
