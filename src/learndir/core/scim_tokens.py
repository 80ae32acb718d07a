"""Bearer tokens for SCIM provisioning (issue 12): long-lived, revocable, one account each,
acting as the user they were made for, so that user's scope applies (a department
administrator's token sees and changes only its departments).

A token is `scim_` and 256 random bits; only its SHA-256 is stored and it is shown once, when
made. Tokens are made, listed and revoked from the command line (`learndir scim-token`), which
reaches the database and acts for no user; the audit trail records it. Every request reads the
token's row, so a revoked token is refused at once on every node.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from learndir.core.actor import Actor
from learndir.core.auth import (
    LAST_USED_RESOLUTION,
    account_url_key,
    actor_for_login,
    load_actor,
    sha256_hex,
    touch_last_used,
    unauthenticated,
)
from learndir.core.changes import Change, Operation, TargetKind, account_info, iso_utc, record
from learndir.core.common import as_utc, as_uuid_text, new_id, utcnow
from learndir.core.errors import denied, not_found
from learndir.core.origin import set_credential
from learndir.db.engine import Database
from learndir.db.schema import accounts, scim_tokens, users

TOKEN_PREFIX = "scim_"


@dataclass(frozen=True)
class CreatedScimToken:
    token_id: str
    token: str
    user_id: str
    invite: bool = False


@dataclass(frozen=True)
class ScimCaller:
    """Who a SCIM request acts as, and whether users its token creates are invited."""

    actor: Actor
    invite: bool


@dataclass(frozen=True)
class ScimTokenInfo:
    """A token as it is listed: never the token or its hash."""

    token_id: str
    account_url: str
    user_id: str
    login: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    invite: bool = False


def _view(token_id: str, user_id: str, created_at: datetime, invite: bool) -> dict[str, Any]:
    """What the audit trail shows of a token."""
    return {
        "tokenId": token_id,
        "userId": user_id,
        "createdAt": iso_utc(created_at),
        "invite": invite,
    }


def create_scim_token(
    db: Database, account_url: str, login: str | None, *, invite: bool = False
) -> CreatedScimToken:
    """A token acting as `login` (a login or e-mail; the owner without one), who must be
    allowed to add or change users somewhere. With `invite`, every user the token creates
    who has an e-mail address is sent the account's invitation (its default text) to set a
    password, as addUser's sendLoginEmail does."""
    actor = actor_for_login(db, account_url, login)
    if not actor.manages_users:
        raise denied(
            f"{actor.login!r} may neither add nor change users, so a SCIM token acting as them "
            "could do nothing; choose an administrator",
            "login",
        )
    return _insert_token(db, actor, invite, None)


def _insert_token(
    db: Database, actor: Actor, invite: bool, recorded_actor: str | None
) -> CreatedScimToken:
    """A new token acting as `actor`, recorded as done by `recorded_actor` (None: the command
    line)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_id = new_id()
    now = utcnow()
    with db.write() as conn:
        conn.execute(
            insert(scim_tokens).values(
                id=token_id,
                account_id=actor.account_id,
                user_id=actor.user_id,
                token_hash=sha256_hex(token),
                created_at=now,
                invite=invite,
            )
        )
        change = Change(
            Operation.SCIM_TOKEN_CREATED,
            TargetKind.SCIM_TOKEN,
            token_id,
            recorded_actor,
            after=_view(token_id, actor.user_id, now, invite),
        )
        record(conn, actor.account, [change])
    return CreatedScimToken(token_id, token, actor.user_id, invite)


_SELECT_TOKENS = (
    select(
        scim_tokens.c.id,
        scim_tokens.c.account_id,
        scim_tokens.c.user_id,
        scim_tokens.c.created_at,
        scim_tokens.c.last_used_at,
        scim_tokens.c.revoked_at,
        scim_tokens.c.invite,
        users.c.login,
        accounts.c.url.label("account_url"),
    )
    .join(users, users.c.id == scim_tokens.c.user_id)
    .join(accounts, accounts.c.id == scim_tokens.c.account_id)
    .order_by(accounts.c.url, scim_tokens.c.created_at, scim_tokens.c.id)
)


def _info(row: Any) -> ScimTokenInfo:
    return ScimTokenInfo(
        token_id=row.id,
        account_url=row.account_url,
        user_id=row.user_id,
        login=row.login,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        invite=row.invite,
    )


def list_scim_tokens(db: Database, account_url: str | None = None) -> list[ScimTokenInfo]:
    """Every token (of one account when `account_url` is given), revoked ones included."""
    query = _SELECT_TOKENS
    if account_url is not None:
        query = query.where(accounts.c.url_key == account_url_key(account_url))
    with db.read() as conn:
        return [_info(row) for row in conn.execute(query)]


def revoke_scim_token(db: Database, token_id: str) -> tuple[ScimTokenInfo, bool]:
    """Revokes a token (the command line); answers it as it now is, and whether this call
    revoked it (False: it was revoked before, and nothing is recorded again)."""
    return _revoke(db, token_id, None, None)


def _revoke(
    db: Database, token_id: Any, account_id: str | None, recorded_actor: str | None
) -> tuple[ScimTokenInfo, bool]:
    """Revokes the token (of `account_id` only, when given: another account's is unknown),
    recorded as done by `recorded_actor` (None: the command line)."""
    canonical = as_uuid_text(token_id) if isinstance(token_id, str) else None
    with db.write() as conn:
        query = _SELECT_TOKENS.where(scim_tokens.c.id == canonical)
        if account_id is not None:
            query = query.where(scim_tokens.c.account_id == account_id)
        row = conn.execute(query.with_for_update(of=scim_tokens)).first() if canonical else None
        if row is None:
            error = not_found("SCIM token", "tokenId")
            error.reason = (
                f"no SCIM token {token_id!r}"
                if account_id is None
                else "no SCIM token with this id in this account"
            )
            raise error
        revoked = row.revoked_at is None
        if revoked:
            now = utcnow()
            conn.execute(
                update(scim_tokens)
                .where(scim_tokens.c.id == row.id, scim_tokens.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            view = _view(row.id, row.user_id, row.created_at, row.invite)
            change = Change(
                Operation.SCIM_TOKEN_REVOKED,
                TargetKind.SCIM_TOKEN,
                row.id,
                recorded_actor,
                before={**view, "revokedAt": None},
                after={**view, "revokedAt": iso_utc(now)},
            )
            record(conn, account_info(conn, row.account_id), [change])
        found = conn.execute(_SELECT_TOKENS.where(scim_tokens.c.id == row.id)).one()
    return _info(found), revoked


_SELECT_BY_HASH = select(
    scim_tokens.c.id,
    scim_tokens.c.account_id,
    scim_tokens.c.user_id,
    scim_tokens.c.last_used_at,
    scim_tokens.c.revoked_at,
    scim_tokens.c.invite,
)


def authenticate_scim_token(db: Database, token: str | None) -> Actor:
    """The user a SCIM request acts as, from its bearer token; Unauthorized for a missing,
    unknown or revoked token, or one whose user is no longer active."""
    return authenticate_scim(db, token).actor


def authenticate_scim(db: Database, token: str | None) -> ScimCaller:
    """authenticate_scim_token, with the token's options."""
    if not token or not token.strip():
        raise unauthenticated("send Authorization: Bearer <SCIM token>")
    token_hash = sha256_hex(token.strip())
    with db.read() as conn:
        row = conn.execute(_SELECT_BY_HASH.where(scim_tokens.c.token_hash == token_hash)).first()
        if row is None:
            raise unauthenticated("unknown SCIM token")
        if row.revoked_at is not None:
            raise unauthenticated("the SCIM token was revoked")
        actor = load_actor(conn, row.user_id)
    if actor is None or actor.account_id != row.account_id:
        raise unauthenticated("the SCIM token's user is not active")
    now = utcnow()
    if row.last_used_at is None or as_utc(row.last_used_at) <= now - LAST_USED_RESOLUTION:
        _touch(db, row.id, now)
    set_credential(f"scim:{row.id}", actor.login)
    return ScimCaller(actor, bool(row.invite))


def _touch(db: Database, token_id: str, now: datetime) -> None:
    """The token's last use, at most once a minute; on PostgreSQL in a transaction of its own,
    never waiting for a lock."""
    stale = now - LAST_USED_RESOLUTION
    with db.write() if db.is_sqlite else db.write_apart() as conn:
        touch_last_used(conn, scim_tokens, scim_tokens.c.id, token_id, stale, now)


# ---- the console: the owner and account administrators manage their account's tokens --------


def create_token_for_actor(db: Database, actor: Actor, *, invite: bool = False) -> CreatedScimToken:
    """create_scim_token for a signed-in account administrator: a token of the actor's
    account acting as the actor, recorded as the actor's change. Shown once."""
    actor.require_account_admin("manage SCIM tokens")
    return _insert_token(db, actor, invite, actor.user_id)


def account_scim_tokens(db: Database, actor: Actor) -> list[ScimTokenInfo]:
    """The actor's account's tokens, revoked ones included, oldest first."""
    actor.require_account_admin("manage SCIM tokens")
    with db.read() as conn:
        rows = conn.execute(_SELECT_TOKENS.where(scim_tokens.c.account_id == actor.account_id))
        return [_info(row) for row in rows]


def revoke_token_of_account(db: Database, actor: Actor, token_id: Any) -> bool:
    """Revokes a token of the actor's account (a token of another account is unknown here);
    answers whether this call revoked it (False: it was revoked before)."""
    actor.require_account_admin("manage SCIM tokens")
    return _revoke(db, token_id, actor.account_id, actor.user_id)[1]
