"""Delivering webhook events: `deliver_webhooks(db, worker_id)` is one job of the delivery
worker.

Events go out in order per subscriber, so the unit of work is a subscriber, not an event: a
worker claims a subscriber with a lease (a conditional UPDATE of its row, which on PostgreSQL
re-checks the condition after any concurrent claim commits, so two workers never hold one
subscriber), then POSTs its oldest pending deliveries, one run of consecutive events of the
same type per request (at most BATCH_LIMIT), as a JSON list.

Only HTTP 200 counts as delivered (as the vendor). Anything else, or no answer within
TIMEOUT_SECONDS, is retried: the same batch (its deliveries carry their attempt count, so the
retry sends exactly the events that failed, under the same `webhook-id`), with `retry.py`'s
backoff per subscriber, for 24 hours from the first failure. Then the batch is marked `failed`
(kept, visible, replayable) and delivery goes on with the next events; while the receiver
still fails after those 24 hours each further batch gets a single attempt, until one succeeds.

Crash window: a worker that dies after the receiver answered 200 and before it marked the batch
sent leaves it pending; once the lease expires it is sent again under the same `webhook-id`,
which the receiver can use to drop the repeat (each event also carries its `eventId`).

Only confirmed, enabled subscribers get events; the CONFIRMATION_CODE event goes to any
subscriber. Its code is minted here, when it is sent, and only its hash is stored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Connection, and_, exists, or_, select, true, update
from standardwebhooks.webhooks import Webhook

from learndir import __version__
from learndir.core.changes import CONFIRMATION_CODE
from learndir.core.common import as_utc, utcnow
from learndir.core.webhooks import code_hash
from learndir.db.engine import Database
from learndir.db.schema import events, webhook_deliveries, webhook_subscribers
from learndir.delivery.retry import next_attempt

log = logging.getLogger("learndir.delivery.webhooks")

BATCH_LIMIT = 100
TIMEOUT_SECONDS = 10.0
LEASE = timedelta(seconds=60)
# Batches one claim may send before the subscriber is released (fairness between subscribers).
BATCHES_PER_CLAIM = 10
# Subscribers looked at per call.
SUBSCRIBERS_PER_CALL = 20
CODE_LIFETIME = timedelta(days=1)
USER_AGENT = f"learndir-webhooks/{__version__}"

_s = webhook_subscribers
_d = webhook_deliveries


def _free(now: Any) -> Any:
    return and_(
        or_(_s.c.lease_until.is_(None), _s.c.lease_until < now),
        or_(_s.c.next_attempt_at.is_(None), _s.c.next_attempt_at <= now),
    )


def _deliverable() -> Any:
    """Events for confirmed, enabled subscribers; the confirmation code for any."""
    return or_(
        and_(_s.c.confirmed.is_(true()), _s.c.enabled.is_(true())),
        events.c.type == CONFIRMATION_CODE,
    )


@dataclass(frozen=True)
class _Batch:
    subscriber_id: str
    name: str
    url: str
    secret: str | None
    event_type: str
    delivery_ids: list[int]
    payloads: list[dict[str, Any]]

    @property
    def message_id(self) -> str:
        """Stable across the retries of this batch (see the module's docstring)."""
        return f"msg_{self.delivery_ids[0]}_{self.delivery_ids[-1]}"


def deliver_webhooks(db: Database, worker_id: str, *, client: httpx.Client | None = None) -> int:
    """Sends what is due; returns how many deliveries were settled (sent or given up)."""
    now = utcnow()
    with db.read() as conn:
        candidates = (
            conn.execute(
                select(_s.c.id)
                .where(
                    _free(now),
                    exists(
                        select(_d.c.id)
                        .join(events, events.c.id == _d.c.event_id)
                        .where(
                            _d.c.subscriber_id == _s.c.id, _d.c.status == "pending", _deliverable()
                        )
                    ),
                )
                .order_by(_s.c.next_attempt_at, _s.c.id)
                .limit(SUBSCRIBERS_PER_CALL)
            )
            .scalars()
            .all()
        )
    if not candidates:
        return 0
    own_client = client is None
    http = client or httpx.Client(timeout=TIMEOUT_SECONDS, headers={"User-Agent": USER_AGENT})
    settled = 0
    try:
        for subscriber_id in candidates:
            if not _claim(db, subscriber_id, worker_id):
                continue
            try:
                settled += _drain(db, http, subscriber_id, worker_id)
            finally:
                _release(db, subscriber_id, worker_id)
    finally:
        if own_client:
            http.close()
    return settled


def _claim(db: Database, subscriber_id: str, worker_id: str) -> bool:
    now = utcnow()
    with db.write() as conn:
        claimed = conn.execute(
            update(_s)
            .where(_s.c.id == subscriber_id, _free(now))
            .values(lease_owner=worker_id, lease_until=now + LEASE)
        ).rowcount
    return claimed == 1


def _release(db: Database, subscriber_id: str, worker_id: str) -> None:
    with db.write() as conn:
        conn.execute(
            update(_s)
            .where(_s.c.id == subscriber_id, _s.c.lease_owner == worker_id)
            .values(lease_owner=None, lease_until=None)
        )


def _drain(db: Database, http: httpx.Client, subscriber_id: str, worker_id: str) -> int:
    settled = 0
    for _ in range(BATCHES_PER_CLAIM):
        with db.write() as conn:
            batch = _next_batch(conn, subscriber_id, worker_id)
        if batch is None:
            break
        ok, error = _post(http, batch)
        with db.write() as conn:
            done = _settle(conn, batch, worker_id, ok, error)
        settled += done
        if not ok:
            break
    return settled


def _next_batch(conn: Connection, subscriber_id: str, worker_id: str) -> _Batch | None:
    """The subscriber's next batch; mints the confirmation code when that is what goes."""
    sub = conn.execute(
        select(_s).where(_s.c.id == subscriber_id, _s.c.lease_owner == worker_id)
    ).first()
    if sub is None:
        return None
    query = (
        select(_d.c.id, _d.c.attempts, events.c.type, events.c.payload)
        .join(events, events.c.id == _d.c.event_id)
        .where(_d.c.subscriber_id == subscriber_id, _d.c.status == "pending")
        .order_by(_d.c.id)
        .limit(BATCH_LIMIT)
    )
    if not (sub.confirmed and sub.enabled):
        query = query.where(events.c.type == CONFIRMATION_CODE)
    rows = conn.execute(query).all()
    if not rows:
        return None
    first = rows[0]
    run = []
    for row in rows:
        # A retry sends exactly the batch that failed: its deliveries have been attempted.
        if row.type != first.type or (row.attempts > 0) != (first.attempts > 0):
            break
        run.append(row)
    if first.type == CONFIRMATION_CODE:
        run = run[:1]
    payloads = [json.loads(r.payload) for r in run]
    if first.type == CONFIRMATION_CODE:
        # A new code voids the previous ones; only its hash is kept.
        code = secrets.token_urlsafe(16)
        payloads[0]["code"] = code
        conn.execute(
            update(_s)
            .where(_s.c.id == subscriber_id)
            .values(code_hash=code_hash(code), code_expires_at=utcnow() + CODE_LIFETIME)
        )
    conn.execute(
        update(_s)
        .where(_s.c.id == subscriber_id, _s.c.lease_owner == worker_id)
        .values(lease_until=utcnow() + LEASE)
    )
    return _Batch(
        subscriber_id=subscriber_id,
        name=sub.name,
        url=sub.callback_url,
        secret=sub.secret,
        event_type=first.type,
        delivery_ids=[r.id for r in run],
        payloads=payloads,
    )


def signed_headers(
    body: bytes, secret: str | None, message_id: str, when: datetime
) -> dict[str, str]:
    """The vendor's X-Hub-Signature (hex SHA-256 of body + secret, a plain hash) and the
    Standard Webhooks headers (HMAC-SHA256 keyed with the secret's UTF-8 bytes; a receiver
    passes "whsec_" + base64(secret) to standardwebhooks.Webhook)."""
    headers = {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(when.timestamp())),
    }
    if secret:
        headers["X-Hub-Signature"] = hashlib.sha256(body + secret.encode()).hexdigest()
        headers["webhook-signature"] = Webhook(secret.encode()).sign(
            message_id, when, body.decode()
        )
    return headers


def _post(http: httpx.Client, batch: _Batch) -> tuple[bool, str | None]:
    body = json.dumps(batch.payloads, ensure_ascii=False, separators=(",", ":")).encode()
    headers = signed_headers(body, batch.secret, batch.message_id, utcnow())
    try:
        response = http.post(batch.url, content=body, headers=headers, timeout=TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
        log.warning(
            "webhook attempt: subscriber=%s type=%s events=%d error=%s",
            batch.name,
            batch.event_type,
            len(batch.delivery_ids),
            type(exc).__name__,
        )
        return False, error
    log.info(
        "webhook attempt: subscriber=%s type=%s events=%d status=%d",
        batch.name,
        batch.event_type,
        len(batch.delivery_ids),
        response.status_code,
    )
    if response.status_code == 200:
        return True, None
    return False, f"HTTP {response.status_code}"


def _settle(conn: Connection, batch: _Batch, worker_id: str, ok: bool, error: str | None) -> int:
    now = utcnow()
    ids = batch.delivery_ids
    pending = and_(_d.c.id.in_(ids), _d.c.status == "pending")
    if ok:
        conn.execute(
            update(_d).where(pending).values(status="sent", sent_at=now, attempts=_d.c.attempts + 1)
        )
        conn.execute(
            update(_s)
            .where(_s.c.id == batch.subscriber_id)
            .values(
                attempts=0,
                next_attempt_at=None,
                failing_since=None,
                last_error=None,
                last_delivered_at=now,
            )
        )
        return len(ids)
    sub = conn.execute(
        select(_s.c.attempts, _s.c.failing_since).where(_s.c.id == batch.subscriber_id)
    ).first()
    if sub is None:
        return 0
    attempts = sub.attempts + 1
    failing_since = as_utc(sub.failing_since) if sub.failing_since is not None else now
    retry_at = next_attempt(failing_since, attempts, now)
    if retry_at is None:
        conn.execute(
            update(_d)
            .where(pending)
            .values(status="failed", attempts=_d.c.attempts + 1, last_error=error)
        )
        log.warning(
            "webhook given up after 24 h: subscriber=%s type=%s events=%d (kept as failed)",
            batch.name,
            batch.event_type,
            len(ids),
        )
    else:
        conn.execute(update(_d).where(pending).values(attempts=_d.c.attempts + 1, last_error=error))
    conn.execute(
        update(_s)
        .where(_s.c.id == batch.subscriber_id)
        .values(
            attempts=attempts,
            failing_since=failing_since,
            next_attempt_at=retry_at,
            last_error=error,
        )
    )
    return len(ids) if retry_at is None else 0
