"""An account's profile fields, roles, default invitation text and webhook listeners, cached
per process.

They are read by every addUser and change only when the account's settings do, which bumps
`accounts.settings_version`. The actor's row already carries that version, so the cache is
keyed on it and is never stale: a change is seen by the next request that authenticates.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

from sqlalchemy import Connection, select, true, update

from learndir.core.actor import AccountInfo
from learndir.core.profile_fields import ProfileField, account_fields
from learndir.core.roles import Role, account_roles
from learndir.db.schema import accounts, webhook_subscribers, webhook_subscriptions

_MAX_ENTRIES = 1024


@dataclass(frozen=True)
class AccountSettings:
    fields: tuple[ProfileField, ...]
    roles: tuple[Role, ...]
    # The invitation's text when addUser asks for an e-mail without an invitationMessage.
    invitation_message: str
    # Confirmed, enabled subscribers' subscriptions: an empty tuple means nobody listens, and
    # a change then costs no webhook query at all.
    listeners: tuple[Listener, ...] = ()


@dataclass(frozen=True)
class Listener:
    """One subscription of a confirmed, enabled webhook subscriber."""

    subscriber_id: str
    event_type: str
    # The vendor's `userIds` filter: only events about these users; None means every one.
    user_ids: frozenset[str] | None


def _listeners(conn: Connection, account_id: str) -> tuple[Listener, ...]:
    rows = conn.execute(
        select(
            webhook_subscriptions.c.subscriber_id,
            webhook_subscriptions.c.event_type,
            webhook_subscriptions.c.params,
        )
        .join(
            webhook_subscribers, webhook_subscribers.c.id == webhook_subscriptions.c.subscriber_id
        )
        .where(
            webhook_subscribers.c.account_id == account_id,
            webhook_subscribers.c.confirmed.is_(true()),
            webhook_subscribers.c.enabled.is_(true()),
        )
    ).all()
    return tuple(
        Listener(row.subscriber_id, row.event_type, user_id_filter(row.params)) for row in rows
    )


def user_id_filter(params: str | None) -> frozenset[str] | None:
    """The `userIds` values of a subscription's stored params (JSON [{name, value}])."""
    if not params:
        return None
    wanted: set[str] = set()
    found = False
    for item in json.loads(params):
        if item.get("name") == "userIds":
            found = True
            value = item.get("value")
            values = value if isinstance(value, list) else str(value).split(",")
            wanted.update(str(v).strip().lower() for v in values if str(v).strip())
    return frozenset(wanted) if found else None


_cache: dict[tuple[str, int], AccountSettings] = {}
_lock = threading.Lock()


def account_settings(conn: Connection, account: AccountInfo) -> AccountSettings:
    key = (account.id, account.settings_version)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    settings = AccountSettings(
        fields=tuple(account_fields(conn, account.id)),
        roles=tuple(account_roles(conn, account.id)),
        invitation_message=conn.execute(
            select(accounts.c.invitation_message).where(accounts.c.id == account.id)
        ).scalar_one(),
        listeners=_listeners(conn, account.id),
    )
    with _lock:
        if len(_cache) >= _MAX_ENTRIES:
            _cache.clear()
        _cache[key] = settings
    return settings


def settings_changed(conn: Connection, account_id: str) -> None:
    """Call in the transaction that changes an account's profile fields, roles, invitation
    text or webhook subscribers and subscriptions."""
    conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(settings_version=accounts.c.settings_version + 1)
    )
