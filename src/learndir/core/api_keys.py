"""Managing API keys: listing, creating for a user, revoking.

The owner and account administrators manage the account's keys; an administrator sees the
owner's keys but may neither create nor revoke one (it would act, or stop acting, with the
owner's rights). The command line manages every account's keys, without an acting user.
Revoking sets `revoked_at` and deletes the key's tokens in the same transaction: every node
reads tokens from the database on every request, so they stop working at once everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, select, update

from learndir.core.actor import AccountInfo, Actor
from learndir.core.auth import (
    ACTIVE,
    ApiKey,
    account_url_key,
    create_api_key_for_user,
    key_view,
)
from learndir.core.changes import Change, Operation, TargetKind, account_info, record
from learndir.core.common import as_utc, utcnow
from learndir.core.errors import DomainError, denied, invalid, not_found
from learndir.core.roles import RoleKind
from learndir.core.users.targets import load_targets
from learndir.db.engine import Database
from learndir.db.schema import access_tokens, accounts, api_keys, users

# The column's width: a longer id, or one with control or non-ASCII characters (which
# PostgreSQL may refuse), cannot be a key and is unknown without a query.
_MAX_CLIENT_ID = 64


@dataclass(frozen=True)
class KeyInfo:
    """A key as it is listed: never its secret or the secret's hash."""

    client_id: str
    user_id: str
    login: str
    account_url: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class CreatedKey:
    client_id: str
    client_secret: str
    user_id: str


def _require_manager(actor: Actor) -> None:
    actor.require_account_admin("manage API keys")


def _is_owner(actor: Actor) -> bool:
    return any(g.role.kind is RoleKind.OWNER for g in actor.grants)


_SELECT_KEYS = (
    select(
        api_keys.c.client_id,
        api_keys.c.user_id,
        api_keys.c.created_at,
        api_keys.c.last_used_at,
        api_keys.c.revoked_at,
        users.c.login,
        accounts.c.url.label("account_url"),
        accounts.c.id.label("account_id"),
    )
    .join(users, users.c.id == api_keys.c.user_id)
    .join(accounts, accounts.c.id == users.c.account_id)
    .order_by(accounts.c.url, api_keys.c.created_at, api_keys.c.client_id)
)


def _info(row: Any) -> KeyInfo:
    return KeyInfo(
        client_id=row.client_id,
        user_id=row.user_id,
        login=row.login,
        account_url=row.account_url,
        created_at=as_utc(row.created_at),
        last_used_at=as_utc(row.last_used_at) if row.last_used_at is not None else None,
        revoked_at=as_utc(row.revoked_at) if row.revoked_at is not None else None,
    )


def list_keys(db: Database, actor: Actor) -> list[KeyInfo]:
    """The account's keys, revoked ones included, oldest first."""
    _require_manager(actor)
    with db.read() as conn:
        rows = conn.execute(_SELECT_KEYS.where(users.c.account_id == actor.account_id)).all()
    return [_info(r) for r in rows]


def all_keys(db: Database, account_url: str | None = None) -> list[KeyInfo]:
    """Every account's keys (the command line), or one account's."""
    query = _SELECT_KEYS
    if account_url is not None:
        query = query.where(accounts.c.url_key == account_url_key(account_url))
    with db.read() as conn:
        return [_info(r) for r in conn.execute(query).all()]


def create_key(db: Database, actor: Actor, user_id: Any = None) -> CreatedKey:
    """A key of `user_id` (default: the actor), whose secret is shown only now."""
    _require_manager(actor)
    if user_id is not None and not isinstance(user_id, str):
        raise invalid("userId", "must be a text value")
    with db.write() as conn:
        if user_id is None or not user_id.strip():
            owner_id = actor.user_id
        else:
            target = load_targets(conn, actor, [user_id], "userId")[0]
            if target.is_owner and not _is_owner(actor):
                raise denied("only the account owner creates keys of the owner", "userId")
            if target.status != ACTIVE:
                raise invalid("userId", "the user is not active: its key could buy no token")
            owner_id = target.id
        key: ApiKey = create_api_key_for_user(conn, actor.account, owner_id, actor.user_id)
    return CreatedKey(key.client_id, key.client_secret, owner_id)


def _find(conn: Connection, client_id: Any) -> Any:
    """The key's row, locked (after any token purchase in flight, see issue_token); an id
    that cannot be a key is unknown without a query."""
    if (
        not isinstance(client_id, str)
        or not client_id
        or len(client_id) > _MAX_CLIENT_ID
        or not (client_id.isascii() and client_id.isprintable())
    ):
        return None
    return conn.execute(
        select(
            api_keys.c.client_id,
            api_keys.c.user_id,
            api_keys.c.created_at,
            api_keys.c.revoked_at,
            users.c.account_id,
        )
        .join(users, users.c.id == api_keys.c.user_id)
        .where(api_keys.c.client_id == client_id)
        .with_for_update(of=api_keys, key_share=True)
    ).first()


def _unknown_key() -> DomainError:
    error = not_found("API key", "clientId")
    error.reason = "no API key with this client id"
    return error


def revoke_key(db: Database, actor: Actor, client_id: Any) -> None:
    """Revokes a key of the actor's account; a key of another account is unknown here.
    Revoking a revoked key changes nothing."""
    _require_manager(actor)
    with db.write() as conn:
        row = _find(conn, client_id)
        if row is None or row.account_id != actor.account_id:
            raise _unknown_key()
        if not _is_owner(actor) and _holds_owner_role(conn, actor, row.user_id):
            raise denied("only the account owner revokes keys of the owner", "clientId")
        _revoke(conn, actor.account, row, actor.user_id)


def revoke_key_by_id(db: Database, client_id: str) -> tuple[KeyInfo, bool]:
    """The command line's revocation: any account's key, without an acting user. Answers the
    key as it now is, and whether this call revoked it (False: it was revoked before)."""
    with db.write() as conn:
        row = _find(conn, client_id)
        if row is None:
            raise _unknown_key()
        revoked = _revoke(conn, account_info(conn, row.account_id), row, None)
        found = conn.execute(_SELECT_KEYS.where(api_keys.c.client_id == row.client_id)).one()
    return _info(found), revoked


def _holds_owner_role(conn: Connection, actor: Actor, user_id: str) -> bool:
    return load_targets(conn, actor, [user_id], "clientId")[0].is_owner


def _revoke(conn: Connection, account: AccountInfo, row: Any, actor_id: str | None) -> bool:
    if row.revoked_at is not None:
        return False
    now = utcnow()
    conn.execute(
        update(api_keys)
        .where(api_keys.c.client_id == row.client_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    conn.execute(delete(access_tokens).where(access_tokens.c.client_id == row.client_id))
    # Tokens bought before tokens knew their key (migration 0008) could be this key's: the
    # user's such tokens end too (they would have lived 30 minutes at most).
    conn.execute(
        delete(access_tokens).where(
            and_(access_tokens.c.user_id == row.user_id, access_tokens.c.client_id.is_(None))
        )
    )
    created = as_utc(row.created_at)
    before = key_view(row.client_id, row.user_id, created, None)
    after = key_view(row.client_id, row.user_id, created, now)
    record(
        conn,
        account,
        [
            Change(
                Operation.API_KEY_REVOKED,
                TargetKind.API_KEY,
                row.client_id,
                actor_id,
                before=before,
                after=after,
            )
        ],
    )
    return True
