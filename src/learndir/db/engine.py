"""Engines and the unit of work.

One transaction per request or command: `Database.write()` yields a connection inside a
transaction that commits when the block ends and rolls back on any error, so a rejected request
changes nothing. Repositories execute statements on that connection and never commit.

A request runs in `Database.run()`: every read() and write() inside it shares one connection,
and a request that changes something is one transaction from authentication to the last write
(on SQLite, unless it hashes a password: that must not hold the writers' lock). No PostgreSQL
connection is pinged on checkout; one found dead before anything was committed makes the
request run again, once, on a fresh connection.

SQLite writers take the database lock at the start of the transaction (BEGIN IMMEDIATE). Inside
one process they queue on a lock first, and across processes on an advisory file lock, so
concurrent writers wait in line instead of sleeping in SQLite's busy handler.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class _Unit:
    """The connection one request runs on (PostgreSQL)."""

    db: Database
    conn: Connection
    writes: bool
    committing: bool = False


_unit: ContextVar[_Unit | None] = ContextVar("learndir_unit_of_work", default=None)


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
        self._write_lock = threading.Lock()
        self._lock_file: Any = None
        self._checkpointer: _Checkpointer | None = None
        if self.is_sqlite:
            self.engine = self._sqlite_engine(parsed.database or "")
        else:
            # As many connections as threads that use them, kept open: opening one costs
            # PostgreSQL milliseconds of CPU. A few more for background threads (the scheduler)
            # are opened when needed. No ping on checkout: see run().
            self.engine = create_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=4,
                pool_pre_ping=False,
                hide_parameters=True,
                # Requests wait for PostgreSQL in their process's event loop: an unreachable
                # server must fail them, not hold the process indefinitely.
                connect_args={"connect_timeout": 10},
            )

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
            cursor.close()

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
            self._checkpointer = _Checkpointer(self._database_path)
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
        lock only after the hash."""
        if _unit.get() is not None or (self.is_sqlite and hashes):
            return work()
        for attempt in (1, 2):
            unit: _Unit | None = None
            try:
                with self._unit_of_work(writes) as unit:
                    return work()
            except DBAPIError as exc:
                committing = unit is not None and unit.committing
                if attempt == 2 or not exc.connection_invalidated or committing:
                    raise
                logger.warning("a pooled database connection was dead; running the request again")
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def _unit_of_work(self, writes: bool) -> Iterator[_Unit]:
        if self.is_sqlite:
            with self._sqlite_write() if writes else self._sqlite_read() as conn:
                unit = _Unit(self, conn, writes)
                token = _unit.set(unit)
                try:
                    yield unit
                finally:
                    _unit.reset(token)
            return
        with self.engine.connect() as conn:
            if not writes:
                # Reads run statement by statement: no BEGIN and ROLLBACK round trips.
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            unit = _Unit(self, conn, writes)
            token = _unit.set(unit)
            try:
                if not writes:
                    yield unit
                    return
                transaction = conn.begin()
                try:
                    yield unit
                except BaseException:
                    transaction.rollback()
                    raise
                unit.committing = True
                transaction.commit()
            finally:
                _unit.reset(token)

    def _current_unit(self) -> _Unit | None:
        unit = _unit.get()
        return unit if unit is not None and unit.db is self else None

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A read-write transaction: commits on success, rolls back on any exception. Inside a
        request that writes (run()), the request's own transaction."""
        unit = self._current_unit()
        if unit is not None and unit.writes:
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
        if self.is_sqlite and unit is not None and unit.writes:
            raise RuntimeError("write_apart() inside a SQLite write unit would deadlock")
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


class _Checkpointer(threading.Thread):
    """Copies the SQLite write-ahead log into the database once a second, in PASSIVE mode
    (never blocking readers or writers), so no request pays for a checkpoint's fsyncs."""

    def __init__(self, path: str, interval: float = 1.0) -> None:
        super().__init__(name="learndir-sqlite-checkpointer", daemon=True)
        self._path = path
        self._interval = interval
        self._stopped = threading.Event()

    def run(self) -> None:
        connection = sqlite3.connect(self._path, timeout=30, check_same_thread=False)
        try:
            while not self._stopped.wait(self._interval):
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            connection.close()

    def stop(self) -> None:
        self._stopped.set()


def nullpool_engine(url: str) -> Engine:
    """A short-lived engine for one-off maintenance (migrations, database creation)."""
    return create_engine(normalize_database_url(url), poolclass=NullPool)
