"""The one background worker: a loop over jobs (the outbox, webhook deliveries, scheduled status
changes, and whatever else must happen outside requests).

A job is a callable `(db, worker_id) -> int` that does one round of its work and returns how
much it did. When every job was idle the worker sleeps the poll interval (or until woken);
otherwise it loops again at once. Every job is safe with several workers on one PostgreSQL
database (row claims, conditional updates). On SQLite one process delivers: the worker holds a
non-blocking file lock next to the database, and a worker that cannot get it waits and tries
again (it takes over when the holder exits).

It runs inside `learndir serve` (a thread of each server process) and alone as
`learndir worker`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from sqlalchemy import event
from sqlalchemy.engine import make_url

from learndir.core.audit import purge_audit
from learndir.core.console_sessions import SessionPolicy, purge_expired
from learndir.core.imports.jobs import ImportJobs, purge_jobs
from learndir.core.origin import Interface, Origin, acting_from
from learndir.core.signin import forget_stale
from learndir.core.users.schedules import apply_due_changes
from learndir.db.engine import Database
from learndir.delivery.outbox import OutboxJob
from learndir.delivery.webhooks import deliver_webhooks
from learndir.settings import Settings

log = logging.getLogger("learndir.worker")

Job = Callable[[Database, str], int]
# How often a worker that lost the SQLite delivery lock checks whether it is free again.
LOCK_RETRY_SECONDS = 1.0
_QUEUE_INSERTS = (
    "INSERT INTO outbox ",
    "INSERT INTO webhook_deliveries ",
    "INSERT INTO import_jobs ",
)
_QUEUED = "learndir_outbox_queued"
_COMMITTED = "learndir_outbox_committed"
# The longest pause of a job that keeps failing (the pause doubles from 1 s).
MAX_BACKOFF_SECONDS = 30.0


def new_worker_id() -> str:
    """Host, process and a random suffix: who holds a claim, in the outbox's claimed_by."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


def every(seconds: float, job: Job, name: str) -> Job:
    """`job` at most once every `seconds` (and at once on the first call). It never counts as
    work done, so it does not keep the loop from sleeping."""
    last = float("-inf")

    def run(db: Database, worker_id: str) -> int:
        nonlocal last
        if time.monotonic() - last < seconds:
            return 0
        last = time.monotonic()
        job(db, worker_id)
        return 0

    run.__name__ = name
    return run


def scheduled_changes(db: Database, _worker_id: str) -> int:
    with acting_from(Origin(Interface.SCHEDULER)):
        changed = apply_due_changes(db)
    if changed:
        log.info("scheduled status changes applied: users=%d", changed)
    return changed


def _retention(what: str, days: int, purge: Callable[[Database, int], int]) -> Job:
    """A job deleting `what` older than `days` days with `purge`."""

    def run(db: Database, _worker_id: str) -> int:
        purged = purge(db, days)
        if purged:
            log.info("%s older than %d days deleted: %d", what, days, purged)
        return purged

    return run


def _stale_signin_failures(window_seconds: float) -> Job:
    def forget(db: Database, _worker_id: str) -> int:
        return forget_stale(db, window_seconds)

    return forget


def _ended_console_sessions(policy: SessionPolicy) -> Job:
    def purge(db: Database, _worker_id: str) -> int:
        return purge_expired(db, policy)

    return purge


class Worker:
    def __init__(
        self,
        db: Database,
        jobs: list[Job],
        *,
        poll_interval: float = 0.2,
        idle_poll_interval: float = 1.0,
        closers: list[Callable[[], None]] | None = None,
    ) -> None:
        self.db = db
        self.jobs = jobs
        self.poll_interval = poll_interval
        # The longest sleep: while nothing comes, the interval doubles up to here.
        self.idle_poll_interval = max(poll_interval, idle_poll_interval)
        self.id = new_worker_id()
        self._closers = closers or []
        self._stopped = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_file: IO[bytes] | None = None
        self._listeners: list[tuple[Any, str, Callable[..., None]]] = []
        # Per job (by position): its current back-off and when it may run again.
        self._failures: dict[int, tuple[float, float]] = {}

    @classmethod
    def for_settings(cls, db: Database, settings: Settings) -> Worker:
        """The outbox, webhook deliveries and, when enabled, the scheduled status changes at
        their own interval."""
        outbox_job = OutboxJob(settings)
        jobs: list[Job] = [outbox_job, deliver_webhooks]
        if settings.scheduler_interval_seconds > 0:
            jobs.append(
                every(settings.scheduler_interval_seconds, scheduled_changes, "scheduled_changes")
            )
        if settings.audit_retention_days > 0:
            jobs.append(
                every(
                    3600,
                    _retention("audit records", settings.audit_retention_days, purge_audit),
                    "audit",
                )
            )
        jobs.append(every(600, _stale_signin_failures(settings.signin_window_seconds), "signin"))
        console = SessionPolicy.of(settings.console_idle_minutes, settings.console_max_hours)
        jobs.append(every(600, _ended_console_sessions(console), "console"))
        imports = ImportJobs()
        jobs.append(imports)
        if settings.import_retention_days > 0:
            jobs.append(
                every(
                    3600,
                    _retention("finished import jobs", settings.import_retention_days, purge_jobs),
                    "imports",
                )
            )
        return cls(
            db,
            jobs,
            poll_interval=settings.worker_poll_seconds,
            idle_poll_interval=settings.worker_idle_poll_seconds,
            closers=[outbox_job.close, imports.close],
        )

    def wake(self) -> None:
        """New work was written by this process: look at once instead of at the next poll."""
        self._wake.set()

    def run(self) -> None:
        """Until stop(): runs every job, sleeps when all were idle: the poll interval, doubled
        after each idle round up to the idle interval (an idle server costs next to nothing),
        and back to the poll interval as soon as there was work or this process woke it."""
        log.info("worker %s started: jobs=%s", self.id, ",".join(_name(j) for j in self.jobs))
        sleep = self.poll_interval
        try:
            while not self._stopped.is_set():
                if not self._holds_delivery_lock():
                    self._stopped.wait(LOCK_RETRY_SECONDS)
                    continue
                if self._round() > 0:
                    sleep = self.poll_interval
                    continue
                woken = self._wake.wait(sleep)
                self._wake.clear()
                sleep = self.poll_interval if woken else min(self.idle_poll_interval, sleep * 2)
        finally:
            for close in self._closers:
                with contextlib.suppress(Exception):
                    close()
            self._release_delivery_lock()
            for target, name, listener in self._listeners:
                event.remove(target, name, listener)
            self._listeners = []
            log.info("worker %s stopped", self.id)

    def _round(self) -> int:
        """Runs every job once (but a job that failed not before its back-off is over)."""
        done = 0
        for index, job in enumerate(self.jobs):
            if self._stopped.is_set():
                break
            backoff, not_before = self._failures.get(index, (0.0, 0.0))
            if time.monotonic() < not_before:
                continue
            try:
                done += job(self.db, self.id)
                self._failures.pop(index, None)
            except Exception:
                # The database may be away: wait 1 s, then twice as long each time up to 30 s,
                # rather than failing (and logging) every poll; the other jobs go on.
                backoff = min(MAX_BACKOFF_SECONDS, max(1.0, backoff * 2))
                self._failures[index] = (backoff, time.monotonic() + backoff)
                log.exception(
                    "background job %s failed; trying again in %.0f s", _name(job), backoff
                )
        return done

    def start(self) -> None:
        """Runs in a daemon thread of this process, woken as soon as a transaction of this
        process that queued a message has committed (see _wake_on_outbox_writes)."""
        self._wake_on_outbox_writes()
        self._thread = threading.Thread(target=self.run, name="learndir-worker", daemon=True)
        self._thread.start()

    def _wake_on_outbox_writes(self) -> None:
        """A statement that inserts into the outbox or the webhook deliveries flags its
        connection; when the connection goes back to the pool after a commit (not before: the
        worker would not see the row yet) the worker is woken. A rollback clears the flag (on a
        connection found dead there is nothing to clear: its flags went with it). Other
        processes' messages are found by the poll."""
        engine = self.db.engine

        def seen(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if statement.startswith(_QUEUE_INSERTS):
                conn.info[_QUEUED] = True

        def committed(conn: Any) -> None:
            if not conn.invalidated and conn.info.pop(_QUEUED, False):
                conn.info[_COMMITTED] = True

        def rolled_back(conn: Any) -> None:
            if conn.invalidated:
                return
            conn.info.pop(_QUEUED, None)
            conn.info.pop(_COMMITTED, None)

        def returned(_dbapi_connection: Any, record: Any) -> None:
            if record is not None and record.info.pop(_COMMITTED, False):
                self.wake()

        self._listeners = [
            (engine, "after_cursor_execute", seen),
            (engine, "commit", committed),
            (engine, "rollback", rolled_back),
            (engine.pool, "checkin", returned),
        ]
        for target, name, listener in self._listeners:
            event.listen(target, name, listener)

    def stop_soon(self) -> None:
        """Ends the loop after the job in hand (safe in a signal handler)."""
        self._stopped.set()
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_soon()
        if self._thread is not None:
            self._thread.join(timeout)

    # ---- SQLite: one delivering process ------------------------------------------------------

    def _holds_delivery_lock(self) -> bool:
        if not self.db.is_sqlite:
            return True
        if self._lock_file is not None:
            return True
        path = os.path.abspath(make_url(self.db.url).database or "") + ".worker-lock"
        lock_file = open(path, "a+b")  # noqa: SIM115
        try:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.close()
            return False
        self._lock_file = lock_file
        log.info("worker %s delivers for SQLite database %s", self.id, path[: -len(".worker-lock")])
        return True

    def _release_delivery_lock(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None


def _name(job: Any) -> str:
    return str(getattr(job, "__name__", type(job).__name__))
