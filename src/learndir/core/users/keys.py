"""Finding users by login or e-mail key, the way no query plan can turn into a scan.

users' unique indexes lead with login_key and email_key; every other index of the table leads
with account_id. A lookup that names the account too would leave a planner without statistics
(a fresh or fast-growing account) free to pick an index led by account_id and read the whole
account. By the key alone only the unique index fits; the account is picked from the few rows
found (one per account at most).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, bindparam, select

from learndir.db.schema import users

_BY_KEY = {
    column.name: select(users.c.id, users.c.account_id).where(
        column.in_(bindparam("keys", expanding=True))
    )
    for column in (users.c.login_key, users.c.email_key)
}
# Keys per statement: well under every database's limit on bound parameters.
_CHUNK = 1000


def users_by_key(conn: Connection, account_id: str, column: str, keys: Iterable[str]) -> list[str]:
    """Ids of the account's users whose `column` (login_key or email_key) is among `keys`."""
    statement = _BY_KEY[column]
    wanted = list(dict.fromkeys(keys))
    found: list[str] = []
    for start in range(0, len(wanted), _CHUNK):
        rows = conn.execute(statement, {"keys": wanted[start : start + _CHUNK]})
        found.extend(user_id for user_id, holder in rows if holder == account_id)
    return found
