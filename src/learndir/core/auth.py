"""Establishing who calls: API keys and the 30-minute tokens they buy, and account credentials.

Interfaces only turn their wire credentials into one of these calls; the resulting Actor carries
the rights that the core services check.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Select,
    Table,
    and_,
    bindparam,
    cast,
    delete,
    insert,
    literal,
    null,
    or_,
    select,
    union_all,
    update,
)

from learndir.core import departments as departments_repo
from learndir.core import signin
from learndir.core.actor import AccountInfo, Actor, Grant
from learndir.core.changes import Change, Operation, TargetKind, account_info, iso_utc, record
from learndir.core.common import as_utc, fold, utcnow
from learndir.core.errors import DomainError, ErrorCode, invalid
from learndir.core.origin import set_credential
from learndir.core.passwords import dummy_hash, verify_password
from learndir.core.roles import Role, RoleKind, role_from_values
from learndir.db.engine import Database
from learndir.db.rows import fetch_rows
from learndir.db.schema import (
    ID,
    access_tokens,
    account_seats,
    accounts,
    api_keys,
    departments,
    roles,
    user_role_departments,
    user_roles,
    users,
)

ACTIVE = 1
DEFAULT_TOKEN_LIFETIME = 1800
# A token's (and its key's) last use is written at most this often: authentication runs on
# every request and must not write on every one.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def account_url_key(url: str) -> str:
    """Accounts are matched on host and path, ignoring scheme, case and a trailing slash."""
    key = url.strip().lower()
    for scheme in ("https://", "http://"):
        if key.startswith(scheme):
            key = key[len(scheme) :]
            break
    return key.rstrip("/")


def unauthenticated(reason: str) -> DomainError:
    return DomainError(ErrorCode.UNAUTHENTICATED, reason)


# What an unknown client id's secret is compared with, so that it costs what a wrong one does.
_DUMMY_DIGEST = sha256_hex(secrets.token_urlsafe(32))


@dataclass(frozen=True)
class ApiKey:
    client_id: str
    client_secret: str


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int


_ACTOR_COLUMNS = (
    users.c.id,
    users.c.login,
    users.c.status,
    accounts.c.id.label("account_id"),
    accounts.c.url,
    accounts.c.name,
    account_seats.c.seat_limit,
    accounts.c.password_min_length,
    accounts.c.settings_version,
    # One row per role held and department it manages: the user, the account and the grants in
    # one round trip.
    roles.c.id.label("role_id"),
    roles.c.kind.label("role_kind"),
    roles.c.name.label("role_name"),
    roles.c.permissions.label("role_permissions"),
    departments.c.path.label("managed_path"),
)


def _with_grants(query: Select[Any]) -> Select[Any]:
    return (
        query.join(accounts, accounts.c.id == users.c.account_id)
        .join(account_seats, account_seats.c.account_id == accounts.c.id)
        .outerjoin(user_roles, user_roles.c.user_id == users.c.id)
        .outerjoin(roles, roles.c.id == user_roles.c.role_id)
        .outerjoin(
            user_role_departments,
            and_(
                user_role_departments.c.user_id == user_roles.c.user_id,
                user_role_departments.c.role_id == user_roles.c.role_id,
            ),
        )
        .outerjoin(departments, departments.c.id == user_role_departments.c.department_id)
    )


# Built once and reused: authentication runs on every request.
_SELECT_ACTOR = _with_grants(select(*_ACTOR_COLUMNS)).where(users.c.id == bindparam("user_id"))
_SELECT_TOKEN_ACTOR = _with_grants(
    select(
        access_tokens.c.expires_at,
        access_tokens.c.client_id,
        access_tokens.c.last_used_at.label("token_last_used_at"),
        *_ACTOR_COLUMNS,
    )
    .select_from(access_tokens)
    .join(users, users.c.id == access_tokens.c.user_id)
).where(access_tokens.c.token_hash == bindparam("token_hash"))


# addUser's: the departments it names too (core.departments.READ_AHEAD_COLUMN).
_SELECT_TOKEN_ACTOR_READING_AHEAD = _SELECT_TOKEN_ACTOR.add_columns(
    departments_repo.READ_AHEAD_COLUMN
)


def _actor(rows: Sequence[Any]) -> Actor | None:
    """The Actor for the rows of _ACTOR_COLUMNS (one per grant), or None when there are none
    or the user is not active."""
    if not rows or rows[0].status != ACTIVE:
        return None
    row = rows[0]
    held: dict[str, Role] = {}
    paths: dict[str, list[str]] = {}
    for grant in rows:
        if grant.role_id is None:
            continue
        if grant.role_id not in held:
            held[grant.role_id] = role_from_values(
                grant.role_id, grant.role_kind, grant.role_name, grant.role_permissions
            )
        if grant.managed_path is not None:
            paths.setdefault(grant.role_id, []).append(grant.managed_path)
    grants = tuple(
        Grant(role=role, department_paths=tuple(paths.get(role_id, ())))
        for role_id, role in held.items()
    )
    account = AccountInfo(
        id=row.account_id,
        url=row.url,
        name=row.name,
        seat_limit=row.seat_limit,
        password_min_length=row.password_min_length,
        settings_version=row.settings_version,
    )
    return Actor(user_id=row.id, login=row.login, account=account, grants=grants)


def load_actor(conn: Connection, user_id: str) -> Actor | None:
    """The user as an Actor, or None when the user is gone or not active."""
    return _actor(conn.execute(_SELECT_ACTOR, {"user_id": user_id}).all())


def key_view(
    client_id: str, user_id: str, created_at: datetime, revoked_at: datetime | None
) -> dict[str, Any]:
    """A key as the audit trail shows it: never its secret or the secret's hash."""
    return {
        "clientId": client_id,
        "userId": user_id,
        "createdAt": iso_utc(created_at),
        "revokedAt": iso_utc(revoked_at) if revoked_at is not None else None,
    }


def create_api_key_for_user(
    conn: Connection, account: AccountInfo, user_id: str, actor_id: str | None
) -> ApiKey:
    """A new key of `user_id`, recorded in the audit trail; only the secret's hash is kept."""
    key = ApiKey(client_id=secrets.token_hex(16), client_secret=secrets.token_urlsafe(32))
    now = utcnow()
    conn.execute(
        insert(api_keys).values(
            client_id=key.client_id,
            secret_hash=sha256_hex(key.client_secret),
            user_id=user_id,
            created_at=now,
        )
    )
    after = key_view(key.client_id, user_id, now, None)
    record(
        conn,
        account,
        [
            Change(
                Operation.API_KEY_CREATED, TargetKind.API_KEY, key.client_id, actor_id, after=after
            )
        ],
    )
    return key


def _candidate(rank: int, key_column: Any) -> Select[Any]:
    return select(
        users.c.account_id, users.c.id, users.c.password_hash, literal(rank).label("rank")
    ).where(key_column == bindparam("key"))


# A sign-in's lookup is one statement whatever it finds (the account, a user by login, a user by
# e-mail, nothing), so that its time tells nothing; users are found by key alone (see
# core.users.keys), and the account picked from the few rows found.
_SELECT_SIGNIN = union_all(
    select(
        accounts.c.id, cast(null(), ID), cast(null(), users.c.password_hash.type), literal(0)
    ).where(accounts.c.url_key == bindparam("url_key")),
    _candidate(1, users.c.login_key),
    _candidate(2, users.c.email_key),
)


def _signin_lookup(
    conn: Connection, account_url: str, login_or_email: str
) -> tuple[str | None, str | None, str | None]:
    """(account id, user id, password hash) for a sign-in; None where unknown or unset."""
    rows = conn.execute(
        _SELECT_SIGNIN, {"url_key": account_url_key(account_url), "key": fold(login_or_email)}
    ).all()
    account_id = next((row[0] for row in rows if row[3] == 0), None)
    # A login match wins over an e-mail match.
    found = sorted((row for row in rows if row[3] > 0 and row[0] == account_id), key=lambda r: r[3])
    if account_id is None or not found:
        return account_id, None, None
    return account_id, found[0][1], found[0][2]


# The account, and its owner (the holder of its owner role).
_SELECT_OWNER = select(
    accounts.c.id,
    select(user_roles.c.user_id)
    .join(roles, roles.c.id == user_roles.c.role_id)
    .where(roles.c.account_id == accounts.c.id, roles.c.kind == RoleKind.OWNER.value)
    .limit(1)
    .scalar_subquery()
    .label("user_id"),
).where(accounts.c.url_key == bindparam("url_key"))


def actor_for_login(db: Database, account_url: str, login: str | None) -> Actor:
    """The acting user of a command run where the database is (the command line): the user
    with this login or e-mail (case-insensitive) in the account at `account_url`, or the
    account's owner without one. No password: whoever runs the command reaches the database.
    Not found naming the unknown account or user; Unauthorized when the user is not active."""
    with db.read() as conn:
        if login is None:
            row = conn.execute(_SELECT_OWNER, {"url_key": account_url_key(account_url)}).first()
            account_id, user_id = (row.id, row.user_id) if row is not None else (None, None)
        else:
            account_id, user_id, _ = _signin_lookup(conn, account_url, login)
        if account_id is None:
            raise DomainError(
                ErrorCode.NOT_FOUND,
                f"no account {account_url!r}",
                parameter="accountUrl",
                message="Unknown account",
            )
        if user_id is None:
            raise DomainError(
                ErrorCode.NOT_FOUND,
                f"no user {login!r} in account {account_url!r}",
                parameter="login",
                message="Unknown user",
            )
        actor = load_actor(conn, user_id)
    if actor is None:
        raise unauthenticated(f"user {login or 'owner'!r} of {account_url!r} is not active")
    return actor


def create_api_key(db: Database, account_url: str, login: str) -> ApiKey:
    with db.write() as conn:
        account_id, user_id, _ = _signin_lookup(conn, account_url, login)
        if account_id is None or user_id is None:
            raise invalid("login", f"no user {login!r} in account {account_url!r}")
        return create_api_key_for_user(conn, account_info(conn, account_id), user_id, None)


def issue_token(
    db: Database,
    client_id: str | None,
    client_secret: str | None,
    grant_type: str | None,
    lifetime: int = DEFAULT_TOKEN_LIFETIME,
) -> IssuedToken:
    if not client_id:
        raise invalid("client_id", "is required")
    if not client_secret:
        raise invalid("client_secret", "is required")
    if grant_type != "client_credentials":
        raise invalid("grant_type", "must be client_credentials")
    token = secrets.token_urlsafe(32)
    now = utcnow()
    # Failures are counted per client id and address (see core.signin).
    with signin.attempt(db, signin.client_subject(client_id)) as attempt, db.write() as conn:
        # Locked, so that a revocation either waits for this token and deletes it, or is seen.
        row = conn.execute(
            select(api_keys.c.secret_hash, api_keys.c.user_id, api_keys.c.revoked_at)
            .where(api_keys.c.client_id == client_id)
            .with_for_update(key_share=True)
        ).first()
        # An unknown client id is compared with a dummy digest: it costs what a wrong secret
        # costs. A revoked key gets the same answer as an unknown one.
        stored = row.secret_hash if row is not None else _DUMMY_DIGEST
        if (
            not hmac.compare_digest(stored, sha256_hex(client_secret))
            or row is None
            or row.revoked_at is not None
        ):
            raise attempt.wrong(unauthenticated("unknown client_id or wrong client_secret"))
        if load_actor(conn, row.user_id) is None:
            raise unauthenticated("the API key's user is not active")
        conn.execute(
            delete(access_tokens).where(
                access_tokens.c.user_id == row.user_id, access_tokens.c.expires_at < now
            )
        )
        conn.execute(
            insert(access_tokens).values(
                token_hash=sha256_hex(token),
                user_id=row.user_id,
                expires_at=now + timedelta(seconds=lifetime),
                client_id=client_id,
                created_at=now,
            )
        )
        conn.execute(
            update(api_keys).where(api_keys.c.client_id == client_id).values(last_used_at=now)
        )
    return IssuedToken(access_token=token, expires_in=lifetime)


def authenticate_token(
    db: Database, token: str | None, *, departments: Iterable[str | None] = ()
) -> Actor:
    """The token's user as an Actor. `departments`: ids the request will look up next
    (addUser's), read by the same statement where that saves a round trip (see
    core.departments.read_ahead_ids); what is read is kept only once the caller is known."""
    if not token or not token.strip():
        raise unauthenticated("no access token given")
    token_hash = sha256_hex(token.strip())
    with db.read() as conn:
        # On every request's path: straight on the driver (see db.rows).
        ahead = departments_repo.read_ahead_ids(conn, departments)
        if ahead:
            rows = fetch_rows(
                conn,
                _SELECT_TOKEN_ACTOR_READING_AHEAD,
                {"token_hash": token_hash, "ahead_ids": ahead},
            )
        else:
            rows = fetch_rows(conn, _SELECT_TOKEN_ACTOR, {"token_hash": token_hash})
        if not rows:
            raise unauthenticated("unknown access token")
        now = utcnow()
        if as_utc(rows[0].expires_at) <= now:
            raise unauthenticated("the access token has expired; request a new one")
        actor = _actor(rows)
        if actor is None:
            raise unauthenticated("the token's user is not active")
        if ahead:
            departments_repo.remember_read_ahead(conn, actor.account.id, ahead, rows[0].read_ahead)
    client_id = rows[0].client_id
    last_used = rows[0].token_last_used_at
    if last_used is None or as_utc(last_used) <= now - LAST_USED_RESOLUTION:
        _touch(db, token_hash, client_id, now)
    credential = f"token:{token_hash[:16]}"
    set_credential(f"key:{client_id} {credential}" if client_id else credential, actor.login)
    return actor


def _touch(db: Database, token_hash: str, client_id: str | None, now: datetime) -> None:
    """Writes the last use of a token and of its key, skipping a row someone else has locked
    (a revocation, another request's write of the same minute): it never waits for a lock.
    On PostgreSQL in a short transaction of its own, so no lock outlives this call and a
    request's own transaction never holds one; on SQLite, whose writers take turns, in the
    request's transaction when it writes."""
    stale = now - LAST_USED_RESOLUTION
    with db.write() if db.is_sqlite else db.write_apart() as conn:
        if client_id is not None:
            touch_last_used(conn, api_keys, api_keys.c.client_id, client_id, stale, now)
        touch_last_used(conn, access_tokens, access_tokens.c.token_hash, token_hash, stale, now)


def touch_last_used(
    conn: Connection, table: Table, key: Column[str], value: str, stale: datetime, now: datetime
) -> None:
    last_used = table.c.last_used_at
    free = (
        select(key)
        .where(key == value, or_(last_used.is_(None), last_used <= stale))
        .with_for_update(skip_locked=True, key_share=True)
    )
    conn.execute(update(table).where(key.in_(free.scalar_subquery())).values(last_used_at=now))


class _VerifiedPasswords:
    """Remembers recent successful Argon2 verifications so a script that sends its credentials
    with every call does not pay a full hash each time. Keys bind the stored hash, so a changed
    password invalidates them; they are HMACs under a per-process key."""

    def __init__(self, ttl: float = 300.0, size: int = 10_000) -> None:
        self._key = secrets.token_bytes(32)
        self._ttl = ttl
        self._size = size
        self._seen: dict[bytes, float] = {}
        self._lock = threading.Lock()

    def _digest(self, password_hash: str, password: str) -> bytes:
        return hmac.new(self._key, f"{password_hash}\0{password}".encode(), "sha256").digest()

    def verify(self, password_hash: str, password: str) -> bool:
        digest = self._digest(password_hash, password)
        now = time.monotonic()
        with self._lock:
            expiry = self._seen.get(digest)
        if expiry is not None and expiry > now:
            return True
        if not verify_password(password_hash, password):
            return False
        with self._lock:
            if len(self._seen) >= self._size:
                self._seen.clear()
            self._seen[digest] = now + self._ttl
        return True


_verified = _VerifiedPasswords()


def authenticate_credentials(
    db: Database, account_url: str | None, login_or_email: str | None, password: str | None
) -> Actor:
    """The user whose credentials these are. Failures are counted and locked out per login and
    address (see core.signin); an unknown account or login, a user without a password and a
    wrong password cost the same Argon2 verification and get the same answer."""
    if not account_url or not login_or_email or not password:
        raise unauthenticated("account URL, login or e-mail, and password are all required")
    subject = signin.login_subject(account_url_key(account_url), login_or_email)
    with signin.attempt(db, subject) as attempt:
        with db.read() as conn:
            attempt.account_id, user_id, stored = _signin_lookup(conn, account_url, login_or_email)
        # The hash is checked outside any transaction: it takes tens of milliseconds.
        verified = _verified.verify(stored or dummy_hash(), password)
        if user_id is None or not stored or not verified:
            raise attempt.wrong(unauthenticated("wrong account URL, login or password"))
    with db.read() as conn:
        actor = load_actor(conn, user_id)
    if actor is None:
        raise unauthenticated("the user is not active")
    set_credential("password", actor.login)
    return actor
