"""The vendor's /webhook API (JSON, XML and form bodies like the rest of the REST API), and
learndir's /webhook/replay. Each handler only decodes and renders; the rules are in
core/webhooks.py."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from learndir.api.ispring_rest.common import call, db_of, empty, single
from learndir.api.ispring_rest.wire import parse_json, render
from learndir.core import webhooks
from learndir.core.actor import Actor
from learndir.core.changes import iso_utc

router = APIRouter()


def _query(request: Request) -> dict[str, Any]:
    return {"subscriberName": request.query_params.get("subscriberName")}


async def _run(request: Request, work: Any) -> Response:
    await call(request, work)
    return empty(200)


@router.post("/webhook/register")
async def register(request: Request) -> Response:
    db = db_of(request)
    return await _run(
        request,
        lambda actor, data: webhooks.register(
            db, actor, data.get("subscriberName"), data.get("callbackUrl"), data.get("secret")
        ),
    )


@router.post("/webhook/code/send")
async def send_code(request: Request) -> Response:
    db = db_of(request)
    return await _run(
        request, lambda actor, data: webhooks.send_code(db, actor, data.get("subscriberName"))
    )


@router.post("/webhook/confirm")
async def confirm(request: Request) -> Response:
    db = db_of(request)
    return await _run(
        request,
        lambda actor, data: webhooks.confirm(
            db, actor, data.get("subscriberName"), data.get("code")
        ),
    )


@router.post("/webhook/enable")
async def enable(request: Request) -> Response:
    db = db_of(request)
    return await _run(
        request,
        lambda actor, data: webhooks.set_enabled(db, actor, data.get("subscriberName"), True),
    )


@router.post("/webhook/disable")
async def disable(request: Request) -> Response:
    db = db_of(request)
    return await _run(
        request,
        lambda actor, data: webhooks.set_enabled(db, actor, data.get("subscriberName"), False),
    )


@router.post("/webhook/remove")
async def remove(request: Request) -> Response:
    db = db_of(request)
    return await _run(
        request, lambda actor, data: webhooks.remove(db, actor, data.get("subscriberName"))
    )


@router.post("/webhook/settings/change")
async def change_settings(request: Request) -> Response:
    db = db_of(request)
    return await _run(
        request,
        lambda actor, data: webhooks.change_settings(
            db, actor, data.get("subscriberName"), data.get("callbackUrl"), data.get("secret")
        ),
    )


@router.post("/webhook/subscribe")
async def subscribe(request: Request) -> Response:
    db = db_of(request)
    return await _run(
        request,
        lambda actor, data: webhooks.subscribe(
            db, actor, data.get("subscriberName"), _subscription(data.get("subscription"))
        ),
    )


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


@router.post("/webhook/unsubscribe")
async def unsubscribe(request: Request) -> Response:
    db = db_of(request)
    return await _run(
        request,
        lambda actor, data: webhooks.unsubscribe(
            db, actor, data.get("subscriberName"), data.get("subscriptionType")
        ),
    )


@router.get("/webhook/subscription/list")
async def subscription_list(request: Request) -> Response:
    db = db_of(request)

    def work(actor: Actor, _: dict[str, Any]) -> list[dict[str, Any]]:
        found = webhooks.list_subscriptions(db, actor, _query(request)["subscriberName"])
        return [{"subscriptionType": s.type, "params": s.params} for s in found]

    result = await call(request, work, with_body=False)
    return render(
        request, result, items="subscription", item_names={"params": "param", "value": "id"}
    )


@router.get("/webhook/subscriber/info")
async def subscriber_info(request: Request) -> Response:
    db = db_of(request)

    def work(actor: Actor, _: dict[str, Any]) -> dict[str, Any]:
        info = webhooks.subscriber_info(db, actor, _query(request)["subscriberName"])
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
