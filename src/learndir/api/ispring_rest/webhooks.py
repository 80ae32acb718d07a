"""The vendor's /webhook API (JSON, XML and form bodies like the rest of the REST API), and
learndir's /webhook/replay. Each handler only decodes and renders; the rules are in
core/webhooks.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from learndir.api.ispring_rest.common import call, db_of, empty, single
from learndir.api.ispring_rest.wire import parse_json, render
from learndir.core import webhooks
from learndir.core.actor import Actor
from learndir.core.changes import iso_utc
from learndir.db.engine import Database

router = APIRouter()


def _subscription(raw: Any) -> Any:
    """XML gives a param's list of ids as <value><id>..</id>..</value>: a one-key mapping.
    A form may carry the subscription as JSON text."""
    if isinstance(raw, str) and raw.strip().startswith("{"):
        raw = parse_json(raw, "subscription")
    if not isinstance(raw, dict):
        return raw
    params = raw.get("params")
    items = params if isinstance(params, list) else [params] if isinstance(params, dict) else None
    if items is None:
        return raw
    flat = []
    for item in items:
        value = item.get("value") if isinstance(item, dict) else None
        if isinstance(value, dict) and len(value) == 1:
            inner = next(iter(value.values()))
            item = {**item, "value": inner if isinstance(inner, list) else [inner]}
        flat.append(item)
    return {**raw, "params": flat}


Action = Callable[[Database, Actor, dict[str, Any]], object]


def _action(path: str, work: Action) -> None:
    """POST `path`: `work` with the decoded body; 200 with an empty body when it returns."""

    async def handler(request: Request) -> Response:
        db = db_of(request)
        await call(request, lambda actor, data: work(db, actor, data))
        return empty(200)

    router.add_api_route(path, handler, methods=["POST"], name=path)


def _name(data: dict[str, Any]) -> Any:
    return data.get("subscriberName")


_action(
    "/webhook/register",
    lambda db, actor, data: webhooks.register(
        db, actor, _name(data), data.get("callbackUrl"), data.get("secret")
    ),
)
_action("/webhook/code/send", lambda db, actor, data: webhooks.send_code(db, actor, _name(data)))
_action(
    "/webhook/confirm",
    lambda db, actor, data: webhooks.confirm(db, actor, _name(data), data.get("code")),
)
_action(
    "/webhook/enable",
    lambda db, actor, data: webhooks.set_enabled(db, actor, _name(data), True),
)
_action(
    "/webhook/disable",
    lambda db, actor, data: webhooks.set_enabled(db, actor, _name(data), False),
)
_action("/webhook/remove", lambda db, actor, data: webhooks.remove(db, actor, _name(data)))
_action(
    "/webhook/settings/change",
    lambda db, actor, data: webhooks.change_settings(
        db, actor, _name(data), data.get("callbackUrl"), data.get("secret")
    ),
)
_action(
    "/webhook/subscribe",
    lambda db, actor, data: webhooks.subscribe(
        db, actor, _name(data), _subscription(data.get("subscription"))
    ),
)
_action(
    "/webhook/unsubscribe",
    lambda db, actor, data: webhooks.unsubscribe(
        db, actor, _name(data), data.get("subscriptionType")
    ),
)


@router.get("/webhook/subscription/list")
async def subscription_list(request: Request) -> Response:
    db = db_of(request)

    def work(actor: Actor, _: dict[str, Any]) -> list[dict[str, Any]]:
        found = webhooks.list_subscriptions(db, actor, request.query_params.get("subscriberName"))
        return [{"subscriptionType": s.type, "params": s.params} for s in found]

    result = await call(request, work, with_body=False)
    return render(
        request, result, items="subscription", item_names={"params": "param", "value": "id"}
    )


@router.get("/webhook/subscriber/info")
async def subscriber_info(request: Request) -> Response:
    db = db_of(request)

    def work(actor: Actor, _: dict[str, Any]) -> dict[str, Any]:
        info = webhooks.subscriber_info(db, actor, request.query_params.get("subscriberName"))
        out = {
            "subscriberName": info.name,
            "callbackUrl": info.callback_url,
            "isConfirmed": info.confirmed,
            "isEnabled": info.enabled,
            "hasSecret": info.has_secret,
            "createdAt": _time(info.created_at),
            "pendingEvents": info.pending,
            "failedEvents": info.failed,
            "failingSince": _time(info.failing_since),
            "lastError": info.last_error,
            "lastDeliveredAt": _time(info.last_delivered_at),
        }
        # Unknown values are left out (XML has no null).
        return {k: v for k, v in out.items() if v is not None}

    return single(request, await call(request, work, with_body=False))


@router.post("/webhook/replay")
async def replay(request: Request) -> Response:
    db = db_of(request)

    def work(actor: Actor, data: dict[str, Any]) -> dict[str, Any]:
        since = webhooks.parse_since(data.get("since"))
        count = webhooks.replay(db, actor, data.get("subscriberName"), since)
        return {"replayed": count}

    return single(request, await call(request, work))


def _time(value: datetime | None) -> str | None:
    return iso_utc(value) if value is not None else None
