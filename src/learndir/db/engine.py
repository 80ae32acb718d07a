"""Engines and the unit of work.

One transaction per request or command: `Database.write()` yields a connection inside a
transaction that commits when the block ends and rolls back on any error, so a rejected request
changes nothing. Repositories execute statements on that connection and never commit.

A request runs in `Database.run()`: every read() and write() inside it shares one connection.
A request that changes something starts its transaction as late as it can, so that what only
reads (authentication, parsing, the checks of a plain SELECT) neither holds the writers' lock
nor costs a round trip of its own:

- On PostgreSQL its statements run one by one (each under READ COMMITTED, exactly what they
  would see inside a transaction) until the first that writes or locks: BEGIN goes before that
  one, and COMMIT at the end. Statements whose results nobody reads (`defer_insert`: a new
  user's rows, the audit record; `defer_update`: the seat counter) wait and go with the next
  statement or with the COMMIT, in one round trip (psycopg's pipeline mode). When nothing
  began the transaction before the end, they go as ONE statement instead (data-modifying WITH
  queries, atomic on its own: no BEGIN, no COMMIT, prepared like any statement): addUser is
  three round trips, not seven, and its writes one statement, not five.
- On SQLite its reads share one snapshot until the request's first write (a write() block, or
  any statement but a SELECT): the transaction that writes starts there, after the writers'
  lock (see below), and everything from there on is serialised with every other writer. A
  request that hashes a password runs without a unit: its write() takes the lock after the hash.
  Deferred statements wait here too, built and converted already, and go in the writers' turn
  with the next statement or the commit; with `write(checked_by_writes=True)` (addUser, whose
  checks the unique indexes, foreign keys and the seat counter's guarded update hold again, as
  on PostgreSQL) the turn waits for them, so it holds the inserts and the commit instead
  of the whole request (measured in-process: 0.38 ms held per addUser before, 0.18 after).
- On SQLite, a request on the server's event loop whose writes all waited to its end gives its
  connection back and joins the process's next group commit (`_join_group`): the requests
  whose work ended in the same turn of the loop share one writers' turn, one transaction and
  one COMMIT, and each is answered once the COMMIT is done. A refusal of one request's writes
  (a constraint, the seat counter) fails that request alone: the group goes again with a
  savepoint per request, and a request refused by a constraint runs again on its own and is
  refused as it would have been (`_RunAlone`). One COMMIT writes a page that several requests
  changed once, not once each, and the other processes re-read it once (addUser at 32
  clients, 2 processes: see docs/benchmarks.md).

- On PostgreSQL likewise, a request on the event loop whose writes all waited to its end (no
  statement began its transaction) gives its connection back and joins the process's next
  group commit (`_join_pg_group`): one committer per process sends the groups one after the
  other, each in one transaction and one round trip (BEGIN, each request's writes as one
  statement, COMMIT), and the requests that reach their end while one is sent make up the
  next. A seat-limited account's counter row is then locked once per group, not once per
  request (its lock lasts until the COMMIT is on disk). If PostgreSQL refuses the
  transaction, nothing of it stays, and each request's writes go again on their own.

No PostgreSQL connection is pinged on checkout; one found dead before anything was committed
makes the request run again, once, on a fresh connection.

A PostgreSQL request run by `api.execution.call_core` runs in a greenlet of its own on the
server's event loop: its statements are the same synchronous calls, but while one waits for
PostgreSQL's answer the loop serves the process's other requests (`_LoopWaitingConnection`), and
a checkout from an exhausted pool waits the same way (`_LoopSharingPool`) instead of blocking
the thread that the connections' holders need in order to finish. Outside such a greenlet (the
delivery worker's thread, the CLI, the thread pool) both behave as before.

SQLite writers take the database lock at the start of the transaction (BEGIN IMMEDIATE). Inside
one process they queue on a lock first, and across processes on an advisory file lock, so
concurrent writers wait in line instead of sleeping in SQLite's busy handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fcntl
import functools
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
import psycopg.waiting
from psycopg.abc import PQGen
from sqlalchemy import Connection, Engine, Table, Update, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.pool import ConnectionPoolEntry, NullPool, QueuePool
from sqlalchemy.util.concurrency import await_, greenlet_spawn, in_greenlet

from learndir.db.bulk import insert_many, sqlite_execute, sqlite_insert

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class _Deferred:
    """A statement waiting to be sent: its SQL in the driver's format, its rows of parameters
    (PostgreSQL: dicts for named placeholders; SQLite: tuples, converted already), what a
    violated constraint of its table means to the caller, and the row count it must have (else
    `otherwise()` is raised and nothing is committed)."""

    table: str
    sql: str
    rows: list[Any]
    on_integrity_error: Callable[[IntegrityError], Exception] | None
    rowcount: int | None = None
    otherwise: Callable[[], Exception] | None = None


@dataclass
class _Unit:
    """The connection one request runs on, and where its transaction stands."""

    db: Database
    conn: Connection
    writes: bool
    committing: bool = False
    # PostgreSQL: BEGIN sent. Both: the writes waiting for the next statement or the commit.
    begun: bool = False
    pending: list[_Deferred] = field(default_factory=list)
    # SQLite: the open transaction (a read snapshot, then the write), the writers' lock held.
    transaction: Any = None
    locked: contextlib.ExitStack | None = None
    # What one statement of the request read for a later one (see unit_memo).
    memo: dict[str, Any] = field(default_factory=dict)


_unit: ContextVar[_Unit | None] = ContextVar("learndir_unit_of_work", default=None)
# Whether a request on the event loop may commit in a group (see Database._join_group and
# _join_pg_group); not when it runs again alone (_RunAlone).
_grouping: ContextVar[bool] = ContextVar("learndir_grouping", default=True)


class _Refused(Exception):
    """A group commit's writes were refused for one request (`outcome`: what it is told)."""

    def __init__(self, outcome: Exception) -> None:
        super().__init__(str(outcome))
        self.outcome = outcome


class _RunAlone(Exception):
    """A group commit refused one request's writes by a constraint (a login taken meanwhile):
    the request runs again on its own (Database.run). Telling why may need reads on the
    request's own connection, given back before the group committed."""


def unit_memo(conn: Connection) -> dict[str, Any] | None:
    """The request's own memo when `conn` is the connection of the request's unit of work
    (Database.run), else None: a statement can read ahead for a later one of the same request
    (addUser's departments with the caller's token) and leave the rows there. It ends with the
    unit."""
    unit = _unit.get()
    return unit.memo if unit is not None and unit.conn is conn else None


def normalize_database_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and pick the psycopg 3 driver for them."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


class Database:
    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = normalize_database_url(url)
        parsed = make_url(self.url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self.pool_size = pool_size
        self._write_lock = threading.Lock()
        self._lock_file: Any = None
        self._checkpointer: _Checkpointer | None = None
        # SQLite: the requests waiting for each event loop's next group commit.
        self._groups: dict[
            asyncio.AbstractEventLoop, list[tuple[list[_Deferred], asyncio.Future[None]]]
        ] = {}
        # PostgreSQL: the event loops whose group committer runs (see _join_pg_group).
        self._committers: set[asyncio.AbstractEventLoop] = set()
        self._committer_tasks: set[asyncio.Task[None]] = set()
        if self.is_sqlite:
            self.engine = self._sqlite_engine(parsed.database or "")
        else:
            # As many connections as threads that use them, kept open: opening one costs
            # PostgreSQL milliseconds of CPU. A few more for background threads (the scheduler)
            # are opened when needed. No ping on checkout: see run().
            self.engine = create_engine(
                self.url,
                poolclass=_LoopSharingPool,
                pool_size=pool_size,
                max_overflow=4,
                pool_pre_ping=False,
                hide_parameters=True,
                # Requests wait for PostgreSQL in their process's event loop: an unreachable
                # server must fail them, not hold the process indefinitely.
                connect_args={"connect_timeout": 10},
            )
            event.listen(self.engine, "before_cursor_execute", _before_statement)
            event.listen(self.engine, "do_connect", _connect_waiting_in_loop)

    def _sqlite_engine(self, path: str) -> Engine:
        if not path or path == ":memory:":
            raise ValueError("learndir needs a SQLite database file, not an in-memory database")
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        self._database_path = os.path.abspath(path)
        self._lock_path = self._database_path + ".write-lock"
        engine = create_engine(
            self.url,
            connect_args={"check_same_thread": False, "timeout": 30},
            # Bound values (password and token hashes) never reach exception text or logs.
            hide_parameters=True,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event below decide how each transaction starts.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            # Checkpoints (and their fsyncs) run in the background checkpointer, not in
            # whichever request happens to commit the thousandth page.
            cursor.execute("PRAGMA wal_autocheckpoint=0")
            # Paging through a large directory reads rows in id order, which is random on disk:
            # a 64 MiB page cache per connection and memory-mapped reads (shared with the OS page
            # cache) keep those reads off the read() system call.
            cursor.execute("PRAGMA cache_size=-65536")
            cursor.execute("PRAGMA mmap_size=268435456")
            # A savepoint's copies of the pages it changes (a group commit's, see _send_group)
            # in memory, not in a temporary file opened and written for each.
            cursor.execute("PRAGMA temp_store=MEMORY")
            cursor.close()

        @event.listens_for(engine, "before_cursor_execute")
        def _before_sqlite_statement(
            conn: Connection, _cursor: Any, statement: str, *_args: Any, **_kwargs: Any
        ) -> None:
            # Whatever writes in a request that writes does so in the write transaction, even
            # outside a write() block.
            unit = _writing_unit(conn)
            if unit is None:
                return
            if unit.pending:
                self._sqlite_send_pending(unit)
            elif unit.locked is None and not _reads_only(statement):
                self._sqlite_take_turn(unit)

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            mode = conn.get_execution_options().get("learndir_write")
            # Straight to the driver: SQLAlchemy keeps no state about this statement.
            raw: Any = conn.connection.driver_connection
            raw.execute("BEGIN IMMEDIATE" if mode else "BEGIN")

        return engine

    def _start_checkpointer(self) -> None:
        with self._write_lock:
            if self._checkpointer is not None:
                return
            self._checkpointer = _Checkpointer(self._database_path, self._sqlite_writer_turn)
            self._checkpointer.start()

    @contextlib.contextmanager
    def _sqlite_writer_turn(self) -> Iterator[None]:
        with self._write_lock:
            if self._lock_file is None:
                self._lock_file = open(self._lock_path, "a+b")  # noqa: SIM115
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)

    def run(self, work: Callable[[], T], *, writes: bool, hashes: bool = False) -> T:
        """`work` as one request's unit of work: its reads and writes share one connection, and
        with `writes` one transaction, committed when `work` returns and rolled back if it
        raises. On PostgreSQL a connection that turns out dead before the commit began runs
        `work` again, once, on a fresh one (the dead transaction changed nothing). On SQLite a
        request that `hashes` a password runs without one: its own write() takes the writers'
        lock only after the hash; a request on the event loop may commit in a group (see
        _join_group), and one whose writes the group refused runs again on its own."""
        if _unit.get() is not None or (self.is_sqlite and hashes):
            return work()
        for attempt in (1, 2):
            unit: _Unit | None = None
            try:
                with self._unit_of_work(writes) as unit:
                    return work()
            except _RunAlone:
                # SQLite: a constraint refused this request's writes in a group commit (and
                # they were rolled back). On its own, its checks or its writes now meet what
                # refused them, and tell the caller why as they would have in the first place.
                token = _grouping.set(False)
                try:
                    with self._unit_of_work(writes):
                        return work()
                finally:
                    _grouping.reset(token)
            except DBAPIError as exc:
                committing = unit is not None and unit.committing
                if attempt == 2 or not exc.connection_invalidated or committing:
                    raise
                logger.warning("a pooled database connection was dead; running the request again")
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def _unit_of_work(self, writes: bool) -> Iterator[_Unit]:
        if self.is_sqlite:
            with self._sqlite_unit(writes) as unit:
                yield unit
            return
        grouped: list[_Deferred] | None = None
        with self.engine.connect() as conn:
            # Statement by statement until one writes or locks (see _before_statement).
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            unit = _Unit(self, conn, writes)
            token = _unit.set(unit)
            try:
                if not writes:
                    yield unit
                    return
                try:
                    yield unit
                except BaseException:
                    unit.pending.clear()
                    _rollback(conn)
                    raise
                unit.committing = True
                if unit.pending and not unit.begun and in_greenlet() and _grouping.get():
                    # Nothing began its transaction: its writes join the process's next group
                    # commit, once the connection is back in the pool (see _join_pg_group).
                    grouped, unit.pending = unit.pending, []
                else:
                    try:
                        began = _send_pending(unit, commit=True)
                    except BaseException:
                        _rollback(conn)
                        raise
                    # SQLAlchemy's transaction ends too (the driver has nothing left to commit),
                    # and what listens for commits (the delivery worker's wake-up) hears this
                    # one.
                    if conn.in_transaction():
                        conn.commit()
                    elif began:
                        conn.dispatch.commit(conn)
            finally:
                _unit.reset(token)
        if grouped is not None:
            # A refusal of this request's writes is raised here (one by a constraint through
            # _RunAlone, see Database.run), as _send_pending would have raised it above.
            await_(self._join_pg_group(grouped))

    @contextlib.contextmanager
    def _sqlite_unit(self, writes: bool) -> Iterator[_Unit]:
        """A read snapshot; with `writes`, the write transaction from the first write() on.
        A request on the event loop (in a greenlet, see api.execution) whose writes all waited
        to the end (nothing took the writers' turn before) commits them in the process's next
        group commit (see _join_group), after giving its connection back."""
        grouped: list[_Deferred] | None = None
        with self.engine.connect() as conn:
            unit = _Unit(self, conn, writes, transaction=conn.begin())
            token = _unit.set(unit)
            try:
                yield unit
                if unit.pending and unit.locked is None and in_greenlet() and _grouping.get():
                    grouped, unit.pending = unit.pending, []
                if unit.pending:
                    self._sqlite_send_pending(unit)
                if unit.locked is not None:
                    unit.committing = True
                    unit.transaction.commit()
                else:
                    unit.transaction.rollback()
            except BaseException:
                unit.transaction.rollback()
                raise
            finally:
                _unit.reset(token)
                if unit.locked is not None:
                    unit.locked.close()
        if grouped is not None:
            # A violated rule of this request's writes is raised here, as it would be by
            # _sqlite_send_pending above (a refused insert by run(), see _RunAlone).
            await_(self._join_group(grouped))

    def _join_group(self, items: list[_Deferred]) -> asyncio.Future[None]:
        """The future of `items` in the event loop's next group commit, which runs once the loop
        has run the callbacks ready now (every request whose work reached its end meanwhile
        joins it): one writers' turn, one transaction and one COMMIT for all of them. A
        violated rule fails that request alone and it learns why (see _send_group, _RunAlone);
        the others are committed. If the transaction itself fails, every request of the group
        fails with that error."""
        loop = asyncio.get_running_loop()
        group = self._groups.get(loop)
        if group is None:
            group = self._groups[loop] = []
            loop.call_soon(self._commit_group, loop, context=contextvars.Context())
        future: asyncio.Future[None] = loop.create_future()
        group.append((items, future))
        return future

    def _commit_group(self, loop: asyncio.AbstractEventLoop) -> None:
        members = self._groups.pop(loop)
        try:
            try:
                outcomes = self._send_group(members, apart=False)
            except _Refused as refused:
                # Rolled back. A request alone has its answer; a group goes again with a
                # savepoint per request (only now: a savepoint copies each page it changes).
                if len(members) == 1:
                    outcomes = [refused.outcome]
                else:
                    outcomes = self._send_group(members, apart=True)
        except BaseException as exc:
            _fail(members, exc)
            return
        _settle(members, outcomes)

    def _send_group(
        self, members: list[tuple[list[_Deferred], asyncio.Future[None]]], *, apart: bool
    ) -> list[Exception | None]:
        """The members' writes in one transaction, committed: what each member's came to (None,
        or the exception to raise in the request). Not `apart`, the first refusal raises
        _Refused and nothing is committed; `apart`, each member's writes go in a savepoint,
        rolled back if refused."""
        outcomes: list[Exception | None] = []
        with self._sqlite_write() as conn:
            raw: Any = conn.connection.driver_connection
            for items, _future in members:
                if apart:
                    raw.execute("SAVEPOINT member")
                try:
                    self._sqlite_send_items(conn, items, tell=False)
                except Exception as exc:
                    outcome = _RunAlone() if isinstance(exc, IntegrityError) else exc
                    if not apart:
                        raise _Refused(outcome) from exc
                    raw.execute("ROLLBACK TO member")
                    outcomes.append(outcome)
                else:
                    outcomes.append(None)
                if apart:
                    raw.execute("RELEASE member")
        return outcomes

    def _join_pg_group(self, items: list[_Deferred]) -> asyncio.Future[None]:
        """PostgreSQL: the future of `items` (a request's writes, none sent yet) in the event
        loop's next group commit. One committer per loop sends the groups one after the other,
        each on a connection of its own: every request whose writes reached their end while
        the last group was sent (or in the same turn of the loop) goes in the next, all in one
        transaction (BEGIN, each request's writes as one statement, COMMIT, in one round trip).
        A request is answered once the COMMIT is done. If the transaction is refused (a
        constraint, the seat counter), each request's writes go again on their own and each
        learns its own outcome (one refused by a constraint runs again alone, see _RunAlone).
        One transaction holds the seat counter's row lock once for the whole group, not once
        per request."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._groups.setdefault(loop, []).append((items, future))
        if loop not in self._committers:
            self._committers.add(loop)
            task = loop.create_task(
                greenlet_spawn(self._pg_commit_groups, loop), context=contextvars.Context()
            )
            self._committer_tasks.add(task)
            task.add_done_callback(self._committer_tasks.discard)
        return future

    def _pg_commit_groups(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop's committer: sends the waiting group, then the one that gathered
        meanwhile, until none is waiting."""
        try:
            while True:
                members = self._groups.pop(loop, None)
                if not members:
                    return
                self._pg_commit_group(members)
        finally:
            # Members that joined after an exception stopped this committer start the next.
            self._committers.discard(loop)

    def _pg_commit_group(self, members: list[tuple[list[_Deferred], asyncio.Future[None]]]) -> None:
        outcomes: list[Exception | None]
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                if len(members) == 1:
                    outcomes = [self._pg_send_alone(conn, members[0][0])]
                elif self._pg_send_together(conn, [items for items, _future in members]):
                    outcomes = [None] * len(members)
                else:
                    outcomes = [self._pg_send_alone(conn, items) for items, _future in members]
        except BaseException as exc:
            _fail(members, exc)
            return
        _settle(members, outcomes)

    def _pg_send_together(self, conn: Connection, groups: list[list[_Deferred]]) -> bool:
        """Every request's writes in one transaction, committed: True. False when PostgreSQL
        refused the transaction (rolled back; nothing of it stays). A connection that failed
        raises, as any statement's would."""
        raw = _raw(conn)
        statements = [_as_one(items) for items in groups]
        try:
            with raw.pipeline():
                raw.execute("BEGIN", prepare=False)
                for sql, params in statements:
                    raw.execute(sql, params)
                raw.execute("COMMIT", prepare=False)
        except psycopg.Error as exc:
            if raw.closed or raw.info.transaction_status == psycopg.pq.TransactionStatus.UNKNOWN:
                conn.invalidate()
                raise DBAPIError("COMMIT", None, exc) from None
            _rollback(conn)
            return False
        conn.dispatch.commit(conn)
        return True

    def _pg_send_alone(self, conn: Connection, items: list[_Deferred]) -> Exception | None:
        """One request's writes on their own, as its unit of work would have sent them: None,
        or what refused them (_RunAlone for a constraint: telling why may read on the request's
        connection, which went back to the pool). A connection that failed raises."""
        unit = _Unit(self, conn, True, committing=True, pending=list(items))
        try:
            began = _send_pending(unit, commit=True, tell=False)
        except DBAPIError:
            _rollback(conn)
            raise
        except Exception as exc:
            _rollback(conn)
            return exc
        if began:
            conn.dispatch.commit(conn)
        return None

    def _sqlite_take_turn(self, unit: _Unit) -> None:
        """Ends the unit's read snapshot and starts its write transaction, after the other
        writers (BEGIN IMMEDIATE, see _sqlite_writer_turn). Straight on the driver's connection:
        SQLAlchemy's transaction stays the one that began the unit, and its commit commits this
        one (the driver commits whatever transaction is open)."""
        if self._checkpointer is None:
            self._start_checkpointer()
        raw: Any = unit.conn.connection.driver_connection
        raw.execute("ROLLBACK")
        unit.locked = contextlib.ExitStack()
        unit.locked.enter_context(self._sqlite_writer_turn())
        try:
            raw.execute("BEGIN IMMEDIATE")
        except BaseException:
            unit.locked.close()
            unit.locked = None
            raise

    def _sqlite_send_pending(self, unit: _Unit) -> None:
        """The unit's waiting writes, in the writers' turn (taken now if it was not): the turn
        lasts from here to the commit, not from the request's first write (see defer_insert)."""
        items, unit.pending = unit.pending, []
        if unit.locked is None:
            self._sqlite_take_turn(unit)
        self._sqlite_send_items(unit.conn, items)

    @staticmethod
    def _sqlite_send_items(conn: Connection, items: list[_Deferred], *, tell: bool = True) -> None:
        """`items` in `conn`'s write transaction. A violated constraint is told as the item
        says (`on_integrity_error`, which may read on the request's connection), unless not
        `tell`: then the IntegrityError itself is raised."""
        for item in items:
            try:
                count = sqlite_execute(conn, item.sql, item.rows)
            except IntegrityError as exc:
                if item.on_integrity_error is None or not tell:
                    raise
                raise item.on_integrity_error(exc) from None
            if item.rowcount is not None and count != item.rowcount and item.otherwise:
                raise item.otherwise()

    def _current_unit(self) -> _Unit | None:
        unit = _unit.get()
        return unit if unit is not None and unit.db is self else None

    @contextlib.contextmanager
    def write(self, *, checked_by_writes: bool = False) -> Iterator[Connection]:
        """A read-write transaction: commits on success, rolls back on any exception. Inside a
        request that writes (run()), the request's own transaction; on SQLite its reads then
        see the latest commits (the writers' turn is taken here), unless `checked_by_writes`:
        the caller's writes hold every rule it read to check (unique indexes, foreign keys,
        guarded updates), as on PostgreSQL, and the turn waits for the first write."""
        unit = self._current_unit()
        if unit is not None and unit.writes:
            if self.is_sqlite and unit.locked is None and not checked_by_writes:
                self._sqlite_take_turn(unit)
            yield unit.conn
            return
        with self._own_write() as conn:
            yield conn

    @contextlib.contextmanager
    def write_apart(self) -> Iterator[Connection]:
        """A transaction of its own, committed when the block ends even if the request around
        it then fails: for what a rejected request must leave behind (a failed sign-in's count).
        Not inside a request's SQLite write transaction: it would wait for itself."""
        unit = self._current_unit()
        if self.is_sqlite and unit is not None and unit.locked is not None:
            raise RuntimeError("write_apart() inside a SQLite write transaction would deadlock")
        with self._own_write() as conn:
            yield conn

    @contextlib.contextmanager
    def _own_write(self) -> Iterator[Connection]:
        if self.is_sqlite:
            with self._sqlite_write() as conn:
                yield conn
            return
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def _sqlite_write(self) -> Iterator[Connection]:
        """BEGIN IMMEDIATE, after this process's and the other processes' writers (see
        _sqlite_writer_turn)."""
        if self._checkpointer is None:
            self._start_checkpointer()
        with self._sqlite_writer_turn(), self.engine.connect() as conn:
            conn = conn.execution_options(learndir_write=True)
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def _sqlite_read(self) -> Iterator[Connection]:
        """A read transaction, always rolled back: every statement sees one snapshot."""
        with self.engine.connect() as conn:
            trans = conn.begin()
            try:
                yield conn
            finally:
                trans.rollback()

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reading. On SQLite a transaction, always rolled back, so that every
        statement sees one snapshot. On PostgreSQL each statement runs on its own (autocommit):
        under READ COMMITTED a transaction gives no common snapshot anyway, and skipping BEGIN
        and ROLLBACK saves two round trips per read (a lookup by login, in-process: 4.9 -> 3.0
        ms). Inside a request (run()), the request's own connection."""
        unit = self._current_unit()
        if unit is not None:
            yield unit.conn
            return
        if self.is_sqlite:
            with self._sqlite_read() as conn:
                yield conn
            return
        with self.engine.connect() as conn:
            yield conn.execution_options(isolation_level="AUTOCOMMIT")

    def dispose(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        self.engine.dispose()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


def _settle(
    members: list[tuple[list[_Deferred], asyncio.Future[None]]],
    outcomes: Sequence[BaseException | None],
) -> None:
    """Tells each member of a group commit what its writes came to (None: committed)."""
    for (_items, future), outcome in zip(members, outcomes, strict=True):
        if future.done():  # the request was cancelled (its writes stand, as after a commit)
            continue
        if outcome is None:
            future.set_result(None)
        else:
            future.set_exception(outcome)


def _fail(members: list[tuple[list[_Deferred], asyncio.Future[None]]], exc: BaseException) -> None:
    """Fails every member of a group commit whose commit failed with `exc` (re-raised when it
    is no Exception: the process is stopping)."""
    _settle(members, [exc] * len(members))
    if not isinstance(exc, Exception):
        raise exc


def defer_insert(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    on_integrity_error: Callable[[IntegrityError], Exception] | None = None,
) -> None:
    """Inserts `rows` (dicts with the same keys) into `table`, for a caller that reads nothing
    back from the insert. Inside a request that writes, the insert waits and goes with the
    request's next statement or with its commit: on PostgreSQL in the same round trip; on
    SQLite in the writers' turn, which then lasts only for the writes (the statement is built
    and its values converted now, before the turn). Elsewhere it runs now. A violated
    constraint raises `on_integrity_error(the IntegrityError)` when given, wherever the insert
    is sent from (the rest of the request then fails with it)."""
    if not rows:
        return
    unit = _deferring_unit(conn)
    if unit is None or len(rows) >= _DEFER_BELOW:
        try:
            insert_many(conn, table, rows)
        except IntegrityError as exc:
            if on_integrity_error is None:
                raise
            raise on_integrity_error(exc) from None
        return
    if unit.db.is_sqlite:
        sql, params = sqlite_insert(conn.dialect, table, rows)
        unit.pending.append(_Deferred(table.name, sql, params, on_integrity_error))
        return
    sql = _insert_sql(table, tuple(rows[0]))
    unit.pending.append(_Deferred(table.name, sql, list(rows), on_integrity_error))


def defer_update(
    conn: Connection,
    statement: Update,
    params: dict[str, Any],
    *,
    rowcount: int,
    otherwise: Callable[[], Exception],
) -> None:
    """Runs an UPDATE that must change `rowcount` rows, else `otherwise()` is raised and the
    request changes nothing. Inside a request that writes, it waits like defer_insert's
    inserts and goes with them, before the commit (on PostgreSQL the COMMIT then follows once
    its count is known: one round trip more than an insert alone, and none for the UPDATE
    itself)."""
    unit = _deferring_unit(conn)
    if unit is None:
        if conn.execute(statement, params).rowcount != rowcount:
            raise otherwise()
        return
    sql, names, fixed = _statement_sql(conn.dialect, statement)
    table = statement.table.name  # type: ignore[union-attr]
    values = {**fixed, **params}
    row: Any = tuple(values[name] for name in names) if names is not None else values
    unit.pending.append(_Deferred(table, sql, [row], None, rowcount, otherwise))


@functools.lru_cache(maxsize=64)
def _statement_sql(
    dialect: Any, statement: Update
) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
    """The statement as the driver takes it, the names of its positional parameters in their
    order (SQLite; None for psycopg's named ones), and the values it carries itself."""
    compiled = statement.compile(dialect=dialect)
    if compiled._bind_processors:  # pragma: no cover - a schema change would show here first
        raise TypeError("a parameter needs SQLAlchemy's conversion; execute the statement")
    names = tuple(compiled.positiontup) if compiled.positiontup is not None else None
    return compiled.string, names, dict(compiled.params)


# More rows than this go at once, by COPY (see db.bulk), not row by row in a pipeline.
_DEFER_BELOW = 50


def _writing_unit(conn: Connection) -> _Unit | None:
    """The request's unit of work when `conn` is its connection and the request writes."""
    unit = _unit.get()
    return unit if unit is not None and unit.conn is conn and unit.writes else None


def _deferring_unit(conn: Connection) -> _Unit | None:
    """The unit whose statements on `conn` may wait (see defer_insert): a request that
    writes."""
    return _writing_unit(conn)


def defers(conn: Connection) -> bool:
    """Whether inserts on `conn` wait for the request's next statement or its commit
    (`defer_insert`): the connection of a request that writes."""
    return _deferring_unit(conn) is not None


def before_driver_use(conn: Connection) -> None:
    """Call before using `conn`'s driver connection directly (PostgreSQL's COPY): inside a
    request that writes, the waiting inserts are sent and the transaction begun first."""
    unit = _deferring_unit(conn)
    if unit is not None and not unit.db.is_sqlite and (unit.pending or not unit.begun):
        _send_pending(unit, commit=False)


@functools.lru_cache(maxsize=256)
def _insert_sql(table: Table, names: tuple[str, ...]) -> str:
    """The INSERT of these columns as psycopg takes it (named placeholders, no RETURNING). The
    schema's types are ones psycopg adapts itself (text, integers, booleans, timestamps)."""
    columns = ", ".join(f'"{name}"' for name in names)
    values = ", ".join(f"%({name})s" for name in names)
    return f"INSERT INTO {table.name} ({columns}) VALUES ({values})"


# A SELECT that takes row locks or changes something: it needs the transaction.
_LOCKS_OR_WRITES = re.compile(
    r"\bFOR (?:NO KEY )?(?:UPDATE|SHARE|KEY SHARE)\b|pg_advisory|nextval|setval|set_config|"
    r"pg_notify",
    re.IGNORECASE,
)


@functools.lru_cache(maxsize=2048)
def _reads_only(statement: str) -> bool:
    head = statement.lstrip()[:6].upper()
    return head == "SELECT" and _LOCKS_OR_WRITES.search(statement) is None


def _before_statement(
    conn: Connection, _cursor: Any, statement: str, *_args: Any, **_kwargs: Any
) -> None:
    """PostgreSQL: a request's transaction begins before its first statement that writes or
    locks, and inserts waiting to be sent go first (with BEGIN, in one round trip)."""
    unit = _writing_unit(conn)
    if unit is None:
        return
    if unit.pending:
        _send_pending(unit, commit=False)
    elif not unit.begun and not _reads_only(statement):
        _raw(conn).execute("BEGIN", prepare=False)
        unit.begun = True


def _raw(conn: Connection) -> psycopg.Connection[Any]:
    raw: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
    return raw


def _send_pending(unit: _Unit, *, commit: bool, tell: bool = True) -> bool:
    """Sends BEGIN (if not yet sent), the waiting statements and, with `commit`, COMMIT, in one
    pipeline: one round trip. A violated constraint is raised as its insert asked. Returns
    whether a transaction was begun."""
    items, unit.pending = unit.pending, []
    if not items and not unit.begun and commit:
        return False  # nothing was written: nothing to commit
    if commit and not unit.begun and _send_as_one(unit, items, tell=tell):
        return True
    raw = _raw(unit.conn)
    current: _Deferred | None = None
    counted = [(item, raw.cursor()) for item in items if item.rowcount is not None]
    cursors = dict((id(item), cursor) for item, cursor in counted)
    try:
        with raw.pipeline():
            if not unit.begun:
                raw.execute("BEGIN", prepare=False)
                unit.begun = True
            for current in items:
                cursor = cursors.get(id(current)) or raw.cursor()
                if len(current.rows) == 1:
                    cursor.execute(current.sql, current.rows[0])
                else:
                    cursor.executemany(current.sql, current.rows)
            current = None
            if commit and not counted:
                raw.execute("COMMIT", prepare=False)
        for item, cursor in counted:
            if cursor.rowcount != item.rowcount and item.otherwise is not None:
                raise item.otherwise()
        if commit and counted:
            raw.execute("COMMIT", prepare=False)
        return True
    except psycopg.Error as exc:
        sql = items[0].sql if items else "COMMIT"
        raise _refusal(unit, items, exc, current, sql, tell=tell) from None


def _as_one(items: list[_Deferred]) -> tuple[str, list[Any]]:
    """`items` as ONE statement and its parameters (see _one_statement)."""
    sql, names = _one_statement(tuple((item.sql, len(item.rows), item.rowcount) for item in items))
    params = [
        row[name]
        for item, item_names in zip(items, names, strict=True)
        for row in item.rows
        for name in item_names
    ]
    return sql, params


def _send_as_one(unit: _Unit, items: list[_Deferred], *, tell: bool = True) -> bool:
    """The request's writes, when nothing began its transaction, as ONE statement on the
    autocommitting connection (see _one_statement): atomic on its own, so it needs neither BEGIN
    nor COMMIT, and PostgreSQL prepares it like any other. Returns False, having changed
    nothing, when a row count was not the one required: the pipeline then runs the same writes
    again in their order, and names the refusal exactly as it always does (the row count, or a
    violated constraint of an insert that comes first)."""
    sql, params = _as_one(items)
    try:
        _raw(unit.conn).execute(sql, params)
        return True
    except psycopg.errors.DivisionByZero:
        return False  # a row count was refused (see _one_statement); nothing was written
    except psycopg.Error as exc:
        raise _refusal(unit, items, exc, None, sql, tell=tell) from None


def _refusal(
    unit: _Unit,
    items: list[_Deferred],
    exc: psycopg.Error,
    current: _Deferred | None,
    sql: str,
    *,
    tell: bool = True,
) -> Exception:
    """What sending `items` failing with `exc` means to the caller: a violated constraint as the
    insert of its table asked (else IntegrityError), or, not `tell`, _RunAlone (the request
    runs again on its own, see Database.run); any other error wrapped as SQLAlchemy would, and
    a connection found dead invalidated (see Database.run)."""
    if isinstance(exc, psycopg.IntegrityError):
        if not tell:
            return _RunAlone()
        failed = next((i for i in items if i.table == exc.diag.table_name), current)
        error = IntegrityError(failed.sql if failed else sql, None, exc)
        if failed is not None and failed.on_integrity_error is not None:
            return failed.on_integrity_error(error)
        return error
    if isinstance(exc, psycopg.OperationalError):
        unit.conn.invalidate()
    return DBAPIError(sql, None, exc)


_NAMED = re.compile(r"%\((\w+)\)s")


@functools.lru_cache(maxsize=256)
def _one_statement(
    shapes: tuple[tuple[str, int, int | None], ...],
) -> tuple[str, tuple[tuple[str, ...], ...]]:
    """Waiting statements (SQL with named placeholders, how many rows of parameters each has,
    the row count it must have) as one statement with positional placeholders, and each
    statement's parameter names in the order they go. The statements become data-modifying
    WITH queries. Without row counts to check, the last one is the main query. Otherwise the
    main query reads the statements' results in their order up to the last that is counted, so
    they run in that order (an insert before the seat counter's UPDATE, whose row lock is then
    held only from there to the end), and divides by zero when a count is not as required,
    which aborts the whole statement. Foreign keys between the inserts hold: PostgreSQL checks
    them at the end of the statement."""
    counted = [i for i, (_sql, _rows, rowcount) in enumerate(shapes) if rowcount is not None]
    parts: list[str] = []
    names: list[tuple[str, ...]] = []
    terms: list[str] = []
    for i, (sql, rows, rowcount) in enumerate(shapes):
        positional = _NAMED.sub("%s", sql)
        if rows > 1:
            head, values = positional.split(" VALUES ", 1)
            positional = f"{head} VALUES {', '.join([values] * rows)}"
        if counted and i <= counted[-1]:
            positional += " RETURNING 1"
            wanted = "> 0" if rowcount is None else f"= {int(rowcount)}"
            terms.append(f"(SELECT count(*) FROM q{i}) {wanted}")
        parts.append(positional)
        names.append(tuple(_NAMED.findall(sql)))
    if terms:
        main = f"SELECT 1 / ({' AND '.join(terms)})::int"
        queries = parts
    else:
        main, queries = parts[-1], parts[:-1]
    if not queries:
        return main, tuple(names)
    with_ = ", ".join(f"q{i} AS ({part})" for i, part in enumerate(queries))
    return f"WITH {with_} {main}", tuple(names)


def _rollback(conn: Connection) -> None:
    """Ends the request's transaction, if it began (nothing was committed)."""
    if conn.invalidated or conn.closed:
        return
    if conn.in_transaction():
        with contextlib.suppress(DBAPIError):
            conn.rollback()  # the driver sends ROLLBACK if a transaction is open
        return
    raw = _raw(conn)
    if raw.closed or raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        return
    with contextlib.suppress(psycopg.Error):
        raw.rollback()
    conn.dispatch.rollback(conn)


class _Checkpointer(threading.Thread):
    """Copies the SQLite write-ahead log into the database in the background, so that no
    request pays for a checkpoint's fsyncs, and keeps the log from growing without end.

    A PASSIVE checkpoint never blocks readers or writers, but under a steady stream of commits
    it never copies the very last frame, and SQLite starts the log over only when a writer
    begins after a checkpoint that copied every frame. Measured: 30 s of addUser at 1,100/s
    grew the log to 4.3 GB for an 87 MB database. So once the log holds `restart_frames`
    frames, the checkpointer catches up with a few more passes and then copies the rest inside
    the writers' turn: writers wait only for the frames committed since the last pass (a few
    milliseconds), and the next writer starts the log over at its beginning."""

    def __init__(
        self,
        path: str,
        writers_turn: Callable[[], contextlib.AbstractContextManager[None]],
        interval: float = 0.2,
        restart_frames: int = 16_384,
    ) -> None:
        super().__init__(name="learndir-sqlite-checkpointer", daemon=True)
        self._path = path
        self._writers_turn = writers_turn
        self._interval = interval
        self._restart_frames = restart_frames
        self._stopped = threading.Event()

    def run(self) -> None:
        connection = sqlite3.connect(self._path, timeout=30, check_same_thread=False)
        try:
            while not self._stopped.wait(self._interval):
                with contextlib.suppress(sqlite3.Error):
                    self.checkpoint(connection)
        finally:
            connection.close()

    def checkpoint(self, connection: sqlite3.Connection) -> None:
        """A PASSIVE checkpoint; once the log is long, the last pass in the writers' turn."""
        if _passive(connection) < self._restart_frames:
            return
        for _ in range(_CATCH_UP_PASSES):
            started = time.monotonic()
            _passive(connection)
            if time.monotonic() - started < _CAUGHT_UP_SECONDS:
                break
        with self._writers_turn():
            _passive(connection)

    def stop(self) -> None:
        self._stopped.set()


# Passes before the one in the writers' turn: each copies what was committed during the last,
# until one is this quick (little was left) or there were this many.
_CATCH_UP_PASSES = 4
_CAUGHT_UP_SECONDS = 0.002


def _passive(connection: sqlite3.Connection) -> int:
    """A PASSIVE checkpoint; the frames the log held."""
    (_busy, frames, _copied) = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(frames)


# ---- PostgreSQL requests that wait in the event loop ------------------------------------


RV = TypeVar("RV")


class _LoopWaitingConnection(psycopg.Connection[Any]):
    """psycopg's connection, except that inside a request's greenlet (`in_greenlet()`: the
    request runs under `sqlalchemy.util.greenlet_spawn`, see api/execution.py) it waits for the
    server's answer in the event loop, as psycopg's own asyncio connection does, instead of in a
    blocking poll: the loop serves the process's other requests meanwhile. Everywhere else it
    waits as psycopg does."""

    def wait(self, gen: PQGen[RV], interval: float = 0.1, timeout: float | None = None) -> RV:
        if not in_greenlet():
            return super().wait(gen, interval, timeout)
        # Most of psycopg's waits need no I/O (setting autocommit, a rollback with nothing
        # open): those end here, without a trip through the loop.
        try:
            first = next(gen)
        except StopIteration as done:
            result: RV = done.value
            return result
        return await_(
            psycopg.waiting.wait_async(
                _started(first, gen), self.pgconn.socket, interval=interval, timeout=timeout
            )
        )


def _started(first: Any, gen: PQGen[RV]) -> PQGen[RV]:
    """`gen` again, its first state already read."""
    ready = yield first
    while True:
        try:
            state = gen.send(ready)
        except StopIteration as done:
            result: RV = done.value
            return result
        ready = yield state


def _connect_waiting_in_loop(
    _dialect: Any, _record: Any, cargs: Sequence[Any], cparams: dict[str, Any]
) -> _LoopWaitingConnection:
    # Opening the connection itself still blocks (once per pooled connection).
    return _LoopWaitingConnection.connect(*cargs, **cparams)


class _LoopSharingPool(QueuePool):
    """A QueuePool whose checkout, inside a request's greenlet, never blocks the thread: while
    every connection is out it lets the event loop run (the requests holding them finish on that
    same loop, so blocking it would wait for the pool's timeout and fail). Elsewhere it waits
    as QueuePool does."""

    _RETRY_SECONDS = 0.001

    def __init__(self, creator: Any, pool_size: int = 5, max_overflow: int = 10, **kw: Any) -> None:
        super().__init__(creator, pool_size=pool_size, max_overflow=max_overflow, **kw)
        self._capacity = pool_size + max_overflow

    def _do_get(self) -> ConnectionPoolEntry:
        if in_greenlet():
            deadline = time.monotonic() + self.timeout()
            while self.checkedout() >= self._capacity:
                if time.monotonic() >= deadline:
                    raise PoolTimeoutError(
                        f"no database connection came free in {self.timeout():g} s "
                        f"({self._capacity} in use)"
                    )
                await_(asyncio.sleep(self._RETRY_SECONDS))
        return super()._do_get()


def nullpool_engine(url: str) -> Engine:
    """A short-lived engine for one-off maintenance (migrations, database creation)."""
    return create_engine(normalize_database_url(url), poolclass=NullPool)
