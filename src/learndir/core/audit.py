"""Reading the audit trail, and keeping it no longer than the retention period.

The trail is written by `core.changes.record` only (one row per change, in the change's own
transaction); this module reads it for the owner and account administrators and for the
command line, newest first, paged by id.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, select

from learndir.core.actor import Actor
from learndir.core.auth import account_url_key
from learndir.core.common import as_utc, as_uuid_text, fold, parse_time, utcnow
from learndir.core.errors import invalid, not_found
from learndir.core.paging import check_page_size
from learndir.core.users.keys import users_by_key
from learndir.db.engine import Database
from learndir.db.schema import accounts, audit_log

# Rows deleted per statement by the retention purge: short transactions, no long lock.
_PURGE_BATCH = 5000


@dataclass(frozen=True)
class AuditRecord:
    id: int
    occurred_at: datetime
    actor_user_id: str | None
    actor_login: str | None
    credential: str | None
    interface: str
    client_address: str | None
    request_id: str | None
    operation: str
    target_kind: str
    target_id: str
    changes: list[dict[str, Any]]
    details: dict[str, Any] | None


@dataclass(frozen=True)
class AuditQuery:
    """What to read: every filter is optional; `user_id` is the acting user."""

    user_id: str | None = None
    target_id: str | None = None
    operation: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    page_size: int | None = None
    page_token: str | None = None


def audit_query(
    user_id: Any = None,
    target_id: Any = None,
    operation: Any = None,
    since: Any = None,
    until: Any = None,
    page_size: int | None = None,
    page_token: Any = None,
) -> AuditQuery:
    """The filters as clients send them (text), checked."""
    return AuditQuery(
        user_id=_id(user_id, "userId"),
        target_id=_text(target_id, "targetId"),
        operation=_text(operation, "operation"),
        since=parse_time(since, "since"),
        until=parse_time(until, "until"),
        page_size=page_size,
        page_token=_text(page_token, "pageToken"),
    )


def _text(value: Any, parameter: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(parameter, "must be a text value")
    return value.strip() or None


def _id(value: Any, parameter: str) -> str | None:
    text = _text(value, parameter)
    if text is None:
        return None
    canonical = as_uuid_text(text)
    if canonical is None:
        raise invalid(parameter, f"{text!r} is not a user id")
    return canonical


def acting_user_id(
    db: Database, actor: Actor, login_or_id: Any, parameter: str = "user"
) -> str | None:
    """The user id to filter the trail on for a login or a user id (the console's filter): a
    user id as it is (a deleted user's records keep their id), a login of the actor's account
    by one indexed read."""
    actor.require_account_admin("read the audit trail")
    text = _text(login_or_id, parameter)
    if text is None:
        return None
    canonical = as_uuid_text(text)
    if canonical is not None:
        return canonical
    with db.read() as conn:
        found = users_by_key(conn, actor.account_id, "login_key", [fold(text)])
    if not found:
        raise invalid(parameter, f"no user with the login {text!r} in this account")
    return found[0]


def read_audit(
    db: Database, actor: Actor, query: AuditQuery
) -> tuple[list[AuditRecord], str | None]:
    """A page of the actor's account's trail, newest first, and the next page's token."""
    actor.require_account_admin("read the audit trail")
    with db.read() as conn:
        return _page(conn, actor.account_id, query)


def read_audit_by_account_url(
    db: Database, account_url: str, query: AuditQuery
) -> tuple[list[AuditRecord], str | None]:
    """The same for the command line, which acts on the server's behalf."""
    with db.read() as conn:
        account_id = conn.execute(
            select(accounts.c.id).where(accounts.c.url_key == account_url_key(account_url))
        ).scalar()
        if account_id is None:
            raise not_found("account", "accountUrl")
        return _page(conn, account_id, query)


def _page(
    conn: Connection, account_id: str, query: AuditQuery
) -> tuple[list[AuditRecord], str | None]:
    size = check_page_size(query.page_size)
    statement = select(audit_log).where(audit_log.c.account_id == account_id)
    if query.page_token is not None:
        statement = statement.where(audit_log.c.id < _decode_token(query.page_token))
    if query.user_id is not None:
        statement = statement.where(audit_log.c.actor_user_id == query.user_id)
    if query.target_id is not None:
        statement = statement.where(audit_log.c.target_id == query.target_id)
    if query.operation is not None:
        statement = statement.where(audit_log.c.operation == query.operation.upper())
    if query.since is not None:
        statement = statement.where(audit_log.c.occurred_at >= query.since)
    if query.until is not None:
        statement = statement.where(audit_log.c.occurred_at < query.until)
    rows = conn.execute(statement.order_by(audit_log.c.id.desc()).limit(size + 1)).all()
    records = [_record(row) for row in rows[:size]]
    next_token = _encode_token(records[-1].id) if len(rows) > size else None
    return records, next_token


def _record(row: Any) -> AuditRecord:
    return AuditRecord(
        id=row.id,
        occurred_at=as_utc(row.occurred_at),
        actor_user_id=row.actor_user_id,
        actor_login=row.actor_login,
        credential=row.credential,
        interface=row.interface,
        client_address=row.client_address,
        request_id=row.request_id,
        operation=row.operation,
        target_kind=row.target_kind,
        target_id=row.target_id,
        changes=json.loads(row.changes),
        details=json.loads(row.details) if row.details else None,
    )


def _encode_token(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"audit:{last_id}".encode()).decode("ascii").rstrip("=")


def _decode_token(token: str) -> int:
    try:
        raw = token.encode("ascii")
        text = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4)).decode("ascii")
    except (UnicodeError, binascii.Error, ValueError):
        text = ""
    prefix, _, number = text.partition(":")
    if prefix != "audit" or not number.isascii() or not number.isdigit() or len(number) > 18:
        raise invalid("pageToken", "is not a page token this server issued")
    return int(number)


def purge_audit(db: Database, retention_days: int) -> int:
    """Deletes the records older than `retention_days` (0 or less keeps them all), in short
    batches; returns how many went."""
    if retention_days <= 0:
        return 0
    cutoff = utcnow() - timedelta(days=retention_days)
    total = 0
    while True:
        with db.write() as conn:
            ids = (
                conn.execute(
                    select(audit_log.c.id)
                    .where(audit_log.c.occurred_at < cutoff)
                    .order_by(audit_log.c.occurred_at)
                    .limit(_PURGE_BATCH)
                )
                .scalars()
                .all()
            )
            if not ids:
                return total
            conn.execute(delete(audit_log).where(audit_log.c.id.in_(ids)))
        total += len(ids)
