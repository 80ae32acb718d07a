"""The admin console's sessions.

Signing in goes through `auth.authenticate_credentials`, so the console's sign-in is throttled
and timed exactly as the APIs' are. A session is 256 random bits in a cookie; the database
keeps only their SHA-256, so a copy of the database opens no session. Each request reads the
session's row and loads the user as an Actor afresh: a user deactivated, deleted or stripped of
a role loses the console at their next request, on every node.

A form's CSRF token is an HMAC of the session's secret: it needs no storage, is the same in
every server process, and nobody without the cookie can compute it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, or_, select, update

from learndir.core.actor import Actor
from learndir.core.auth import authenticate_credentials, load_actor, sha256_hex, unauthenticated
from learndir.core.common import as_utc, utcnow
from learndir.core.origin import set_credential
from learndir.db.engine import Database
from learndir.db.schema import console_sessions

# last_seen_at is written at most this often: a busy session costs no write per request.
SEEN_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class SessionPolicy:
    idle: timedelta = timedelta(minutes=30)
    lifetime: timedelta = timedelta(hours=12)

    @classmethod
    def of(cls, idle_minutes: float, max_hours: float) -> SessionPolicy:
        return cls(timedelta(minutes=idle_minutes), timedelta(hours=max_hours))


@dataclass(frozen=True)
class ConsoleSession:
    actor: Actor
    # The session's row id (the SHA-256 of the cookie's value).
    session_id: str
    # What every form of this session carries.
    csrf_token: str
    created_at: datetime


def csrf_token_of(raw: str) -> str:
    return hmac.new(raw.encode(), b"learndir console csrf", hashlib.sha256).hexdigest()


def same_token(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def sign_in(
    db: Database, account_url: str | None, login_or_email: str | None, password: str | None
) -> tuple[str, ConsoleSession]:
    """The cookie value of a new session for these credentials, and the session. Wrong
    credentials, a locked login and an inactive user are refused as over the APIs."""
    actor = authenticate_credentials(db, account_url, login_or_email, password)
    raw = secrets.token_urlsafe(32)
    now = utcnow()
    session_id = sha256_hex(raw)
    with db.write() as conn:
        conn.execute(
            insert(console_sessions).values(
                id=session_id,
                account_id=actor.account_id,
                user_id=actor.user_id,
                created_at=now,
                last_seen_at=now,
            )
        )
    return raw, ConsoleSession(actor, session_id, csrf_token_of(raw), now)


def open_session(
    db: Database, raw: str | None, policy: SessionPolicy, now: datetime | None = None
) -> ConsoleSession:
    """The session this cookie value opens, its user loaded afresh; Unauthorized when there is
    none, it has expired, or its user is no longer active. (`now`: the tests' clock.)"""
    if not raw:
        raise unauthenticated("not signed in")
    session_id = sha256_hex(raw)
    now = now or utcnow()
    with db.read() as conn:
        row = conn.execute(
            select(
                console_sessions.c.user_id,
                console_sessions.c.created_at,
                console_sessions.c.last_seen_at,
            ).where(console_sessions.c.id == session_id)
        ).first()
        if row is None:
            raise unauthenticated("the session has ended; sign in again")
        created, seen = as_utc(row.created_at), as_utc(row.last_seen_at)
        if seen + policy.idle <= now or created + policy.lifetime <= now:
            expired = True
            actor = None
        else:
            expired = False
            actor = load_actor(conn, row.user_id)
    if expired:
        end_session(db, raw)
        raise unauthenticated("the session has expired; sign in again")
    if actor is None:
        end_session(db, raw)
        raise unauthenticated("the user is not active")
    # Written at most once a minute, or twice per idle period when that is shorter: a session
    # in use never expires between two writes.
    if seen <= now - min(SEEN_RESOLUTION, policy.idle / 2):
        with db.write() as conn:
            conn.execute(
                update(console_sessions)
                .where(console_sessions.c.id == session_id)
                .values(last_seen_at=now)
            )
    set_credential(_credential(session_id), actor.login)
    return ConsoleSession(actor, session_id, csrf_token_of(raw), created)


def _credential(session_id: str) -> str:
    """How the audit trail names a console session: never the cookie, a prefix of its hash."""
    return f"console:{session_id[:16]}"


def confirm_password(db: Database, session: ConsoleSession, password: str | None) -> None:
    """Checks the signed-in user's own password again (before a password change), throttled
    like any sign-in; the changes that follow are still the session's in the audit trail."""
    actor = session.actor
    try:
        authenticate_credentials(db, actor.account.url, actor.login, password)
    finally:
        set_credential(_credential(session.session_id), actor.login)


def end_session(db: Database, raw: str | None) -> None:
    if not raw:
        return
    with db.write() as conn:
        conn.execute(delete(console_sessions).where(console_sessions.c.id == sha256_hex(raw)))


def end_sessions_of(db: Database, user_id: str, keep: str | None = None) -> int:
    """Signs a user out everywhere but the session `keep` (after a password change, say)."""
    condition = console_sessions.c.user_id == user_id
    if keep is not None:
        condition = condition & (console_sessions.c.id != keep)
    with db.write() as conn:
        return conn.execute(delete(console_sessions).where(condition)).rowcount


def purge_expired(db: Database, policy: SessionPolicy, now: datetime | None = None) -> int:
    now = now or utcnow()
    with db.write() as conn:
        return conn.execute(
            delete(console_sessions).where(
                or_(
                    console_sessions.c.last_seen_at <= now - policy.idle,
                    console_sessions.c.created_at <= now - policy.lifetime,
                )
            )
        ).rowcount
