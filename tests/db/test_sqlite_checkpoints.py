"""The SQLite checkpointer keeps the write-ahead log from growing without end.

SQLite starts its log over only when a writer begins after a checkpoint that copied every
frame. Under a steady stream of commits a PASSIVE checkpoint never copies the very last one
(another commit always lands while it runs), so the log grew by gigabytes under load. Once
the log is long, the checkpointer's last pass runs inside the writers' turn. These tests play
the commits that land during the passes, deterministically, on a real SQLite file."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from learndir.db import engine
from learndir.db.engine import Database, _Checkpointer

RESTART_FRAMES = 32


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn


def _commit(conn: sqlite3.Connection, times: int = 1) -> None:
    for _ in range(times):
        conn.execute("INSERT INTO rows (body) VALUES (randomblob(900))")


def _frames_in_log(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = _connect(tmp_path / "log.db")
    conn.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, body BLOB)")
    yield conn
    conn.close()


def _checkpoint_with_commits_during_passes(
    path: Path, writer: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> list[bool]:
    """One checkpoint by a checkpointer whose writers' turn is a flag, and whose every pass
    outside that turn runs while a writer commits, as under load; per pass, whether it ran in
    the turn."""
    in_turn = [False]
    passes: list[bool] = []

    @contextlib.contextmanager
    def writers_turn() -> Iterator[None]:
        in_turn[0] = True
        try:
            yield
        finally:
            in_turn[0] = False

    passive = engine._passive

    def passive_during_a_commit(conn: sqlite3.Connection) -> int:
        passes.append(in_turn[0])
        if in_turn[0]:
            return passive(conn)
        # A writer began before the pass and commits after it: SQLite lets only a writer
        # that began after a complete checkpoint start the log over, and this one did not.
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO rows (body) VALUES (randomblob(900))")
        try:
            return passive(conn)
        finally:
            writer.execute("COMMIT")

    monkeypatch.setattr(engine, "_passive", passive_during_a_commit)
    checkpointer = _Checkpointer(str(path), writers_turn, restart_frames=RESTART_FRAMES)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        checkpointer.checkpoint(conn)
    finally:
        conn.close()
    return passes


def test_a_long_log_starts_over_although_commits_land_during_the_checkpoint(
    tmp_path: Path, writer: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    _commit(writer, 3 * RESTART_FRAMES)
    passes = _checkpoint_with_commits_during_passes(tmp_path / "log.db", writer, monkeypatch)
    # The next writer starts the log over: it holds that commit's frames alone.
    _commit(writer)
    observer = _connect(tmp_path / "log.db")
    try:
        assert _frames_in_log(observer) <= 3
    finally:
        observer.close()
    # Passes outside the turn, each during a commit; the last one inside it.
    assert passes[-1] is True
    assert passes[:-1] and not any(passes[:-1])


def test_a_short_log_is_copied_without_the_writers_turn(
    tmp_path: Path, writer: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    _commit(writer, RESTART_FRAMES // 4)
    passes = _checkpoint_with_commits_during_passes(tmp_path / "log.db", writer, monkeypatch)
    assert passes == [False]


def test_the_databases_checkpointer_takes_the_writers_turn(tmp_path: Path) -> None:
    """The turn it is given is the one writers queue on: while the checkpointer holds it, a
    write() from another thread waits."""
    db = Database(f"sqlite:///{tmp_path / 'learndir.db'}")
    try:
        with db.write() as conn:
            conn.exec_driver_sql("CREATE TABLE rows (id INTEGER PRIMARY KEY)")
        checkpointer = db._checkpointer
        assert checkpointer is not None
        with checkpointer._writers_turn():
            assert not db._write_lock.acquire(blocking=False)
        assert db._write_lock.acquire(blocking=False)
        db._write_lock.release()
    finally:
        db.dispose()
