"""Shared by the webhook tests: calling the /webhook API, running the delivery job until the
receiver has what a test waits for, and checking both signatures."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import update
from standardwebhooks.webhooks import Webhook

from learndir.core.common import utcnow
from learndir.db.engine import Database
from learndir.db.schema import webhook_subscribers
from learndir.delivery.webhooks import deliver_webhooks
from tests.receivers import HttpReceiver, Request
from tests.support import Server, World


def hook(
    server: Server,
    world: World,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    login: str = "owner",
    params: dict[str, str] | None = None,
) -> httpx.Response:
    """POST (GET with `params`) {base}/webhook/{path} as JSON with `login`'s token."""
    headers = {"Authorization": f"Bearer {world.token(login)}", "Accept": "application/json"}
    url = f"{server.base_url}/webhook/{path}"
    if params is not None:
        return httpx.get(url, params=params, headers=headers, timeout=30)
    return httpx.post(url, json=body or {}, headers=headers, timeout=30)


def pump(
    db: Database, receiver: HttpReceiver, done: Callable[[list[Request]], bool], timeout: float = 15
) -> list[Request]:
    """Runs the delivery job (as the worker will) until `done(received)` holds."""
    deadline = time.monotonic() + timeout
    while True:
        received = receiver.received()
        if done(received):
            return received
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; received {[r.body for r in received]}")
        if deliver_webhooks(db, "test") == 0:
            time.sleep(0.05)


def retry_now(db: Database, name: str, *, failing_for: timedelta | None = None) -> None:
    """Plays the passing of the backoff delay; with `failing_for`, that the subscriber has
    been failing that long."""
    values: dict[str, Any] = {"next_attempt_at": None}
    if failing_for is not None:
        values["failing_since"] = utcnow() - failing_for
    with db.write() as conn:
        conn.execute(
            update(webhook_subscribers).where(webhook_subscribers.c.name == name).values(values)
        )


def events_of(request: Request) -> list[dict[str, Any]]:
    body = json.loads(request.body)
    assert isinstance(body, list)
    return body


def verify(request: Request, secret: str) -> list[dict[str, Any]]:
    """Both signatures, as a receiver checks them; returns the events."""
    assert (
        request.headers["X-Hub-Signature"]
        == hashlib.sha256(request.body + secret.encode()).hexdigest()
    )
    key = "whsec_" + base64.b64encode(secret.encode()).decode()
    verified = Webhook(key).verify(request.body, request.headers)
    assert isinstance(verified, list)
    return verified


def register_confirmed(
    server: Server,
    world: World,
    db: Database,
    receiver: HttpReceiver,
    name: str,
    secret: str | None,
    *types: str,
) -> None:
    """register, code/send, the code from the receiver, confirm, subscribe to `types`."""
    body: dict[str, Any] = {"subscriberName": name, "callbackUrl": receiver.url + "/" + name}
    if secret is not None:
        body["secret"] = secret
    assert hook(server, world, "register", body).status_code == 200
    assert hook(server, world, "code/send", {"subscriberName": name}).status_code == 200
    mine = f"/{name}"
    received = pump(
        db, receiver, lambda rs: any(r.path == mine and b"CONFIRMATION_CODE" in r.body for r in rs)
    )
    code = [e for r in received if r.path == mine for e in events_of(r)][-1]["code"]
    answer = hook(server, world, "confirm", {"subscriberName": name, "code": code})
    assert answer.status_code == 200, answer.text
    for kind in types:
        answer = hook(
            server,
            world,
            "subscribe",
            {"subscriberName": name, "subscription": {"subscriptionType": kind, "params": []}},
        )
        assert answer.status_code == 200, answer.text


def to(receiver: HttpReceiver, name: str) -> list[Request]:
    return [r for r in receiver.received() if r.path == f"/{name}"]
