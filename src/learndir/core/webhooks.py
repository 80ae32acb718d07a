"""Webhook subscribers and their subscriptions: the vendor's /webhook API, plus replay.

Only the account owner and account administrators manage them. Every change bumps the
account's settings version, so the listeners cached with the account settings (read by
`changes.record` on every change) are never stale. The confirmation code is not sent from here:
/webhook/code/send queues a CONFIRMATION_CODE event for the subscriber, and the delivery worker
mints the code when it sends it (only its hash is kept), so no raw code is ever stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from learndir.core.account_settings import settings_changed
from learndir.core.actor import Actor
from learndir.core.auth import account_url_key
from learndir.core.changes import (
    CONFIRMATION_CODE,
    Change,
    EventType,
    Operation,
    TargetKind,
    queue_event,
    record,
)
from learndir.core.common import as_utc, as_uuid_text, fold, new_id, parse_time, utcnow
from learndir.core.errors import DomainError, ErrorCode, invalid
from learndir.db.engine import Database
from learndir.db.schema import (
    accounts,
    webhook_deliveries,
    webhook_subscribers,
    webhook_subscriptions,
)

MAX_LENGTH = 255
SUBSCRIPTION_TYPES = frozenset(EventType)
# Subscription params the events understand: the vendor's userIds filter.
PARAM_NAMES = frozenset({"userIds"})


@dataclass(frozen=True)
class SubscriberInfo:
    name: str
    callback_url: str
    confirmed: bool
    enabled: bool
    has_secret: bool
    created_at: datetime
    pending: int
    failed: int
    failing_since: datetime | None
    last_error: str | None
    last_delivered_at: datetime | None


@dataclass(frozen=True)
class Subscription:
    type: str
    params: list[dict[str, Any]]


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def _require_admin(actor: Actor) -> None:
    actor.require_account_admin("manage webhooks")


def _text(value: Any, parameter: str, *, required: bool = True) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise invalid(parameter, "is required")
        return None
    if not isinstance(value, str):
        raise invalid(parameter, "must be a text value")
    text: str = value.strip()
    if len(text) > MAX_LENGTH:
        raise invalid(parameter, f"must be at most {MAX_LENGTH} characters long")
    return text


def _name(value: Any) -> str:
    name = _text(value, "subscriberName")
    assert name is not None
    return name


def _url(value: Any, *, required: bool = True) -> str | None:
    url = _text(value, "callbackUrl", required=required)
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise invalid("callbackUrl", "must be an http:// or https:// URL")
    return url


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid("secret", "must be a text value")
    if len(value) > MAX_LENGTH:
        raise invalid("secret", f"must be at most {MAX_LENGTH} characters long")
    return value


def subscriber_not_found() -> DomainError:
    return DomainError(
        ErrorCode.NOT_FOUND,
        "no subscriber of that name in this account",
        parameter="subscriberName",
        message="Subscriber not found",
    )


def _find(conn: Connection, account_id: str, name: str, *, lock: bool = False) -> Any:
    query = select(webhook_subscribers).where(
        webhook_subscribers.c.account_id == account_id,
        webhook_subscribers.c.name_key == fold(name),
    )
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise subscriber_not_found()
    return row


def _set(conn: Connection, subscriber_id: str, account_id: str, **values: Any) -> None:
    conn.execute(
        update(webhook_subscribers).where(webhook_subscribers.c.id == subscriber_id).values(values)
    )
    settings_changed(conn, account_id)


def _subscriber_view(conn: Connection, account_id: str, name: str) -> dict[str, Any] | None:
    """The subscriber as the audit trail shows it: never the secret, only whether one is set."""
    row = conn.execute(
        select(webhook_subscribers).where(
            webhook_subscribers.c.account_id == account_id,
            webhook_subscribers.c.name_key == fold(name),
        )
    ).first()
    if row is None:
        return None
    kinds = conn.execute(
        select(webhook_subscriptions.c.event_type, webhook_subscriptions.c.params)
        .where(webhook_subscriptions.c.subscriber_id == row.id)
        .order_by(webhook_subscriptions.c.event_type)
    ).all()
    return {
        "subscriberId": row.id,
        "subscriberName": row.name,
        "callbackUrl": row.callback_url,
        "secretSet": row.secret is not None,
        "confirmed": row.confirmed,
        "enabled": row.enabled,
        "subscriptions": [
            {"type": k.event_type, "params": json.loads(k.params) if k.params else []}
            for k in kinds
        ],
    }


@contextlib.contextmanager
def _recorded(conn: Connection, actor: Actor, name: str) -> Iterator[None]:
    """Records what the block did to the subscriber `name` in the audit trail."""
    before = _subscriber_view(conn, actor.account_id, name)
    yield
    after = _subscriber_view(conn, actor.account_id, name)
    either = after or before
    if either is None or before == after:
        return
    change = Change(
        Operation.WEBHOOK_SUBSCRIBER_CHANGED,
        TargetKind.WEBHOOK_SUBSCRIBER,
        either["subscriberId"],
        actor.user_id,
        before=before,
        after=after,
    )
    record(conn, actor.account, [change])


# ---- the vendor's calls ---------------------------------------------------------------------


def register(db: Database, actor: Actor, name: Any, callback_url: Any, secret: Any) -> None:
    _require_admin(actor)
    checked_name = _name(name)
    url = _url(callback_url)
    checked_secret = _secret(secret) or None
    with db.write() as conn, _recorded(conn, actor, checked_name):
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(webhook_subscribers).values(
                        id=new_id(),
                        account_id=actor.account_id,
                        name=checked_name,
                        name_key=fold(checked_name),
                        callback_url=url,
                        secret=checked_secret,
                        confirmed=False,
                        enabled=True,
                        created_at=utcnow(),
                    )
                )
        except IntegrityError:
            raise invalid(
                "subscriberName", f"a subscriber named {checked_name!r} already exists"
            ) from None
        settings_changed(conn, actor.account_id)


def send_code(db: Database, actor: Actor, name: Any) -> None:
    """Queues a CONFIRMATION_CODE event to the callbackUrl; voids every earlier code now."""
    _require_admin(actor)
    checked = _name(name)
    with db.write() as conn:
        row = _find(conn, actor.account_id, checked, lock=True)
        # A code is on its way: try the receiver now even if it was failing.
        _set(
            conn,
            row.id,
            actor.account_id,
            code_hash=None,
            code_expires_at=None,
            next_attempt_at=None,
        )
        queue_event(conn, actor.account, CONFIRMATION_CODE, {"subscriberName": row.name}, [row.id])


def confirm(db: Database, actor: Actor, name: Any, code: Any) -> None:
    _require_admin(actor)
    checked = _name(name)
    given = _text(code, "code")
    assert given is not None
    with db.write() as conn, _recorded(conn, actor, checked):
        row = _find(conn, actor.account_id, checked, lock=True)
        valid = (
            row.code_hash is not None
            and row.code_expires_at is not None
            and as_utc(row.code_expires_at) > utcnow()
            and hmac.compare_digest(row.code_hash, code_hash(given))
        )
        if not valid:
            raise invalid("code", "wrong or expired confirmation code; send a new one")
        _set(conn, row.id, actor.account_id, confirmed=True, code_hash=None, code_expires_at=None)


def set_enabled(db: Database, actor: Actor, name: Any, enabled: bool) -> None:
    """Disabled subscribers get no new events; those already queued wait until enabled."""
    _require_admin(actor)
    checked = _name(name)
    with db.write() as conn, _recorded(conn, actor, checked):
        row = _find(conn, actor.account_id, checked, lock=True)
        _set(conn, row.id, actor.account_id, enabled=enabled)


def remove(db: Database, actor: Actor, name: Any) -> None:
    _require_admin(actor)
    checked = _name(name)
    with db.write() as conn, _recorded(conn, actor, checked):
        row = _find(conn, actor.account_id, checked, lock=True)
        conn.execute(delete(webhook_deliveries).where(webhook_deliveries.c.subscriber_id == row.id))
        conn.execute(
            delete(webhook_subscriptions).where(webhook_subscriptions.c.subscriber_id == row.id)
        )
        conn.execute(delete(webhook_subscribers).where(webhook_subscribers.c.id == row.id))
        settings_changed(conn, actor.account_id)


def change_settings(db: Database, actor: Actor, name: Any, callback_url: Any, secret: Any) -> None:
    """A new callbackUrl must be confirmed again; an empty secret removes it."""
    _require_admin(actor)
    checked = _name(name)
    url = _url(callback_url, required=False)
    new_secret = _secret(secret)
    if url is None and new_secret is None:
        raise invalid("callbackUrl", "give callbackUrl, secret or both")
    with db.write() as conn, _recorded(conn, actor, checked):
        row = _find(conn, actor.account_id, checked, lock=True)
        values: dict[str, Any] = {}
        if new_secret is not None:
            values["secret"] = new_secret or None
        if url is not None and url != row.callback_url:
            values.update(
                callback_url=url,
                confirmed=False,
                code_hash=None,
                code_expires_at=None,
                attempts=0,
                next_attempt_at=None,
                failing_since=None,
                last_error=None,
            )
        if values:
            _set(conn, row.id, actor.account_id, **values)


def parse_params(raw: Any) -> list[dict[str, Any]]:
    """The vendor's [{name, value}] list (one item alone is taken as a list of one)."""
    if raw is None or raw == "" or raw == []:
        return []
    items = [raw] if isinstance(raw, dict) else raw
    if not isinstance(items, list):
        raise invalid("subscription.params", "must be a list of {name, value}")
    params: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        where = f"subscription.params[{i}]"
        if not isinstance(item, dict) or "name" not in item:
            raise invalid(where, "must be an object with name and value")
        name = item.get("name")
        if name not in PARAM_NAMES:
            raise invalid(f"{where}.name", f"must be one of {', '.join(sorted(PARAM_NAMES))}")
        value = item.get("value")
        values = value if isinstance(value, list) else str(value or "").split(",")
        ids: list[str] = []
        for v in values:
            text = str(v).strip() if isinstance(v, str | int) else ""
            canonical = as_uuid_text(text) if text else None
            if canonical is None:
                raise invalid(f"{where}.value", f"{v!r} is not a user id")
            ids.append(canonical)
        if not ids:
            raise invalid(f"{where}.value", "needs at least one user id")
        params.append({"name": name, "value": ids})
    return params


def subscribe(db: Database, actor: Actor, name: Any, subscription: Any) -> None:
    """Adds the subscription, or replaces the params of the subscriber's one of that type."""
    _require_admin(actor)
    checked = _name(name)
    if not isinstance(subscription, dict):
        raise invalid("subscription", "is required: {subscriptionType, params}")
    kind = _subscription_type(subscription.get("subscriptionType"), "subscription.subscriptionType")
    params = parse_params(subscription.get("params"))
    stored = json.dumps(params) if params else None
    with db.write() as conn, _recorded(conn, actor, checked):
        row = _find(conn, actor.account_id, checked, lock=True)
        _drop_subscription(conn, row.id, kind)
        conn.execute(
            insert(webhook_subscriptions).values(
                subscriber_id=row.id, event_type=kind, params=stored
            )
        )
        settings_changed(conn, actor.account_id)


def unsubscribe(db: Database, actor: Actor, name: Any, subscription_type: Any) -> None:
    _require_admin(actor)
    checked = _name(name)
    kind = _subscription_type(subscription_type, "subscriptionType")
    with db.write() as conn, _recorded(conn, actor, checked):
        row = _find(conn, actor.account_id, checked, lock=True)
        _drop_subscription(conn, row.id, kind)
        settings_changed(conn, actor.account_id)


def _drop_subscription(conn: Connection, subscriber_id: str, kind: str) -> None:
    conn.execute(
        delete(webhook_subscriptions).where(
            webhook_subscriptions.c.subscriber_id == subscriber_id,
            webhook_subscriptions.c.event_type == kind,
        )
    )


def _subscription_type(value: Any, parameter: str) -> str:
    kind = _text(value, parameter)
    assert kind is not None
    if kind.upper() not in SUBSCRIPTION_TYPES:
        raise invalid(parameter, f"unknown subscription type {kind!r}")
    return kind.upper()


def list_subscriptions(db: Database, actor: Actor, name: Any) -> list[Subscription]:
    _require_admin(actor)
    checked = _name(name)
    with db.read() as conn:
        row = _find(conn, actor.account_id, checked)
        rows = conn.execute(
            select(webhook_subscriptions.c.event_type, webhook_subscriptions.c.params)
            .where(webhook_subscriptions.c.subscriber_id == row.id)
            .order_by(webhook_subscriptions.c.event_type)
        ).all()
    return [Subscription(r.event_type, json.loads(r.params) if r.params else []) for r in rows]


def subscriber_info(db: Database, actor: Actor, name: Any) -> SubscriberInfo:
    _require_admin(actor)
    checked = _name(name)
    with db.read() as conn:
        row = _find(conn, actor.account_id, checked)
        counts = _counts(conn, [row.id]).get(row.id, {})
    return _info(row, counts)


# ---- replay (a learndir extension) ----------------------------------------------------------


def replay(db: Database, actor: Actor, name: Any, since: datetime | None = None) -> int:
    """Failed deliveries of the subscriber (created at or after `since`) go back to pending,
    in their original order; returns how many."""
    _require_admin(actor)
    checked = _name(name)
    with db.write() as conn:
        return replay_in(conn, actor.account_id, checked, since)


def parse_since(value: Any) -> datetime | None:
    return parse_time(value, "since")


def replay_in(conn: Connection, account_id: str, name: str, since: datetime | None) -> int:
    row = _find(conn, account_id, name, lock=True)
    condition = and_(
        webhook_deliveries.c.subscriber_id == row.id, webhook_deliveries.c.status == "failed"
    )
    if since is not None:
        condition = and_(condition, webhook_deliveries.c.created_at >= since)
    count = conn.execute(
        update(webhook_deliveries)
        .where(condition)
        .values(status="pending", attempts=0, last_error=None)
    ).rowcount
    conn.execute(
        update(webhook_subscribers)
        .where(webhook_subscribers.c.id == row.id)
        .values(attempts=0, next_attempt_at=None, failing_since=None)
    )
    return int(count)


def replay_by_account_url(
    db: Database, account_url: str, name: str, since: datetime | None = None
) -> int:
    """The CLI's replay: the administrator of the installation acts for the account."""
    with db.write() as conn:
        account_id = conn.execute(
            select(accounts.c.id).where(accounts.c.url_key == account_url_key(account_url))
        ).scalar()
        if account_id is None:
            raise invalid("accountUrl", f"no account {account_url!r}")
        return replay_in(conn, account_id, _name(name), since)


@dataclass(frozen=True)
class SubscriberRow:
    account_url: str
    info: SubscriberInfo


def all_subscribers(db: Database) -> list[SubscriberRow]:
    """Every subscriber of the installation with its backlog, for `learndir webhooks list`."""
    with db.read() as conn:
        rows = conn.execute(
            select(webhook_subscribers, accounts.c.url.label("account_url"))
            .join(accounts, accounts.c.id == webhook_subscribers.c.account_id)
            .order_by(accounts.c.url, webhook_subscribers.c.name_key)
        ).all()
        counts = _counts(conn, [r.id for r in rows])
    return [SubscriberRow(r.account_url, _info(r, counts.get(r.id, {}))) for r in rows]


def _counts(conn: Connection, subscriber_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    if not subscriber_ids:
        return {}
    out: dict[str, dict[str, int]] = {}
    for subscriber_id, status, n in conn.execute(
        select(webhook_deliveries.c.subscriber_id, webhook_deliveries.c.status, func.count())
        .where(
            webhook_deliveries.c.subscriber_id.in_(list(subscriber_ids)),
            webhook_deliveries.c.status.in_(("pending", "failed")),
        )
        .group_by(webhook_deliveries.c.subscriber_id, webhook_deliveries.c.status)
    ):
        out.setdefault(subscriber_id, {})[status] = int(n)
    return out


def _info(row: Any, counts: dict[str, int]) -> SubscriberInfo:
    return SubscriberInfo(
        name=row.name,
        callback_url=row.callback_url,
        confirmed=bool(row.confirmed),
        enabled=bool(row.enabled),
        has_secret=bool(row.secret),
        created_at=row.created_at,
        pending=counts.get("pending", 0),
        failed=counts.get("failed", 0),
        failing_since=row.failing_since,
        last_error=row.last_error,
        last_delivered_at=row.last_delivered_at,
    )


@dataclass(frozen=True)
class SubscriberListing:
    """A subscriber of the account with its delivery backlog and its subscriptions."""

    info: SubscriberInfo
    subscriptions: list[Subscription]


def account_subscribers(db: Database, actor: Actor) -> list[SubscriberListing]:
    """The actor's account's subscribers by name, each with its pending and failed deliveries,
    last error and subscriptions (three queries, whatever the number of subscribers)."""
    _require_admin(actor)
    with db.read() as conn:
        rows = conn.execute(
            select(webhook_subscribers)
            .where(webhook_subscribers.c.account_id == actor.account_id)
            .order_by(webhook_subscribers.c.name_key)
        ).all()
        ids = [r.id for r in rows]
        counts = _counts(conn, ids)
        kinds: dict[str, list[Subscription]] = {}
        if ids:
            for sub in conn.execute(
                select(
                    webhook_subscriptions.c.subscriber_id,
                    webhook_subscriptions.c.event_type,
                    webhook_subscriptions.c.params,
                )
                .where(webhook_subscriptions.c.subscriber_id.in_(ids))
                .order_by(webhook_subscriptions.c.event_type)
            ):
                kinds.setdefault(sub.subscriber_id, []).append(
                    Subscription(sub.event_type, json.loads(sub.params) if sub.params else [])
                )
    return [SubscriberListing(_info(r, counts.get(r.id, {})), kinds.get(r.id, [])) for r in rows]
