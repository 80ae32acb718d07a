"""Set-password tokens: 256 random bits, shown only in the message, stored as SHA-256.

A token is minted when its message is sent, not when the invitation is asked for, so the
raw token never rests in the database: the delivery worker mints it in the transaction that
claims the message and puts it only in the text it hands to the provider.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, update

from learndir.db.schema import outbox


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def mint(conn: Connection, outbox_id: str, now: datetime, lifetime_days: int) -> str:
    """A new token for the invitation message `outbox_id`, valid `lifetime_days` from `now`;
    any token the message had before (an earlier attempt) stops working."""
    return mint_many(conn, {outbox_id: lifetime_days}, now)[outbox_id]


_SET_TOKEN = (
    update(outbox)
    .where(outbox.c.id == bindparam("b_id"))
    .values(token_hash=bindparam("b_hash"), expires_at=bindparam("b_expires"))
)


def mint_many(conn: Connection, lifetimes: Mapping[str, int], now: datetime) -> dict[str, str]:
    """`mint` for a batch of messages (outbox id -> lifetime in days) in one statement;
    returns the raw token of each."""
    raws = {outbox_id: secrets.token_urlsafe(32) for outbox_id in lifetimes}
    if raws:
        conn.execute(
            _SET_TOKEN,
            [
                {
                    "b_id": outbox_id,
                    "b_hash": token_hash(raw),
                    "b_expires": now + timedelta(days=lifetimes[outbox_id]),
                }
                for outbox_id, raw in raws.items()
            ],
        )
    return raws
