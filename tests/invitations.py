"""Test support for invitations: invite a new user, and play the delivery worker's part (the
message was sent with a fresh set-password link) without running it."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from learndir.core.auth import authenticate_token
from learndir.core.common import utcnow
from learndir.core.invitations.tokens import mint
from learndir.core.users.commands import AddUser, parse_command
from learndir.core.users.service import add_user
from learndir.db.engine import Database
from learndir.db.schema import outbox
from tests.support import World


def invite_new_user(w: World, department: str = "root", **extra: Any) -> str:
    """A user added by the owner with an e-mail invitation and no password."""
    uid = uuid.uuid4().hex[:10]
    params: dict[str, Any] = {
        "login": f"i{uid}",
        "email": f"i{uid}@acme.test",
        "departmentId": w.departments[department],
        "fields": {"employee_id": f"I{uid}"},
        "sendLoginEmail": True,
        "invitationMessage": "Welcome aboard",
    }
    params.update(extra)
    owner = authenticate_token(w.db, w.token("owner"))
    return add_user(w.db, owner, parse_command(AddUser, params))


def outbox_ids(db: Database, user_id: str) -> list[str]:
    with db.read() as conn:
        return list(
            conn.execute(
                select(outbox.c.id)
                .where(outbox.c.user_id == user_id)
                .order_by(outbox.c.created_at.desc())
            ).scalars()
        )


def send(
    db: Database, outbox_id: str, *, lifetime_days: int = 7, age: timedelta | None = None
) -> str:
    """Marks the message sent, as the worker would, and returns its link's raw token; `age`
    backdates the sending (a link sent `age` ago)."""
    sent_at = utcnow() - (age or timedelta())
    with db.write() as conn:
        raw = mint(conn, outbox_id, sent_at, lifetime_days)
        conn.execute(
            update(outbox)
            .where(outbox.c.id == outbox_id)
            .values(status="sent", sent_at=sent_at, attempts=outbox.c.attempts + 1)
        )
    return raw


def send_latest(db: Database, user_id: str, **kwargs: Any) -> str:
    return send(db, outbox_ids(db, user_id)[0], **kwargs)
