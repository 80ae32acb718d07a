"""Set-password tokens: 256 random bits, shown only in the message, stored as SHA-256.

A token is minted when its message is sent, not when the invitation is asked for, so the
raw token never rests in the database: the delivery worker mints it in the transaction that
claims the message and puts it only in the text it hands to the provider.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import Connection, update

from learndir.db.schema import outbox


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def mint(conn: Connection, outbox_id: str, now: datetime, lifetime_days: int) -> str:
    """A new token for the invitation message `outbox_id`, valid `lifetime_days` from `now`;
    any token the message had before (an earlier attempt) stops working."""
    raw = secrets.token_urlsafe(32)
    conn.execute(
        update(outbox)
        .where(outbox.c.id == outbox_id)
        .values(token_hash=token_hash(raw), expires_at=now + timedelta(days=lifetime_days))
    )
    return raw
