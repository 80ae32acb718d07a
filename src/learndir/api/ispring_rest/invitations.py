"""iSpring REST: a user's invitations (learndir's addition to the vendor's API): the list,
resend and revoke. Only those who may edit the user; the core decides."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from learndir.api.ispring_rest.common import call, db_of, empty, text_param
from learndir.api.ispring_rest.present import ITEM_NAMES, invitation
from learndir.api.ispring_rest.wire import render
from learndir.core.actor import Actor
from learndir.core.invitations import service
from learndir.core.invitations.service import Invitation

router = APIRouter()


def _listed(request: Request, found: list[Invitation]) -> Response:
    return render(
        request, [invitation(i) for i in found], items="invitation", item_names=ITEM_NAMES
    )


@router.get("/user/{user_id}/invitations")
async def get_invitations(request: Request, user_id: str) -> Response:
    db = db_of(request)
    found = await call(
        request,
        lambda actor, _: service.list_invitations(db, actor, user_id),
        with_body=False,
    )
    return _listed(request, found)


@router.post("/user/{user_id}/invitation/resend")
async def post_resend(request: Request, user_id: str) -> Response:
    db = db_of(request)

    def work(actor: Actor, data: dict[str, Any]) -> list[Invitation]:
        channel = text_param(data, "channel", request, "x-channel")
        return service.resend(db, actor, user_id, channel)

    return _listed(request, await call(request, work))


@router.post("/user/{user_id}/invitation/revoke")
async def post_revoke(request: Request, user_id: str) -> Response:
    db = db_of(request)
    await call(request, lambda actor, _: service.revoke(db, actor, user_id), with_body=False)
    return empty(204)
