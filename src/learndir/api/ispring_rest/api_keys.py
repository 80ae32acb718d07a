"""learndir's /api-keys: list, create and revoke the account's API keys (JSON or XML like the
rest of the REST API). The rules are in core/api_keys.py."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from learndir.api.ispring_rest.common import call, db_of, empty, single
from learndir.api.ispring_rest.wire import render
from learndir.core import api_keys
from learndir.core.actor import Actor
from learndir.core.changes import iso_utc

router = APIRouter()


def key_item(key: api_keys.KeyInfo) -> dict[str, Any]:
    out = {
        "clientId": key.client_id,
        "userId": key.user_id,
        "login": key.login,
        "createdAt": iso_utc(key.created_at),
        "lastUsedAt": iso_utc(key.last_used_at) if key.last_used_at else None,
        "revokedAt": iso_utc(key.revoked_at) if key.revoked_at else None,
    }
    # Unknown values are left out (XML has no null).
    return {k: v for k, v in out.items() if v is not None}


@router.get("/api-keys")
async def list_keys(request: Request) -> Response:
    db = db_of(request)
    found = await call(request, lambda actor, _: api_keys.list_keys(db, actor), with_body=False)
    return render(request, [key_item(k) for k in found], items="apiKey")


@router.post("/api-keys")
async def create_key(request: Request) -> Response:
    db = db_of(request)

    def work(actor: Actor, data: dict[str, Any]) -> dict[str, Any]:
        key = api_keys.create_key(db, actor, data.get("userId"))
        return {"clientId": key.client_id, "clientSecret": key.client_secret, "userId": key.user_id}

    return single(request, await call(request, work), 201)


@router.delete("/api-keys/{client_id}")
async def revoke_key(request: Request, client_id: str) -> Response:
    db = db_of(request)
    await call(request, lambda actor, _: api_keys.revoke_key(db, actor, client_id), with_body=False)
    return empty(204)
