"""Invitations as a resource: a user's invitation messages (rows of `outbox`), resending and
revoking them, and the set-password link they carry.

A message is an invitation; its set-password token is minted when the message is sent (see
tokens.py). Voiding an invitation sets `revoked_at`, so its link stops working whatever the
message's delivery state; a message not yet handed to the worker (pending, or failed and kept)
also becomes `revoked`, so it is never sent. A message the worker is sending right now is sent,
but its link no longer works.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from learndir.core import signin
from learndir.core.actor import Actor
from learndir.core.changes import (
    Change,
    Operation,
    TargetKind,
    account_info,
    password_changed,
    record,
)
from learndir.core.common import as_utc, new_id, utcnow
from learndir.core.errors import DomainError, ErrorCode, invalid, not_found
from learndir.core.invitations.tokens import token_hash
from learndir.core.origin import set_credential
from learndir.core.passwords import hash_password
from learndir.core.profile_fields import is_email, phone_e164
from learndir.core.users.changes import editable_user
from learndir.core.users.service import check_password_policy
from learndir.db.engine import Database
from learndir.db.schema import accounts, outbox, users

ACTIVE = 1
CHANNELS = ("email", "sms")
# Delivery states in which a message has not gone out and never will once voided.
_UNSENT = ("pending", "failed")


class InvitationStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"
    ACCEPTED = "accepted"
    REVOKED = "revoked"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Invitation:
    id: str
    channel: str
    recipient: str
    status: InvitationStatus
    created_at: datetime
    sent_at: datetime | None
    expires_at: datetime | None
    accepted_at: datetime | None
    revoked_at: datetime | None
    attempts: int
    last_error: str | None


class LinkState(StrEnum):
    VALID = "valid"
    USED = "used"
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True)
class InvitationLink:
    """What the set-password page shows, found by the link's token alone."""

    state: LinkState
    account_name: str
    account_url: str
    login: str
    password_min_length: int
    expires_at: datetime | None


_LINK_ERRORS = {
    LinkState.USED: (ErrorCode.INVITATION_USED, "the link has already been used"),
    LinkState.EXPIRED: (ErrorCode.INVITATION_EXPIRED, "the link has expired"),
    LinkState.REVOKED: (ErrorCode.INVITATION_REVOKED, "the link was replaced or revoked"),
}


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else as_utc(moment)


# ---- the list ---------------------------------------------------------------------------

_COLUMNS = (
    outbox.c.id,
    outbox.c.channel,
    outbox.c.recipient,
    outbox.c.status,
    outbox.c.created_at,
    outbox.c.sent_at,
    outbox.c.expires_at,
    outbox.c.accepted_at,
    outbox.c.revoked_at,
    outbox.c.attempts,
    outbox.c.last_error,
)


def _status(row: Row[tuple[object, ...]], now: datetime) -> InvitationStatus:
    if row.accepted_at is not None:
        return InvitationStatus.ACCEPTED
    if row.revoked_at is not None or row.status == "revoked":
        return InvitationStatus.REVOKED
    if row.status == "failed":
        return InvitationStatus.FAILED
    if row.status != "sent":
        return InvitationStatus.QUEUED
    expires_at = _utc(row.expires_at)
    if expires_at is not None and expires_at <= now:
        return InvitationStatus.EXPIRED
    return InvitationStatus.SENT


def _invitation(row: Row[tuple[object, ...]], now: datetime) -> Invitation:
    return Invitation(
        id=row.id,
        channel=row.channel,
        recipient=row.recipient,
        status=_status(row, now),
        created_at=as_utc(row.created_at),
        sent_at=_utc(row.sent_at),
        expires_at=_utc(row.expires_at),
        accepted_at=_utc(row.accepted_at),
        revoked_at=_utc(row.revoked_at),
        attempts=row.attempts,
        last_error=row.last_error if row.status == "failed" else None,
    )


def _rows_of(conn: Connection, user_id: str) -> list[Row[tuple[object, ...]]]:
    return list(
        conn.execute(
            select(*_COLUMNS)
            .where(outbox.c.user_id == user_id)
            .order_by(outbox.c.created_at.desc(), outbox.c.channel)
        )
    )


def list_invitations(db: Database, actor: Actor, user_id: str) -> list[Invitation]:
    """The user's invitation messages, newest first, for those who may edit the user."""
    with db.read() as conn:
        target = editable_user(conn, actor, user_id)
        rows = _rows_of(conn, target.id)
    now = utcnow()
    return [_invitation(r, now) for r in rows]


# ---- resend and revoke ------------------------------------------------------------------


def _void(conn: Connection, user_id: str, now: datetime, keep: str | None = None) -> int:
    """Voids every open invitation of the user (but `keep`); returns how many."""
    open_ones = [
        outbox.c.user_id == user_id,
        outbox.c.accepted_at.is_(None),
        outbox.c.revoked_at.is_(None),
    ]
    if keep is not None:
        open_ones.append(outbox.c.id != keep)
    voided = conn.execute(
        update(outbox)
        .where(*open_ones, outbox.c.status.in_(_UNSENT))
        .values(status="revoked", revoked_at=now)
    ).rowcount
    voided += conn.execute(update(outbox).where(*open_ones).values(revoked_at=now)).rowcount
    return int(voided)


def _channel(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    channel = value.strip().lower()
    if channel not in CHANNELS:
        raise invalid("channel", f"must be one of {', '.join(CHANNELS)}, not {value!r}")
    return channel


def resend(
    db: Database, actor: Actor, user_id: str, channel: str | None = None
) -> list[Invitation]:
    """Voids every earlier invitation of the user and queues a new message on `channel`, or on
    the channels of the user's latest invitation (e-mail for a user never invited), to the
    user's current address, with the latest text sent on that channel (else the account's
    default invitation text). The new message carries a set-password link when the user has no
    password yet. Returns the new invitations."""
    wanted = _channel(channel)
    with db.write() as conn:
        target = editable_user(conn, actor, user_id)
        if target.status != ACTIVE:
            raise invalid(
                "userId", f"the user is not active (status {target.status}); activate them first"
            )
        user = conn.execute(
            select(users.c.login, users.c.email, users.c.phone, users.c.password_hash).where(
                users.c.id == target.id
            )
        ).one()
        earlier = _rows_of(conn, target.id)
        texts = dict(
            conn.execute(
                select(outbox.c.channel, outbox.c.message)
                .where(outbox.c.user_id == target.id)
                .order_by(outbox.c.created_at)
            ).all()
        )
        if wanted is not None:
            channels = [wanted]
        elif earlier:
            latest = earlier[0].created_at
            channels = sorted({r.channel for r in earlier if r.created_at == latest})
        else:
            channels = ["email"]
        default_text = conn.execute(
            select(accounts.c.invitation_message).where(accounts.c.id == actor.account_id)
        ).scalar_one()
        now = utcnow()
        new_rows = [
            {
                "id": new_id(),
                "account_id": actor.account_id,
                "user_id": target.id,
                "channel": ch,
                "recipient": _recipient(ch, user.login, user.email, user.phone),
                "message": texts.get(ch) or default_text,
                "status": "pending",
                "created_at": now,
                "next_attempt_at": now,
                "password_link": user.password_hash is None,
            }
            for ch in channels
        ]
        _void(conn, target.id, now)
        conn.execute(insert(outbox), new_rows)
        record(
            conn,
            actor.account,
            [
                _invitation_change(
                    Operation.INVITATION_RESENT,
                    target.id,
                    actor.user_id,
                    {"invitations": [{"id": r["id"], "channel": r["channel"]} for r in new_rows]},
                )
            ],
        )
        rows = _rows_of(conn, target.id)
    made = {r["id"] for r in new_rows}
    return [_invitation(r, now) for r in rows if r.id in made]


def _recipient(channel: str, login: str, email: str | None, phone: str | None) -> str:
    if channel == "sms":
        if not phone:
            raise invalid("channel", "the user has no phone number in the profile to send an SMS")
        return phone_e164(phone)
    recipient = email or (login if is_email(login) else None)
    if recipient is None:
        raise invalid(
            "channel",
            "the user has no e-mail address (neither email nor a login that is an e-mail)",
        )
    return recipient


def revoke(db: Database, actor: Actor, user_id: str) -> int:
    """Voids every open invitation of the user; returns how many were open."""
    with db.write() as conn:
        target = editable_user(conn, actor, user_id)
        voided = _void(conn, target.id, utcnow())
        if voided:
            record(
                conn,
                actor.account,
                [
                    _invitation_change(
                        Operation.INVITATION_REVOKED, target.id, actor.user_id, {"revoked": voided}
                    )
                ],
            )
        return voided


def _invitation_change(
    operation: Operation, user_id: str, actor_id: str | None, details: dict[str, Any]
) -> Change:
    return Change(operation, TargetKind.USER, user_id, actor_id, details=details)


# ---- the set-password link --------------------------------------------------------------

_SELECT_LINK = (
    select(
        outbox.c.id,
        outbox.c.user_id,
        outbox.c.expires_at,
        outbox.c.accepted_at,
        outbox.c.revoked_at,
        users.c.login,
        users.c.status.label("user_status"),
        accounts.c.name,
        accounts.c.url,
        accounts.c.password_min_length,
    )
    .join(users, users.c.id == outbox.c.user_id)
    .join(accounts, accounts.c.id == outbox.c.account_id)
)


def _link(conn: Connection, raw: str) -> tuple[str, str, InvitationLink]:
    """(outbox id, user id, what the page shows) for the token `raw`; unknown: Not found."""
    row = (
        conn.execute(_SELECT_LINK.where(outbox.c.token_hash == token_hash(raw))).first()
        if raw
        else None
    )
    if row is None:
        raise not_found("invitation link", "token")
    expires_at = _utc(row.expires_at)
    if row.accepted_at is not None:
        state = LinkState.USED
    elif row.revoked_at is not None or row.user_status != ACTIVE:
        state = LinkState.REVOKED
    elif expires_at is None or expires_at <= utcnow():
        state = LinkState.EXPIRED
    else:
        state = LinkState.VALID
    link = InvitationLink(
        state=state,
        account_name=row.name,
        account_url=row.url,
        login=row.login,
        password_min_length=row.password_min_length,
        expires_at=expires_at,
    )
    return row.id, row.user_id, link


def invitation_by_token(db: Database, raw: str) -> InvitationLink:
    """What the link `raw` leads to, without authenticating: its token is the credential, so
    unknown tokens count as failed sign-ins of the client's address (see core.signin)."""
    with signin.attempt(db, None) as attempt, db.read() as conn:
        try:
            return _link(conn, raw)[2]
        except DomainError as exc:
            if exc.code is ErrorCode.NOT_FOUND:
                raise attempt.wrong(exc) from None
            raise


def link_error(state: LinkState) -> DomainError:
    code, reason = _LINK_ERRORS[state]
    return DomainError(code, reason, parameter="token")


def accept(db: Database, raw: str, password: str) -> InvitationLink:
    """Sets the password of the user the link `raw` invites and consumes the link: once, before
    it expires, unless voided. Every other open invitation of the user is voided with it."""
    link = invitation_by_token(db, raw)
    if link.state is not LinkState.VALID:
        raise link_error(link.state)
    if not password:
        raise invalid("password", "is required")
    check_password_policy(password, link.password_min_length)
    # Argon2id takes tens of milliseconds: never inside the write transaction.
    password_hash = hash_password(password)
    with db.write() as conn:
        now = utcnow()
        outbox_id, user_id, current = _link(conn, raw)
        # Conditional: of two submits at once, one finds the link already accepted.
        taken = conn.execute(
            update(outbox)
            .where(
                outbox.c.id == outbox_id,
                outbox.c.accepted_at.is_(None),
                outbox.c.revoked_at.is_(None),
                outbox.c.expires_at > now,
            )
            .values(accepted_at=now)
        ).rowcount
        if taken != 1:
            raise link_error(_link(conn, raw)[2].state)
        changed = conn.execute(
            update(users)
            .where(users.c.id == user_id, users.c.status == ACTIVE)
            .values(password_hash=password_hash)
        ).rowcount
        if changed != 1:
            raise link_error(LinkState.REVOKED)
        _void(conn, user_id, now, keep=outbox_id)
        # The link is the credential: the user set their own password with it.
        set_credential("invitation", current.login)
        account_id = conn.execute(
            select(users.c.account_id).where(users.c.id == user_id)
        ).scalar_one()
        record(
            conn,
            account_info(conn, account_id),
            [password_changed(user_id, user_id, Operation.INVITATION_ACCEPTED, had_password=False)],
        )
    return replace(current, state=LinkState.USED)
