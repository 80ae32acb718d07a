"""An account's profile fields, roles and default invitation text, cached per process.

They are read by every addUser and change only when the account's settings do, which bumps
`accounts.settings_version`. The actor's row already carries that version, so the cache is
keyed on it and is never stale: a change is seen by the next request that authenticates.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy import Connection, select, update

from learndir.core.actor import AccountInfo
from learndir.core.profile_fields import ProfileField, account_fields
from learndir.core.roles import Role, account_roles
from learndir.db.schema import accounts

_MAX_ENTRIES = 1024


@dataclass(frozen=True)
class AccountSettings:
    fields: tuple[ProfileField, ...]
    roles: tuple[Role, ...]
    # The invitation's text when addUser asks for an e-mail without an invitationMessage.
    invitation_message: str


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
    )
    with _lock:
        if len(_cache) >= _MAX_ENTRIES:
            _cache.clear()
        _cache[key] = settings
    return settings


def settings_changed(conn: Connection, account_id: str) -> None:
    """Call in the transaction that changes an account's profile fields, roles or invitation
    text."""
    conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(settings_version=accounts.c.settings_version + 1)
    )
