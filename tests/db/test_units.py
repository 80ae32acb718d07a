"""A request's unit of work (Database.run) starts its transaction as late as it can: on
PostgreSQL at its first statement that writes or locks, with deferred statements sent in one
pipeline with the COMMIT; on SQLite at its first write, after the writers' lock. What it must
still guarantee: all or nothing, a refusal changes nothing, reads see the request's own writes,
and locks are held until the end."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from sqlalchemy import (
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    event,
    insert,
    select,
    text,
)
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError

from learndir.api.execution import call_core
from learndir.db.engine import Database, defer_insert, defer_update

_metadata = MetaData()
rows = Table(
    "test_unit_rows",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(50), nullable=False, unique=True),
)
counter = Table(
    "test_unit_counter",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("used", Integer, nullable=False),
    Column("cap", Integer, nullable=False),
)
children = Table(
    "test_unit_children",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("row_id", Integer, ForeignKey("test_unit_rows.id"), nullable=False),
)
_TAKE = (
    sql_update(counter)
    .where(counter.c.id == bindparam("counter_id"), counter.c.used < counter.c.cap)
    .values(used=counter.c.used + 1)
)


class Refused(Exception):
    pass


@pytest.fixture
def tables(db: Database) -> Iterator[None]:
    _metadata.drop_all(db.engine)
    _metadata.create_all(db.engine)
    with db.write() as conn:
        conn.execute(insert(counter).values(id=1, used=0, cap=1))
    yield
    _metadata.drop_all(db.engine)


def _names(db: Database) -> list[str]:
    with db.read() as conn:
        return list(conn.execute(select(rows.c.name).order_by(rows.c.name)).scalars())


def _taken(exc: IntegrityError) -> Exception:
    return Refused(f"taken: {type(exc.orig).__name__}")


@pytest.fixture
def pipelines(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts the psycopg pipelines entered (PostgreSQL): the way a unit sends its waiting
    statements with BEGIN and COMMIT when they cannot go as one statement."""
    entered: list[str] = []
    original = psycopg.Connection.pipeline

    def counted(self: psycopg.Connection[object]) -> object:
        entered.append("pipeline")
        return original(self)

    monkeypatch.setattr(psycopg.Connection, "pipeline", counted)
    return entered


def test_deferred_rows_are_committed_and_seen_by_the_units_own_reads(
    db: Database, tables: None
) -> None:
    def work() -> list[str]:
        with db.write() as conn:
            defer_insert(conn, rows, [{"id": 1, "name": "anna"}, {"id": 2, "name": "bo"}])
            return list(conn.execute(select(rows.c.name).order_by(rows.c.name)).scalars())

    assert db.run(work, writes=True) == ["anna", "bo"]
    assert _names(db) == ["anna", "bo"]


def test_a_refused_deferred_row_is_reported_as_asked_and_nothing_stays(
    db: Database, tables: None
) -> None:
    with db.write() as conn:
        conn.execute(insert(rows).values(id=1, name="anna"))

    def work() -> None:
        with db.write() as conn:
            conn.execute(insert(rows).values(id=2, name="bo"))  # sent at once
            conn.execute(sql_update(counter).values(used=5))
            defer_insert(conn, rows, [{"id": 3, "name": "anna"}], on_integrity_error=_taken)

    with pytest.raises(Refused, match="taken"):
        db.run(work, writes=True)
    assert _names(db) == ["anna"]
    with db.read() as conn:
        assert conn.execute(select(counter.c.used)).scalar_one() == 0


def test_a_refusal_found_when_the_next_statement_is_sent_changes_nothing(
    db: Database, tables: None
) -> None:
    with db.write() as conn:
        conn.execute(insert(rows).values(id=1, name="anna"))
    reached: list[str] = []

    def work() -> None:
        with db.write() as conn:
            conn.execute(sql_update(counter).values(used=5))
            defer_insert(conn, rows, [{"id": 3, "name": "anna"}], on_integrity_error=_taken)
            conn.execute(select(rows.c.name)).all()  # the deferred row goes first, and fails
            reached.append("after the read")

    with pytest.raises(Refused, match="taken"):
        db.run(work, writes=True)
    assert reached == []
    assert _names(db) == ["anna"]
    with db.read() as conn:
        assert conn.execute(select(counter.c.used)).scalar_one() == 0
    # The pooled connection is usable afterwards.
    assert db.run(lambda: _names(db), writes=True) == ["anna"]


def test_an_error_after_deferring_sends_nothing(db: Database, tables: None) -> None:
    def work() -> None:
        with db.write() as conn:
            defer_insert(conn, rows, [{"id": 1, "name": "anna"}])
            raise Refused("changed my mind")

    with pytest.raises(Refused):
        db.run(work, writes=True)
    assert _names(db) == []


def test_a_deferred_update_must_change_its_rows_or_nothing_is_committed(
    db: Database, tables: None
) -> None:
    def add(name: str, row_id: int) -> None:
        with db.write() as conn:
            defer_insert(conn, rows, [{"id": row_id, "name": name}])
            defer_update(
                conn, _TAKE, {"counter_id": 1}, rowcount=1, otherwise=lambda: Refused("full")
            )

    db.run(lambda: add("anna", 1), writes=True)  # the cap is 1: the first one fits
    with pytest.raises(Refused, match="full"):
        db.run(lambda: add("bo", 2), writes=True)
    assert _names(db) == ["anna"]
    with db.read() as conn:
        assert conn.execute(select(counter.c.used)).scalar_one() == 1


def test_postgresql_reads_run_outside_a_transaction_until_a_statement_locks(
    db: Database, tables: None, backend: str
) -> None:
    if backend != "postgres":
        pytest.skip("SQLite's reads share one snapshot; see the next test")
    with db.write() as conn:
        conn.execute(insert(rows).values(id=1, name="anna"))
    same_instant = text("SELECT now() = statement_timestamp()")
    others = psycopg.connect(db.url.replace("postgresql+psycopg", "postgresql"), autocommit=True)

    def locked_elsewhere() -> bool:
        try:
            others.execute("SELECT 1 FROM test_unit_rows WHERE id = 1 FOR UPDATE NOWAIT")
        except psycopg.errors.LockNotAvailable:
            return True
        return False

    def work() -> tuple[bool, bool, bool]:
        with db.write() as conn:
            conn.execute(select(rows.c.name))
            time.sleep(0.02)
            # Each plain SELECT is a transaction of its own: now() is its own start.
            before = bool(conn.execute(same_instant).scalar_one())
            conn.execute(select(rows.c.id).where(rows.c.id == 1).with_for_update())
            time.sleep(0.02)
            # The locking SELECT began the transaction: now() stays at its start.
            after = bool(conn.execute(same_instant).scalar_one())
            return before, after, locked_elsewhere()

    try:
        assert db.run(work, writes=True) == (True, False, True)
        assert not locked_elsewhere()  # the lock ended with the unit
    finally:
        others.close()


def test_sqlite_takes_the_writers_lock_at_the_first_write(
    db: Database, tables: None, backend: str
) -> None:
    if backend != "sqlite":
        pytest.skip("PostgreSQL has no writers' lock")
    phase = threading.Event()
    proceed = threading.Event()
    finished: list[str] = []

    def other_writer(name: str, row_id: int) -> None:
        with db.write() as conn:
            conn.execute(insert(rows).values(id=row_id, name=name))
        finished.append(name)

    def work() -> None:
        with db.read() as conn:
            conn.execute(select(rows.c.name)).all()
        # Reading only: another writer gets its turn and commits meanwhile.
        writer = threading.Thread(target=other_writer, args=("bo", 2))
        writer.start()
        writer.join(timeout=10)
        assert finished == ["bo"]
        # A write outside a write() block takes the lock all the same.
        with db.read() as conn:
            conn.execute(insert(rows).values(id=1, name="anna"))
        phase.set()
        proceed.wait(timeout=10)

    waiting = threading.Thread(target=other_writer, args=("cy", 3))
    while_the_unit_writes: list[str] = []

    def start_waiting_writer() -> None:
        phase.wait(timeout=10)
        waiting.start()
        time.sleep(0.2)
        # It waits for the unit, which holds the lock until it ends.
        while_the_unit_writes.extend(finished)
        proceed.set()

    helper = threading.Thread(target=start_waiting_writer)
    helper.start()
    db.run(work, writes=True)
    helper.join(timeout=10)
    waiting.join(timeout=10)
    assert while_the_unit_writes == ["bo"]
    assert finished == ["bo", "cy"]
    assert _names(db) == ["anna", "bo", "cy"]


def test_postgresql_sends_a_units_waiting_writes_as_one_statement(
    db: Database, tables: None, backend: str, pipelines: list[str]
) -> None:
    """Nothing began the transaction: the inserts (a child row pointing at its new parent among
    them) and the counted update go as one statement, without BEGIN or COMMIT."""
    if backend != "postgres":
        pytest.skip("SQLite writes in its own transaction")

    def work() -> None:
        with db.write() as conn:
            defer_insert(conn, rows, [{"id": 1, "name": "anna"}, {"id": 2, "name": "bo"}])
            defer_insert(conn, children, [{"id": 10, "row_id": 2}])
            defer_update(
                conn, _TAKE, {"counter_id": 1}, rowcount=1, otherwise=lambda: Refused("full")
            )

    db.run(work, writes=True)
    assert pipelines == []
    assert _names(db) == ["anna", "bo"]
    with db.read() as conn:
        assert conn.execute(select(children.c.row_id)).scalar_one() == 2
        assert conn.execute(select(counter.c.used)).scalar_one() == 1


def test_a_row_pointing_nowhere_refuses_the_whole_unit(db: Database, tables: None) -> None:
    def work() -> None:
        with db.write() as conn:
            defer_insert(conn, rows, [{"id": 1, "name": "anna"}])
            defer_insert(conn, children, [{"id": 10, "row_id": 99}], on_integrity_error=_taken)

    with pytest.raises(Refused, match=r"taken: (ForeignKeyViolation|IntegrityError)"):
        db.run(work, writes=True)
    assert _names(db) == []


def test_a_taken_value_is_named_before_a_refused_row_count(
    db: Database, tables: None, backend: str, pipelines: list[str]
) -> None:
    """The counter is full and the name is taken: the insert comes first, so the refusal is
    the taken name. On PostgreSQL the one statement runs the insert before the counter's UPDATE;
    a refused count alone sends the writes again through the pipeline, which names it."""

    def add(name: str, row_id: int) -> None:
        with db.write() as conn:
            defer_insert(conn, rows, [{"id": row_id, "name": name}], on_integrity_error=_taken)
            defer_update(
                conn, _TAKE, {"counter_id": 1}, rowcount=1, otherwise=lambda: Refused("full")
            )

    db.run(lambda: add("anna", 1), writes=True)
    assert pipelines == []
    with pytest.raises(Refused, match="taken"):
        db.run(lambda: add("anna", 2), writes=True)
    with pytest.raises(Refused, match="full"):
        db.run(lambda: add("bo", 3), writes=True)
    assert _names(db) == ["anna"]
    with db.read() as conn:
        assert conn.execute(select(counter.c.used)).scalar_one() == 1
    if backend == "postgres":
        assert pipelines == ["pipeline"]


def test_sqlite_write_checked_by_writes_takes_the_lock_when_its_writes_are_sent(
    db: Database, tables: None, backend: str
) -> None:
    """`write(checked_by_writes=True)`: the writers' lock waits for the first write, and a
    deferred write waits for the next statement or the commit (the lock then holds only the
    writes); a plain write() takes the lock at once."""
    if backend != "sqlite":
        pytest.skip("PostgreSQL has no writers' lock")
    held: list[tuple[str, bool]] = []

    def work() -> None:
        with db.write(checked_by_writes=True) as conn:
            conn.execute(select(rows.c.name)).all()
            held.append(("after a read", db._write_lock.locked()))
            defer_insert(conn, rows, [{"id": 1, "name": "anna"}])
            defer_update(
                conn, _TAKE, {"counter_id": 1}, rowcount=1, otherwise=lambda: Refused("full")
            )
            held.append(("after deferring", db._write_lock.locked()))
            # The next statement, a read, sends the waiting writes first: it sees them.
            assert conn.execute(select(rows.c.name)).scalars().all() == ["anna"]
            held.append(("after the next statement", db._write_lock.locked()))

    db.run(work, writes=True)
    assert held == [
        ("after a read", False),
        ("after deferring", False),
        ("after the next statement", True),
    ]
    assert not db._write_lock.locked()
    assert _names(db) == ["anna"]

    def plain() -> bool:
        with db.write():
            return db._write_lock.locked()

    assert db.run(plain, writes=True) is True


def _as_requests(db: Database, *works: Callable[[], object]) -> list[object]:
    """Each of `works` run as a request of one server process (api.execution.call_core, no
    password) all at once on one event loop: their outcomes, a result or the exception. The
    loop runs in a thread of its own: another test of this process may have left one running
    in this thread."""

    async def all_of_them() -> list[object]:
        calls = (
            call_core(db, functools.partial(db.run, work, writes=True), may_hash=False)
            for work in works
        )
        return await asyncio.gather(*calls, return_exceptions=True)

    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, all_of_them()).result(timeout=60)


def _counting_commits(
    db: Database, *works: Callable[[], object]
) -> tuple[list[object], list[object]]:
    """_as_requests, and the commits the database's engine saw meanwhile."""
    commits: list[object] = []
    counted = commits.append
    event.listen(db.engine, "commit", counted)
    try:
        return _as_requests(db, *works), commits
    finally:
        event.remove(db.engine, "commit", counted)


def test_requests_on_one_loop_commit_together_and_a_refusal_fails_only_its_own(
    db: Database, tables: None, backend: str
) -> None:
    """Four requests at once in one process, each adding a row and taking one of the
    counter's 2 places: the first two are committed; the third's name is taken by the first
    (told as its own refusal says, reading on its own connection); the fourth finds no place
    left. The writes that waited to the end go in one group commit: one transaction for the
    process's requests whose work ended in the same turn of its event loop. SQLite then
    commits the group with a savepoint per request (one COMMIT); PostgreSQL's refused
    transaction leaves nothing, and each request's writes go again on their own (the two
    admitted: two COMMITs)."""
    with db.write() as conn:
        conn.execute(sql_update(counter).values(cap=2))

    def add(row_id: int, name: str) -> Callable[[], int]:
        def work() -> int:
            with db.write(checked_by_writes=True) as conn:

                def taken(_exc: IntegrityError) -> Exception:
                    holder = conn.execute(select(rows.c.id).where(rows.c.name == name))
                    return Refused(f"{name} is taken by {holder.scalar_one()}")

                defer_insert(conn, rows, [{"id": row_id, "name": name}], on_integrity_error=taken)
                defer_update(
                    conn, _TAKE, {"counter_id": 1}, rowcount=1, otherwise=lambda: Refused("full")
                )
            return row_id

        return work

    outcomes, commits = _counting_commits(
        db, add(1, "anna"), add(2, "bo"), add(3, "anna"), add(4, "cy")
    )
    assert outcomes[:2] == [1, 2]
    assert [str(o) for o in outcomes[2:]] == ["anna is taken by 1", "full"]
    assert all(isinstance(o, Refused) for o in outcomes[2:])
    assert _names(db) == ["anna", "bo"]
    with db.read() as conn:
        assert conn.execute(select(counter.c.used)).scalar_one() == 2
    assert len(commits) == (1 if backend == "sqlite" else 2)


def test_requests_on_one_loop_that_are_all_admitted_commit_once(db: Database, tables: None) -> None:
    """Three requests at once in one process whose writes all waited to the end: one
    transaction and one COMMIT for the three, on either database, and every row is there."""
    with db.write() as conn:
        conn.execute(sql_update(counter).values(cap=3))

    def add(row_id: int, name: str) -> Callable[[], int]:
        def work() -> int:
            with db.write(checked_by_writes=True) as conn:
                defer_insert(conn, rows, [{"id": row_id, "name": name}], on_integrity_error=_taken)
                defer_update(
                    conn, _TAKE, {"counter_id": 1}, rowcount=1, otherwise=lambda: Refused("full")
                )
            return row_id

        return work

    outcomes, commits = _counting_commits(db, add(1, "anna"), add(2, "bo"), add(3, "cy"))
    assert outcomes == [1, 2, 3]
    assert _names(db) == ["anna", "bo", "cy"]
    with db.read() as conn:
        assert conn.execute(select(counter.c.used)).scalar_one() == 3
    assert len(commits) == 1


def test_a_request_that_takes_the_writers_turn_itself_commits_on_its_own(
    db: Database, tables: None, backend: str
) -> None:
    """A request whose writes did not all wait to the end (a write() that needs the latest
    rows, here a plain one) holds the writers' turn and commits as before, beside a request
    that waited: both are committed, in two transactions. (On PostgreSQL: a request whose
    transaction began before its end.)"""

    def waited() -> None:
        with db.write(checked_by_writes=True) as conn:
            defer_insert(conn, rows, [{"id": 1, "name": "anna"}])

    def plain() -> None:
        with db.write() as conn:
            conn.execute(insert(rows).values(id=2, name="bo"))

    outcomes, commits = _counting_commits(db, waited, plain)
    assert outcomes == [None, None]
    assert _names(db) == ["anna", "bo"]
    assert len(commits) == 2
