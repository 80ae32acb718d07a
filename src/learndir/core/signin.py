"""Guessing resistance: failed sign-ins are counted per login (or API client) and per client
address, and a subject with too many failures is locked for a while.

Every way in (X-Auth headers, SOAP credentials, the token endpoint, the set-password page, the
console's sign-in) looks at a credential inside `attempt`: it refuses a locked subject first,
counts a failure when the credential is wrong and clears the login's count when it is right.
The counts live in the database (`signin_failures`), so every server process and node sees the
same ones. Each failure is one atomic upsert in a transaction of its own, committed although
the request it belongs to is rejected. A lock is refused without looking at the credential, so
a correct password does not tell a guesser that it was correct. An address lock holds for that
address only, and a login lock for that login only: a guesser's address does not lock others
out of their own logins.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, and_, case, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from learndir.core.actor import Actor
from learndir.core.changes import Change, Operation, TargetKind, account_info, record
from learndir.core.common import as_utc, fold, utcnow
from learndir.core.errors import DomainError, ErrorCode, invalid, not_found
from learndir.core.origin import current_address
from learndir.core.users.keys import users_by_key
from learndir.db.engine import Database
from learndir.db.schema import accounts, api_keys, signin_failures, users


@dataclass(frozen=True)
class SigninPolicy:
    """When a subject is locked, and for how long. A login (or API client) is locked at its
    `login_threshold`th failure, an address at its `address_threshold`th, first for
    `first_lock_seconds`, twice as long at each further failure up to `max_lock_seconds`.
    A count starts again after `window_seconds` without a failure or a lock."""

    login_threshold: int = 5
    address_threshold: int = 50
    first_lock_seconds: float = 60.0
    max_lock_seconds: float = 3600.0
    window_seconds: float = 900.0


_policy = SigninPolicy()


def configure(policy: SigninPolicy) -> None:
    """Set once per process from the settings (the server, the CLI)."""
    global _policy
    _policy = policy


class Scope(StrEnum):
    LOGIN = "login"
    CLIENT = "client"
    ADDRESS = "address"


@dataclass(frozen=True)
class Subject:
    scope: Scope
    key: str
    # The account a login belongs to, once known (None for unknown accounts and addresses).
    account_id: str | None = None


# Subjects are client input: NUL, other control characters or lone surrogates (which
# PostgreSQL cannot store) and overlong text are kept as their digest, which counts as well.
_NOT_STORABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_MAX_SUBJECT = 512


def _storable(text: str) -> str:
    if len(text) <= _MAX_SUBJECT and not _NOT_STORABLE.search(text):
        return text
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def login_subject(url_key: str, login_or_email: str, account_id: str | None = None) -> Subject:
    """A login as given (login or e-mail, folded), in the account whose URL key is `url_key`;
    unknown accounts and logins are counted the same way as known ones."""
    return Subject(Scope.LOGIN, _storable(f"{url_key} {fold(login_or_email)}"), account_id)


def client_subject(client_id: str) -> Subject:
    return Subject(Scope.CLIENT, _storable(client_id))


def with_address(subject: Subject | None) -> list[Subject]:
    """`subject` and the current request's client address (when there is one)."""
    subjects = [subject] if subject is not None else []
    address = current_address()
    if address:
        subjects.append(Subject(Scope.ADDRESS, _storable(address)))
    return subjects


def _threshold(scope: Scope) -> int:
    return _policy.address_threshold if scope is Scope.ADDRESS else _policy.login_threshold


def _lock_seconds(failures: int, threshold: int) -> float:
    doublings = min(failures - threshold, 40)
    return min(_policy.first_lock_seconds * float(2**doublings), _policy.max_lock_seconds)


def _matching(subjects: Sequence[Subject]) -> Any:
    return or_(
        *(
            and_(signin_failures.c.scope == s.scope.value, signin_failures.c.subject == s.key)
            for s in subjects
        )
    )


def _too_many_attempts(locked_until: datetime, now: datetime) -> DomainError:
    seconds = max(1, math.ceil((locked_until - now).total_seconds()))
    return DomainError(
        ErrorCode.TOO_MANY_ATTEMPTS,
        f"signing in is locked after too many failures; try again in {seconds} seconds",
        retry_after=seconds,
    )


def check(db: Database, subjects: Sequence[Subject]) -> frozenset[Subject]:
    """Raises Too many attempts while any of `subjects` is locked, without looking at the
    credential. Returns the subjects that have failures on record (for `succeeded`)."""
    if not subjects:
        return frozenset()
    with db.read() as conn:
        rows = conn.execute(
            select(
                signin_failures.c.scope, signin_failures.c.subject, signin_failures.c.locked_until
            ).where(_matching(subjects))
        ).all()
    now = utcnow()
    locks = [as_utc(r.locked_until) for r in rows if r.locked_until is not None]
    locked = [until for until in locks if until > now]
    if locked:
        raise _too_many_attempts(max(locked), now)
    on_record = {(r.scope, r.subject) for r in rows}
    return frozenset(s for s in subjects if (s.scope.value, s.key) in on_record)


class Attempt:
    """One sign-in inside `attempt`: `wrong` marks it failed."""

    def __init__(self) -> None:
        self.is_wrong = False
        # The login's account, once the sign-in has found it.
        self.account_id: str | None = None

    def wrong(self, error: DomainError) -> DomainError:
        """Counts this attempt as failed; returns `error`, for the caller to raise."""
        self.is_wrong = True
        return error


@contextlib.contextmanager
def attempt(db: Database, subject: Subject | None) -> Iterator[Attempt]:
    """A sign-in as `subject` (a login or API client; None: the address alone) from the current
    client address. Refuses it while locked; when the block raises the error of
    `Attempt.wrong`, counts a failure; when the block ends normally, clears the login's count."""
    subjects = with_address(subject)
    on_record = check(db, subjects)
    # A login or client with failures on record is charged before its credential is checked:
    # guesses sent side by side cannot all pass the check before any of them is counted. The
    # charge is the failure when the guess is wrong; a correct credential clears it.
    charged = [s for s in on_record if s.scope is not Scope.ADDRESS]
    if charged:
        _charge(db, charged)
    current = Attempt()
    try:
        yield current
    except DomainError:
        if current.is_wrong:
            account_id = current.account_id
            failed(
                db,
                [
                    replace(s, account_id=account_id) if s.scope is Scope.LOGIN else s
                    for s in subjects
                    if s not in charged
                ],
            )
        raise
    succeeded(db, on_record)


def _charge(db: Database, subjects: Sequence[Subject]) -> None:
    """Counts one failure for each subject ahead of the check; refuses the attempt when that
    takes a count past its threshold (the attempts before it used up what was allowed)."""
    now = utcnow()
    with db.write_apart() as conn:
        counted = [_count_failure(conn, db.is_sqlite, s, now) for s in subjects]
    beyond = [
        until
        for (failures, until), s in zip(counted, subjects, strict=True)
        if until is not None and failures > _threshold(s.scope)
    ]
    if beyond:
        raise _too_many_attempts(max(beyond), now)


def failed(db: Database, subjects: Sequence[Subject]) -> None:
    """Counts one failure for each subject, in a transaction of its own."""
    if not subjects:
        return
    now = utcnow()
    with db.write_apart() as conn:
        for subject in subjects:
            _count_failure(conn, db.is_sqlite, subject, now)


def _count_failure(
    conn: Connection, is_sqlite: bool, subject: Subject, now: datetime
) -> tuple[int, datetime | None]:
    """One atomic upsert: a new count, one more, or (after a quiet window) a fresh start; then
    the lock, if the count has reached the threshold. Returns the count and the lock's end."""
    table = signin_failures
    quiet_since = now - timedelta(seconds=_policy.window_seconds)
    stale = func.coalesce(table.c.locked_until, table.c.last_failed_at) < quiet_since
    dialect_insert = sqlite.insert if is_sqlite else postgresql.insert
    statement = dialect_insert(table).values(
        scope=subject.scope.value,
        subject=subject.key,
        account_id=subject.account_id,
        failures=1,
        first_failed_at=now,
        last_failed_at=now,
        locked_until=None,
    )
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.scope, table.c.subject],
        set_={
            "failures": case((stale, 1), else_=table.c.failures + 1),
            "first_failed_at": case((stale, now), else_=table.c.first_failed_at),
            "last_failed_at": now,
            "locked_until": case((stale, None), else_=table.c.locked_until),
            "account_id": func.coalesce(statement.excluded.account_id, table.c.account_id),
        },
    )
    failures = conn.execute(statement.returning(table.c.failures)).scalar_one()
    threshold = _threshold(subject.scope)
    if failures < threshold:
        return failures, None
    until = now + timedelta(seconds=_lock_seconds(failures, threshold))
    conn.execute(
        update(table)
        .where(table.c.scope == subject.scope.value, table.c.subject == subject.key)
        .values(locked_until=until)
    )
    return failures, until


def succeeded(db: Database, on_record: frozenset[Subject]) -> None:
    """A correct credential clears its login's (or client's) count; an address keeps its count,
    or one valid login would let a guesser start afresh. Writes only when there is a count."""
    cleared = [s for s in on_record if s.scope is not Scope.ADDRESS]
    if cleared:
        with db.write_apart() as conn:
            conn.execute(delete(signin_failures).where(_matching(cleared)))


def forget_stale(db: Database, window_seconds: float) -> int:
    """Deletes the counts that would start again anyway (no failure or lock for
    `window_seconds`): a guesser trying many logins leaves no lasting rows. Returns how many."""
    quiet_since = utcnow() - timedelta(seconds=window_seconds)
    stale = func.coalesce(signin_failures.c.locked_until, signin_failures.c.last_failed_at)
    with db.write() as conn:
        return int(conn.execute(delete(signin_failures).where(stale < quiet_since)).rowcount)


# ---- locks: who is locked out, and unlocking ----------------------------------------------


@dataclass(frozen=True)
class SigninLock:
    scope: Scope
    # The login or e-mail as given (without the account), the client id, or the address.
    subject: str
    account_id: str | None
    failures: int
    first_failed_at: datetime
    last_failed_at: datetime
    locked_until: datetime | None


_LOCK_COLUMNS = (
    signin_failures.c.scope,
    signin_failures.c.subject,
    signin_failures.c.account_id,
    signin_failures.c.failures,
    signin_failures.c.first_failed_at,
    signin_failures.c.last_failed_at,
    signin_failures.c.locked_until,
    accounts.c.url_key,
)


def _lock(row: Any) -> SigninLock:
    subject = row.subject
    if row.scope == Scope.LOGIN and row.url_key and subject.startswith(row.url_key + " "):
        subject = subject[len(row.url_key) + 1 :]
    return SigninLock(
        scope=Scope(row.scope),
        subject=subject,
        account_id=row.account_id,
        failures=row.failures,
        first_failed_at=as_utc(row.first_failed_at),
        last_failed_at=as_utc(row.last_failed_at),
        locked_until=as_utc(row.locked_until) if row.locked_until is not None else None,
    )


def _locks(conn: Connection, condition: Any) -> list[SigninLock]:
    rows = conn.execute(
        select(*_LOCK_COLUMNS)
        .select_from(signin_failures)
        .outerjoin(accounts, accounts.c.id == signin_failures.c.account_id)
        .where(condition, signin_failures.c.locked_until > utcnow())
        .order_by(signin_failures.c.locked_until.desc(), signin_failures.c.subject)
    ).all()
    return [_lock(row) for row in rows]


def _require_admin(actor: Actor) -> None:
    actor.require_account_admin("manage sign-in locks")


def account_locks(db: Database, actor: Actor) -> list[SigninLock]:
    """The logins of the actor's account that are locked now."""
    _require_admin(actor)
    with db.read() as conn:
        return _locks(
            conn,
            and_(
                signin_failures.c.scope == Scope.LOGIN.value,
                signin_failures.c.account_id == actor.account_id,
            ),
        )


def all_locks(db: Database, account_url_key: str | None = None) -> list[SigninLock]:
    """The operator's view: every lock now in force (logins, API clients, addresses), or one
    account's logins."""
    with db.read() as conn:
        if account_url_key is None:
            return _locks(conn, True)
        account_id = _account_id(conn, account_url_key)
        return _locks(
            conn,
            and_(
                signin_failures.c.scope == Scope.LOGIN.value,
                signin_failures.c.account_id == account_id,
            ),
        )


def _account_id(conn: Connection, url_key: str) -> str:
    account_id = conn.execute(select(accounts.c.id).where(accounts.c.url_key == url_key)).scalar()
    if account_id is None:
        raise not_found("account", "account_url")
    return str(account_id)


def _login_subjects(conn: Connection, account_id: str, url_key: str, login: str) -> list[Subject]:
    """The subjects a user can be locked under: the login as given and, when it names a user,
    that user's login and e-mail (either may have been used to sign in)."""
    keys = {fold(login)}
    # By the unique indexes (core.users.keys), a login match before an e-mail match.
    found = users_by_key(conn, account_id, "login_key", [fold(login)]) or users_by_key(
        conn, account_id, "email_key", [fold(login)]
    )
    if found:
        row = conn.execute(select(users.c.login, users.c.email).where(users.c.id == found[0])).one()
        keys |= {fold(value) for value in (row.login, row.email) if value}
    return [login_subject(url_key, key, account_id) for key in sorted(keys)]


def _remove(
    conn: Connection, account_id: str, subjects: Sequence[Subject], actor_id: str | None
) -> int:
    """Deletes the counts of `subjects` and records each in the account's audit trail."""
    removed = conn.execute(
        delete(signin_failures)
        .where(_matching(subjects))
        .returning(
            signin_failures.c.scope,
            signin_failures.c.subject,
            signin_failures.c.failures,
            signin_failures.c.locked_until,
        )
    ).all()
    if removed:
        account = account_info(conn, account_id)
        record(
            conn,
            account,
            [
                Change(
                    Operation.SIGNIN_UNLOCKED,
                    TargetKind.SIGNIN,
                    f"{row.scope}:{row.subject}",
                    actor_id,
                    before={
                        "failures": row.failures,
                        "lockedUntil": _iso(row.locked_until),
                    },
                    after={"failures": 0, "lockedUntil": None},
                )
                for row in removed
            ],
        )
    return len(removed)


def _iso(moment: datetime | None) -> str | None:
    return as_utc(moment).isoformat() if moment is not None else None


def unlock_login(db: Database, actor: Actor, login: Any) -> int:
    """Clears the failures and lock of a login of the actor's account; Not found when it has
    none. Returns how many counts were cleared (login and e-mail are counted apart)."""
    _require_admin(actor)
    if not isinstance(login, str) or not login.strip():
        raise invalid("login", "is required")
    with db.write() as conn:
        url_key = conn.execute(
            select(accounts.c.url_key).where(accounts.c.id == actor.account_id)
        ).scalar_one()
        subjects = _login_subjects(conn, actor.account_id, url_key, login)
        cleared = _remove(conn, actor.account_id, subjects, actor.user_id)
    if not cleared:
        raise not_found("sign-in lock", "login")
    return cleared


def operator_unlock(
    db: Database,
    *,
    account_url_key: str | None = None,
    login: str | None = None,
    address: str | None = None,
    client_id: str | None = None,
) -> int:
    """The command line's unlock: a login of an account, an address or an API client. Logins
    and clients are recorded in their account's audit trail; addresses belong to no account."""
    with db.write() as conn:
        if login is not None:
            if account_url_key is None:
                raise invalid("account_url", "is required with a login")
            account_id = _account_id(conn, account_url_key)
            subjects = _login_subjects(conn, account_id, account_url_key, login)
            cleared = _remove(conn, account_id, subjects, None)
        elif client_id is not None:
            owner = conn.execute(
                select(users.c.account_id)
                .join(api_keys, api_keys.c.user_id == users.c.id)
                .where(api_keys.c.client_id == client_id)
            ).scalar()
            subject = client_subject(client_id)
            if owner is not None:
                cleared = _remove(conn, str(owner), [subject], None)
            else:
                cleared = conn.execute(delete(signin_failures).where(_matching([subject]))).rowcount
        elif address is not None:
            subject = Subject(Scope.ADDRESS, _storable(address))
            cleared = conn.execute(delete(signin_failures).where(_matching([subject]))).rowcount
        else:
            raise invalid("login", "give a login (with its account), an address or a client id")
    if not cleared:
        raise not_found("sign-in lock")
    return int(cleared)
