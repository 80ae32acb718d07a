"""The counting rules of core.signin, on both databases: growing locks, the quiet window,
what a success clears, and subjects no column could hold as given."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from learndir.core import signin
from learndir.core.common import as_utc, utcnow
from learndir.core.errors import DomainError, ErrorCode
from learndir.core.origin import Interface, Origin, acting_from
from learndir.db.engine import Database
from learndir.db.schema import signin_failures


@pytest.fixture
def policy() -> Iterator[signin.SigninPolicy]:
    small = signin.SigninPolicy(
        login_threshold=2,
        address_threshold=4,
        first_lock_seconds=10,
        max_lock_seconds=40,
        window_seconds=300,
    )
    signin.configure(small)
    yield small
    signin.configure(signin.SigninPolicy())


def _row(db: Database, subject: signin.Subject) -> tuple[int, float | None] | None:
    """(failures, seconds locked from now) of `subject`, None without a count."""
    with db.read() as conn:
        row = conn.execute(
            select(signin_failures.c.failures, signin_failures.c.locked_until).where(
                signin_failures.c.scope == subject.scope.value,
                signin_failures.c.subject == subject.key,
            )
        ).first()
    if row is None:
        return None
    locked = row.locked_until
    return row.failures, (as_utc(locked) - utcnow()).total_seconds() if locked else None


def _login() -> signin.Subject:
    return signin.login_subject("acme.learn.test", f"user-{uuid.uuid4().hex[:8]}")


def test_locks_start_at_the_threshold_and_double_up_to_the_cap(
    db: Database, policy: signin.SigninPolicy
) -> None:
    subject = _login()
    signin.failed(db, [subject])
    assert _row(db, subject) == (1, None)
    assert signin.check(db, [subject]) == frozenset({subject})
    expected = [10, 20, 40, 40]
    for failures, seconds in enumerate(expected, start=2):
        signin.failed(db, [subject])
        count, locked_for = _row(db, subject) or (0, None)
        assert count == failures
        assert locked_for is not None and seconds - 2 < locked_for <= seconds
    with pytest.raises(DomainError) as refused:
        signin.check(db, [subject])
    assert refused.value.code is ErrorCode.TOO_MANY_ATTEMPTS
    assert refused.value.retry_after is not None and 38 <= refused.value.retry_after <= 40


def test_a_count_starts_again_after_a_quiet_window(
    db: Database, policy: signin.SigninPolicy
) -> None:
    subject = _login()
    signin.failed(db, [subject])
    signin.failed(db, [subject])
    long_ago = utcnow() - timedelta(seconds=policy.window_seconds + 1)
    with db.write() as conn:
        conn.execute(
            update(signin_failures)
            .where(signin_failures.c.subject == subject.key)
            .values(last_failed_at=long_ago, locked_until=long_ago)
        )
    signin.failed(db, [subject])
    assert _row(db, subject) == (1, None)


def test_a_success_clears_the_login_but_not_the_address(
    db: Database, policy: signin.SigninPolicy
) -> None:
    subject = _login()
    with acting_from(Origin(Interface.REST, client_address=f"10.0.{uuid.uuid4().int % 250}.1")):
        attempt = signin.with_address(subject)
        signin.failed(db, attempt)
        on_record = signin.check(db, attempt)
    assert len(on_record) == 2
    signin.succeeded(db, on_record)
    assert _row(db, subject) is None
    address = next(s for s in attempt if s.scope is signin.Scope.ADDRESS)
    assert _row(db, address) == (1, None)


@pytest.mark.parametrize("odd", ["a\x00b", "\ud800", "x" * 5000, "line\nbreak"])
def test_subjects_no_column_holds_are_counted_by_digest(
    db: Database, policy: signin.SigninPolicy, odd: str
) -> None:
    subject = signin.login_subject("acme.learn.test", odd + uuid.uuid4().hex)
    assert subject.key.startswith("sha256:")
    signin.failed(db, [subject])
    signin.failed(db, [subject])
    with pytest.raises(DomainError):
        signin.check(db, [subject])


def test_stale_counts_are_forgotten(db: Database, policy: signin.SigninPolicy) -> None:
    stale, recent = _login(), _login()
    signin.failed(db, [stale, recent])
    long_ago = utcnow() - timedelta(seconds=policy.window_seconds + 1)
    with db.write() as conn:
        conn.execute(
            update(signin_failures)
            .where(signin_failures.c.subject == stale.key)
            .values(last_failed_at=long_ago)
        )
    assert signin.forget_stale(db, policy.window_seconds) >= 1
    assert _row(db, stale) is None
    assert _row(db, recent) == (1, None)
