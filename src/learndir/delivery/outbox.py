"""The outbox as a queue: claim due messages, send them, mark the outcome.

A batch of due rows is claimed in one short transaction: on PostgreSQL `FOR UPDATE SKIP
LOCKED` lets several workers claim side by side without waiting for or doubling each other; on
SQLite the claim runs under the writers' lock, one writer at a time. A claim is a lease
(`claimed_until`): rows a crashed worker left in `sending` are claimed again once it runs out.
Set-password tokens are minted in the claiming transaction. Messages are sent outside any
transaction, then the whole batch is marked in one transaction, each row only if this worker
still holds its claim, so a worker that comes back late never overwrites another's result.

The crash window: a provider accepted a message and the worker died before marking it. The row
is claimed again when the lease runs out and sent again, with the same Message-ID (e-mail),
which lets a receiver drop the repeat. See the README ("Delivery").
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, or_, select, update
from sqlalchemy.exc import DBAPIError

from learndir.core.common import as_utc, utcnow
from learndir.core.invitations.tokens import mint_many
from learndir.db.engine import Database
from learndir.db.schema import accounts, outbox, users, webhook_deliveries
from learndir.delivery import retry, sms, smtp
from learndir.delivery.errors import DeliveryError
from learndir.delivery.messages import Invitation, email_message, sms_text
from learndir.settings import Settings

log = logging.getLogger("learndir.delivery")

EMAIL = "email"
SMS = "sms"
STATUSES = ("pending", "sending", "sent", "failed", "revoked")
# Unsent messages of a claim whose lease is this close to its end are given back, not sent:
# past the lease another worker may already have claimed them.
LEASE_MARGIN_SECONDS = 10.0
# Waits between attempts at marking a batch once its messages were sent (None: give up).
MARK_RETRY_SECONDS: tuple[float | None, ...] = (1.0, 2.0, 4.0, 8.0, None)
# How often a worker notes on waiting messages why their channel cannot send them.
NOTE_INTERVAL_SECONDS = 10.0


def mask_recipient(recipient: str) -> str:
    """Enough to tell messages apart in a log, not the whole address or number."""
    if "@" in recipient:
        local, _, domain = recipient.rpartition("@")
        return f"{local[:1]}***@{domain}"
    return f"{recipient[:3]}***{recipient[-2:]}" if len(recipient) > 6 else "***"


def _due(now: datetime, channels: list[str], limit: int) -> list[Any]:
    """The due messages, as two queries that each lead with `status` on the (status,
    next_attempt_at) index, whatever the planner knows of the table: claims a crashed worker's
    lease left behind (`sending`, lease over), then pending messages in the order they fell
    due. (One query with OR makes PostgreSQL scan the whole table when it has no statistics.)"""
    expired = (
        select(outbox.c.id)
        .where(
            outbox.c.status == "sending",
            outbox.c.claimed_until < now,
            outbox.c.channel.in_(channels),
        )
        .limit(limit)
    )
    pending = (
        select(outbox.c.id)
        .where(
            outbox.c.status == "pending",
            outbox.c.next_attempt_at <= now,
            outbox.c.channel.in_(channels),
        )
        .order_by(outbox.c.status, outbox.c.next_attempt_at)
        .limit(limit)
    )
    return [expired, pending]


@dataclass
class _Outcome:
    invitation: Invitation
    first_attempt_at: datetime
    next_attempt_at: datetime
    provider_id: str | None = None
    error: DeliveryError | None = None
    # Not attempted: the lease ran short; the message goes back to the queue untouched.
    released: bool = False


_MARK = (
    update(outbox)
    .where(
        outbox.c.id == bindparam("b_id"),
        outbox.c.claimed_by == bindparam("b_me"),
        outbox.c.status == "sending",
    )
    .values(
        status=bindparam("b_status"),
        attempts=outbox.c.attempts + bindparam("b_add"),
        last_error=bindparam("b_error"),
        next_attempt_at=bindparam("b_next"),
        sent_at=bindparam("b_sent_at"),
        provider_id=bindparam("b_provider_id"),
        claimed_until=None,
    )
)


class OutboxJob:
    """The outbox as one job of the worker: each call claims, sends and marks one batch and
    returns how many messages it handled (0: nothing was due)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.batch_size = max(1, settings.worker_batch_size)
        self.lease = timedelta(seconds=max(1.0, settings.worker_lease_seconds))
        self.lease_margin = min(LEASE_MARGIN_SECONDS, self.lease.total_seconds() / 3)
        self.smtp_config = smtp.SmtpConfig.from_settings(settings)
        self.sms_config = sms.SmsConfig.from_settings(settings)
        self._sms = sms.SmsGateway(self.sms_config) if self.sms_config else None
        self.senders = max(1, settings.worker_senders)
        self._senders = ThreadPoolExecutor(
            max_workers=self.senders, thread_name_prefix="learndir-sender"
        )
        self._local = threading.local()
        self._connections: list[smtp.SmtpConnection] = []
        self._connections_lock = threading.Lock()
        self._noted_at = float("-inf")

    @property
    def channels(self) -> list[str]:
        return [
            channel
            for channel, config in ((EMAIL, self.smtp_config), (SMS, self.sms_config))
            if config is not None
        ]

    def __call__(self, db: Database, worker_id: str) -> int:
        started, now = time.monotonic(), utcnow()
        self._note_unconfigured(db, now)
        channels = self.channels
        if not channels or not self._anything_due(db, now, channels):
            return 0
        claimed = self._claim(db, worker_id, now, channels)
        if not claimed:
            return 0
        # The lease counts from `now`, before the claim waited for any lock.
        deadline = started + self.lease.total_seconds() - self.lease_margin
        sending = time.monotonic()
        outcomes = self._send_all(claimed, deadline)
        marking = time.monotonic()
        self._mark(db, worker_id, outcomes)
        log.info(
            "delivery batch: messages=%d sent=%d claim_ms=%.0f send_ms=%.0f mark_ms=%.0f",
            len(outcomes),
            sum(1 for o in outcomes if o.error is None and not o.released),
            (sending - started) * 1000,
            (marking - sending) * 1000,
            (time.monotonic() - marking) * 1000,
        )
        return len(claimed)

    # ---- claim -----------------------------------------------------------------------------

    def _anything_due(self, db: Database, now: datetime, channels: list[str]) -> bool:
        """A read first: an idle poll on SQLite must not take the writers' lock."""
        with db.read() as conn:
            return any(conn.execute(query).first() is not None for query in _due(now, channels, 1))

    def _claim(
        self, db: Database, worker_id: str, now: datetime, channels: list[str]
    ) -> list[tuple[Invitation, datetime, datetime]]:
        with db.write() as conn:
            ids: list[str] = []
            for query in _due(now, channels, self.batch_size):
                wanted = self.batch_size - len(ids)
                if wanted > 0:
                    locked = query.limit(wanted).with_for_update(skip_locked=True)
                    ids.extend(conn.execute(locked).scalars())
            if not ids:
                return []
            conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(ids))
                .values(
                    status="sending",
                    claimed_by=worker_id,
                    claimed_until=now + self.lease,
                    first_attempt_at=func.coalesce(outbox.c.first_attempt_at, now),
                )
            )
            rows = conn.execute(
                select(
                    outbox.c.id,
                    outbox.c.channel,
                    outbox.c.recipient,
                    outbox.c.message,
                    outbox.c.password_link,
                    outbox.c.attempts,
                    outbox.c.first_attempt_at,
                    outbox.c.next_attempt_at,
                    users.c.login,
                    accounts.c.name.label("account_name"),
                    accounts.c.invitation_lifetime_days,
                )
                .join(users, users.c.id == outbox.c.user_id)
                .join(accounts, accounts.c.id == outbox.c.account_id)
                .where(outbox.c.id.in_(ids))
            ).all()
            tokens = mint_many(
                conn, {r.id: r.invitation_lifetime_days for r in rows if r.password_link}, now
            )
            return [self._invitation(row, tokens.get(row.id), now) for row in rows]

    def _invitation(
        self, row: Any, token: str | None, now: datetime
    ) -> tuple[Invitation, datetime, datetime]:
        link = expires = None
        if token is not None:
            link = f"{self.settings.public_url.rstrip('/')}/invite/{token}"
            expires = now + timedelta(days=row.invitation_lifetime_days)
        invitation = Invitation(
            outbox_id=row.id,
            channel=row.channel,
            recipient=row.recipient,
            text=row.message,
            login=row.login,
            account_name=row.account_name,
            attempt=row.attempts + 1,
            link=link,
            link_expires_at=expires,
        )
        return invitation, as_utc(row.first_attempt_at), as_utc(row.next_attempt_at)

    # ---- send ------------------------------------------------------------------------------

    def _send_all(
        self, claimed: list[tuple[Invitation, datetime, datetime]], deadline: float
    ) -> list[_Outcome]:
        outcomes = [_Outcome(inv, first, nxt) for inv, first, nxt in claimed]
        chunks = [outcomes[i :: self.senders] for i in range(self.senders)]
        for _ in self._senders.map(lambda chunk: self._send_chunk(chunk, deadline), chunks):
            pass
        return outcomes

    def _send_chunk(self, chunk: list[_Outcome], deadline: float) -> None:
        """Sends one sender's share in order on its own SMTP connection. Once connecting fails,
        the rest of the share fails with the same reason at once (no timeout per message)."""
        broken: DeliveryError | None = None
        for outcome in chunk:
            if time.monotonic() > deadline:
                outcome.released = True
                continue
            invitation = outcome.invitation
            if broken is not None and invitation.channel == EMAIL:
                outcome.error = broken
                continue
            try:
                outcome.provider_id = self._send(invitation)
            except DeliveryError as exc:
                outcome.error = exc
                if isinstance(exc, smtp.ConnectError):
                    broken = exc
            except Exception as exc:  # a bug must not leave the batch unmarked
                log.exception("unexpected error sending outbox id=%s", invitation.outbox_id)
                outcome.error = DeliveryError(f"internal error: {type(exc).__name__}")

    def _send(self, invitation: Invitation) -> str:
        if invitation.channel == SMS:
            assert self._sms is not None
            return self._sms.send(invitation.recipient, sms_text(invitation))
        assert self.smtp_config is not None
        message = email_message(invitation, self.smtp_config.mail_from, utcnow())
        return self._smtp_connection().send(message)

    def _smtp_connection(self) -> smtp.SmtpConnection:
        connection: smtp.SmtpConnection | None = getattr(self._local, "smtp", None)
        if connection is None:
            assert self.smtp_config is not None
            connection = smtp.SmtpConnection(self.smtp_config)
            self._local.smtp = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    # ---- mark ------------------------------------------------------------------------------

    def _mark(self, db: Database, worker_id: str, outcomes: list[_Outcome]) -> None:
        """One transaction for the batch. A database that is briefly away is waited for (a
        mark that never lands means the batch is sent again when the lease runs out)."""
        now = utcnow()
        params = [self._mark_params(o, worker_id, now) for o in outcomes]
        for wait in MARK_RETRY_SECONDS:
            try:
                with db.write() as conn:
                    conn.execute(_MARK, params)
                return
            except DBAPIError:
                if wait is None:
                    raise
                log.warning("marking a delivered batch failed; trying again in %.0f s", wait)
                time.sleep(wait)

    def _mark_params(self, outcome: _Outcome, worker_id: str, now: datetime) -> dict[str, Any]:
        invitation = outcome.invitation
        base: dict[str, Any] = {
            "b_id": invitation.outbox_id,
            "b_me": worker_id,
            "b_add": 1,
            "b_error": None,
            "b_next": outcome.next_attempt_at,
            "b_sent_at": None,
            "b_provider_id": None,
        }
        attempt = (
            f"id={invitation.outbox_id} channel={invitation.channel} "
            f"to={mask_recipient(invitation.recipient)} attempt={invitation.attempt}"
        )
        if outcome.released:
            log.info("delivery postponed (lease ran short): %s", attempt)
            return {**base, "b_status": "pending", "b_add": 0, "b_next": now}
        if outcome.error is None:
            log.info("delivery sent: %s provider_id=%s", attempt, outcome.provider_id)
            return {
                **base,
                "b_status": "sent",
                "b_sent_at": now,
                "b_provider_id": outcome.provider_id,
            }
        error = outcome.error.reason[:1000]
        retry_at = None
        if not outcome.error.permanent:
            retry_at = retry.next_attempt(outcome.first_attempt_at, invitation.attempt, now)
        if retry_at is None:
            why = "refused for good" if outcome.error.permanent else "retries exhausted (24 h)"
            log.warning("delivery failed, %s: %s error=%s", why, attempt, error)
            return {**base, "b_status": "failed", "b_error": error}
        log.info(
            "delivery attempt failed, retrying at %s: %s error=%s",
            retry_at.isoformat(timespec="seconds"),
            attempt,
            error,
        )
        return {**base, "b_status": "pending", "b_error": error, "b_next": retry_at}

    # ---- channels without settings -----------------------------------------------------------

    def _note_unconfigured(self, db: Database, now: datetime) -> None:
        """Messages of a channel without settings wait, without using up attempts, and say
        why; they are sent as soon as a worker with the settings runs."""
        missing = [
            (channel, reason)
            for channel, config, reason in (
                (EMAIL, self.smtp_config, smtp.NOT_CONFIGURED),
                (SMS, self.sms_config, sms.NOT_CONFIGURED),
            )
            if config is None
        ]
        if not missing or time.monotonic() - self._noted_at < NOTE_INTERVAL_SECONDS:
            return
        self._noted_at = time.monotonic()
        for channel, reason in missing:
            waiting = and_(
                outbox.c.status == "pending",
                outbox.c.next_attempt_at <= now,
                outbox.c.channel == channel,
                or_(outbox.c.last_error.is_(None), outbox.c.last_error != reason),
            )
            with db.read() as conn:
                if conn.execute(select(outbox.c.id).where(waiting).limit(1)).first() is None:
                    continue
            with db.write() as conn:
                conn.execute(update(outbox).where(waiting).values(last_error=reason))

    def close(self) -> None:
        self._senders.shutdown(wait=True)
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        if self._sms is not None:
            self._sms.close()


# ---- administration (CLI, /health) ---------------------------------------------------------


@dataclass(frozen=True)
class OutboxEntry:
    id: str
    channel: str
    recipient: str
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime


def list_messages(db: Database, status: str | None = None, limit: int = 1000) -> list[OutboxEntry]:
    """The newest messages first; never a token."""
    query = select(
        outbox.c.id,
        outbox.c.channel,
        outbox.c.recipient,
        outbox.c.status,
        outbox.c.attempts,
        outbox.c.last_error,
        outbox.c.created_at,
        outbox.c.sent_at,
        outbox.c.next_attempt_at,
    )
    if status is not None:
        query = query.where(outbox.c.status == status)
    query = query.order_by(outbox.c.created_at.desc(), outbox.c.id).limit(limit)
    with db.read() as conn:
        return [
            OutboxEntry(
                id=r.id,
                channel=r.channel,
                recipient=r.recipient,
                status=r.status,
                attempts=r.attempts,
                last_error=r.last_error,
                created_at=as_utc(r.created_at),
                sent_at=as_utc(r.sent_at) if r.sent_at else None,
                next_attempt_at=as_utc(r.next_attempt_at),
            )
            for r in conn.execute(query)
        ]


class RetryRefused(Exception):
    pass


def retry_message(db: Database, outbox_id: str) -> None:
    """Queues a failed or waiting message for sending now, with a fresh day of retries
    (attempts start again from 0; the last error stays until the next attempt)."""
    with db.write() as conn:
        row = conn.execute(
            select(outbox.c.status).where(outbox.c.id == outbox_id).with_for_update()
        ).first()
        if row is None:
            raise LookupError(outbox_id)
        if row.status not in ("failed", "pending"):
            raise RetryRefused(
                f"message {outbox_id} is {row.status}; only failed or pending ones can be retried"
            )
        conn.execute(
            update(outbox)
            .where(outbox.c.id == outbox_id, outbox.c.status.in_(("failed", "pending")))
            .values(
                status="pending",
                attempts=0,
                first_attempt_at=None,
                next_attempt_at=utcnow(),
                claimed_until=None,
            )
        )


@dataclass(frozen=True)
class Backlog:
    messages: int
    oldest_pending_seconds: float | None


def backlog(conn: Connection, now: datetime | None = None) -> Backlog:
    """Pending and sending messages, and how long the oldest pending one has waited; both read
    the (status, next_attempt_at) index's range of unsent rows."""
    return _backlog(conn, outbox.c.status, outbox.c.created_at, now)


def webhook_backlog(conn: Connection, now: datetime | None = None) -> Backlog:
    """Webhook deliveries not yet made, and how long the oldest has waited."""
    return _backlog(conn, webhook_deliveries.c.status, webhook_deliveries.c.created_at, now)


def _backlog(conn: Connection, status: Any, created_at: Any, now: datetime | None) -> Backlog:
    now = now or utcnow()
    count = conn.execute(
        select(func.count()).where(status.in_(("pending", "sending")))
    ).scalar_one()
    oldest = conn.execute(select(func.min(created_at)).where(status == "pending")).scalar_one()
    age = None if oldest is None else max(0.0, (now - as_utc(oldest)).total_seconds())
    return Backlog(int(count), age)
