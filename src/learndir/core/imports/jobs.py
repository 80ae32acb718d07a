"""Import jobs: a file applied in batches, each batch one transaction, resumable.

A job is a row of `import_jobs`. It goes through phases:
- `rows`: the file's rows, `BATCH_ROWS` at a time. Each batch is planned and written (not
  written, for a dry run) in one transaction that also records what became of each row and
  moves `rows_done` on: a crash loses at most the batch in hand, never half a user, and the
  job resumes at the first row that did not commit;
- `managers`: the Manager login cells, once every row is in (a manager may come after the
  people they manage in the file);
- `missing` (sync only): the active users of the actor's scope that the file does not name
  are deactivated, never deleted;
- `done`.

The command line runs a job in its own process (`run_to_end`); a job uploaded over REST is
run by the background worker (`ImportJobs`), one batch per round, holding a lease on the job
that it renews each batch, so a job whose worker died is taken over and resumed.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import socket
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from learndir.core.account_settings import account_settings
from learndir.core.actor import Actor
from learndir.core.auth import load_actor
from learndir.core.common import as_uuid_text, new_id, utcnow
from learndir.core.errors import DomainError, ErrorCode, denied, invalid, not_found
from learndir.core.imports.columns import map_columns
from learndir.core.imports.directory import Directory
from learndir.core.imports.managers import apply_managers
from learndir.core.imports.plan import (
    Action,
    BatchPlanner,
    ImportOptions,
    JobState,
    Mode,
    ReadRow,
    RowReader,
    RowResult,
    describe,
    match_field,
    write_batch,
    write_results,
)
from learndir.core.origin import Interface, Origin, acting_from
from learndir.core.paging import check_page_size
from learndir.core.users.changes import ACTIVE, INACTIVE, change_status_in
from learndir.core.users.targets import authorize_target, edit_scope, load_targets
from learndir.db.engine import Database
from learndir.db.schema import (
    departments,
    import_chunks,
    import_jobs,
    import_results,
    roles,
    user_roles,
    users,
)
from learndir.imports.files import (
    FileProblem,
    Table,
    given_delimiter,
    given_encoding,
    open_stream,
    open_table,
)

log = logging.getLogger("learndir.import")

BATCH_ROWS = 2000
LEASE_SECONDS = 30
CHUNK_BYTES = 1024 * 1024
ACTIONS = tuple(a.value for a in Action)
# What a job's totals count besides the actions.
DEPARTMENTS_CREATED = "departmentsCreated"
_SEATS = "seats"


@dataclass
class JobView:
    id: str
    account_id: str
    actor_user_id: str
    interface: str
    status: str
    phase: str
    options: ImportOptions
    file_name: str
    headers: list[str] | None
    rows_total: int | None
    rows_done: int
    totals: dict[str, int]
    failure: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    # Who started it, as their login was then.
    actor_login: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed")


def job_view(row: Any) -> JobView:
    totals = json.loads(row.totals)
    return JobView(
        id=row.id,
        account_id=row.account_id,
        actor_user_id=row.actor_user_id,
        interface=row.interface,
        status=row.status,
        phase=row.phase,
        options=ImportOptions(
            mode=Mode(row.mode), match_by=row.match_by, invite=row.invite, dry_run=row.dry_run
        ),
        file_name=row.file_name,
        headers=json.loads(row.headers) if row.headers else None,
        rows_total=row.rows_total,
        rows_done=row.rows_done,
        totals={k: v for k, v in totals.items() if k != _SEATS},
        failure=row.failure,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        actor_login=row.actor_login,
    )


def _empty_totals() -> dict[str, int]:
    return {**{a: 0 for a in ACTIONS}, DEPARTMENTS_CREATED: 0}


# ---- creating and reading jobs ------------------------------------------------------------


def check_may_import(actor: Actor) -> None:
    """Account owners and administrators, and department administrators within their
    departments: whoever may add or change users somewhere."""
    if not actor.manages_users:
        raise denied("your roles do not allow importing users")


def parse_options(
    mode: str | None, match_by: str | None, invite: bool, dry_run: bool
) -> ImportOptions:
    try:
        chosen = Mode((mode or "upsert").strip().lower())
    except ValueError:
        raise invalid("mode", f"{mode!r} is not a mode: create, update, upsert or sync") from None
    return ImportOptions(chosen, (match_by or "login").strip() or "login", invite, dry_run)


def create_job(
    db: Database,
    actor: Actor,
    options: ImportOptions,
    file_name: str,
    interface: Interface,
    chunks: Iterator[bytes] | None = None,
    *,
    encoding: str | None = None,
    delimiter: str | None = None,
) -> str:
    """A queued job; with `chunks`, the uploaded file is stored with it (REST), else the
    caller runs it from its own file (the command line). `encoding` and `delimiter`, when
    given, are the CSV's (else they are detected)."""
    check_may_import(actor)
    encoding, delimiter = check_csv_options(encoding, delimiter)
    with db.read() as conn:
        # An unknown match column is refused before any row is read.
        match_field(account_settings(conn, actor.account).fields, options.match_by)
    with db.write() as conn:
        job_id = _insert_job(
            conn,
            actor,
            interface,
            mode=options.mode.value,
            match_by=options.match_by,
            invite=options.invite,
            dry_run=options.dry_run,
            file_name=(file_name or "upload")[:255],
            encoding=encoding,
            delimiter=delimiter,
        )
        if chunks is not None:
            for seq, data in enumerate(chunks):
                conn.execute(insert(import_chunks).values(job_id=job_id, seq=seq, data=data))
    return job_id


def _insert_job(conn: Connection, actor: Actor, interface: Interface, **options: Any) -> str:
    """A queued job of the actor's with these options (mode, match_by, invite, dry_run,
    file_name, encoding, delimiter); its id."""
    job_id = new_id()
    conn.execute(
        insert(import_jobs).values(
            id=job_id,
            account_id=actor.account_id,
            actor_user_id=actor.user_id,
            actor_login=actor.login,
            interface=interface.value,
            status="queued",
            phase="rows",
            rows_done=0,
            totals=json.dumps(_empty_totals()),
            created_at=utcnow(),
            **options,
        )
    )
    return job_id


def check_csv_options(encoding: str | None, delimiter: str | None) -> tuple[str | None, str | None]:
    """The CSV's encoding and delimiter as the reader takes them (see imports.files), or Wrong
    parameters naming the one that is not."""
    try:
        encoding = given_encoding(encoding) if encoding and encoding.strip() else None
    except FileProblem as exc:
        raise invalid("encoding", str(exc)) from None
    try:
        delimiter = given_delimiter(delimiter) if delimiter else None
    except FileProblem as exc:
        raise invalid("delimiter", str(exc)) from None
    return encoding, delimiter


def check_table(
    db: Database,
    actor: Actor,
    stream: IO[bytes],
    *,
    encoding: str | None = None,
    delimiter: str | None = None,
) -> list[str]:
    """The uploaded file's headers, once it reads as a table whose columns the account knows;
    else Wrong parameters (`file`) saying why, before any job is made (the console's upload
    answers at once instead of leaving a failed job behind). Reads only the header row; the
    stream is left at its start."""
    check_may_import(actor)
    encoding, delimiter = check_csv_options(encoding, delimiter)
    stream.seek(0)
    try:
        with open_stream(stream, encoding=encoding, delimiter=delimiter) as table:
            headers = list(table.headers)
    except FileProblem as exc:
        raise invalid("file", str(exc)) from None
    finally:
        stream.seek(0)
    with db.read() as conn:
        fields = account_settings(conn, actor.account).fields
    try:
        map_columns(headers, fields)
    except DomainError as exc:
        raise invalid("file", exc.reason or exc.message) from None
    return headers


def apply_plan(db: Database, actor: Actor, plan_id: str, interface: Interface) -> str:
    """A job that applies a finished dry run's file for real, with its options (and the
    encoding and delimiter it read the file with), run by the background worker like an
    upload: the file the plan kept moves to the new job, so it is not uploaded again and a
    plan is applied once. The new job plans every row again against the directory as it is
    then, as `actor` (who must see the plan and may import). Its id is returned."""
    check_may_import(actor)
    with db.write() as conn:
        plan = _job_row(conn, actor, plan_id)
        if not plan.dry_run:
            raise invalid("id", "this import is not a plan: it was applied when it ran")
        if plan.status != "done":
            raise invalid("id", "only a finished plan can be applied")
        job_id = _insert_job(
            conn,
            actor,
            interface,
            mode=plan.mode,
            match_by=plan.match_by,
            invite=plan.invite,
            dry_run=False,
            file_name=plan.file_name,
            encoding=plan.encoding,
            delimiter=plan.delimiter,
        )
        moved = conn.execute(
            update(import_chunks).where(import_chunks.c.job_id == plan.id).values(job_id=job_id)
        )
        if moved.rowcount == 0:
            # Rolled back with the new job: another request applied it first, or the plan
            # came from a file that was never kept (the command line).
            raise invalid(
                "id", "this plan was already applied, or its file is not kept: upload it again"
            )
    return job_id


def plan_applicable(db: Database, job: JobView) -> bool:
    """Whether the finished dry run still holds its file (see apply_plan)."""
    if not (job.options.dry_run and job.status == "done"):
        return False
    with db.read() as conn:
        return (
            conn.execute(
                select(import_chunks.c.seq).where(import_chunks.c.job_id == job.id).limit(1)
            ).first()
            is not None
        )


def recent_jobs(db: Database, actor: Actor, limit: int = 20) -> list[JobView]:
    """The newest imports the actor may see, newest first: every import of the account for
    its owners and administrators, their own for others (the rule of get_job)."""
    check_may_import(actor)
    query = (
        select(import_jobs)
        .where(import_jobs.c.account_id == actor.account_id)
        .order_by(import_jobs.c.created_at.desc(), import_jobs.c.id.desc())
        .limit(max(1, min(limit, 100)))
    )
    if not actor.administers_account:
        query = query.where(import_jobs.c.actor_user_id == actor.user_id)
    with db.read() as conn:
        return [job_view(row) for row in conn.execute(query)]


def read_chunks(stream: IO[bytes]) -> Iterator[bytes]:
    while True:
        data = stream.read(CHUNK_BYTES)
        if not data:
            return
        yield data


def _job_row(conn: Connection, actor: Actor, job_id: str) -> Any:
    canonical = as_uuid_text(job_id) if isinstance(job_id, str) else None
    row = (
        conn.execute(select(import_jobs).where(import_jobs.c.id == canonical)).first()
        if canonical
        else None
    )
    # Account administrators see every import of the account; others their own.
    if (
        row is None
        or row.account_id != actor.account_id
        or (not actor.administers_account and row.actor_user_id != actor.user_id)
    ):
        raise not_found("import job", "id")
    return row


def get_job(db: Database, actor: Actor, job_id: str) -> JobView:
    with db.read() as conn:
        return job_view(_job_row(conn, actor, job_id))


def job_by_id(db: Database, job_id: str) -> JobView:
    with db.read() as conn:
        return job_view(conn.execute(select(import_jobs).where(import_jobs.c.id == job_id)).one())


@dataclass(frozen=True)
class ResultRow:
    row_number: int | None
    action: str
    login: str | None
    user_id: str | None
    changes: list[dict[str, Any]]
    error: str | None
    cells: list[str] | None


def job_results(
    db: Database,
    job_id: str,
    *,
    errors_only: bool = False,
    page_rows: int = 1000,
) -> Iterator[ResultRow]:
    """What became of each row (and, for a sync, each user it deactivated), in file order,
    read a page at a time."""
    after = 0
    while True:
        query = (
            select(import_results)
            .where(import_results.c.job_id == job_id, import_results.c.id > after)
            .order_by(import_results.c.id)
            .limit(page_rows)
        )
        if errors_only:
            query = query.where(import_results.c.error.is_not(None))
        with db.read() as conn:
            rows = conn.execute(query).all()
        for r in rows:
            yield ResultRow(
                r.row_number,
                r.action,
                r.login,
                r.user_id,
                json.loads(r.changes) if r.changes else [],
                r.error,
                json.loads(r.cells) if r.cells else None,
            )
        if len(rows) < page_rows:
            return
        after = rows[-1].id


def result_page(
    db: Database, job: JobView, page_size: int | None, page_token: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of what became of the job's rows, for REST; the token is the last result's
    position."""
    size = check_page_size(page_size)
    after = 0
    if page_token:
        try:
            after = int(page_token)
        except ValueError:
            raise invalid("pageToken", "not a token this API gave") from None
    with db.read() as conn:
        rows = conn.execute(
            select(import_results)
            .where(import_results.c.job_id == job.id, import_results.c.id > after)
            .order_by(import_results.c.id)
            .limit(size + 1)
        ).all()
    page = [
        {
            "row": r.row_number,
            "action": r.action,
            "login": r.login,
            "userId": r.user_id,
            "changes": json.loads(r.changes) if r.changes else [],
            "error": r.error,
        }
        for r in rows[:size]
    ]
    return page, str(rows[size - 1].id) if len(rows) > size else None


def error_report(db: Database, job: JobView) -> tuple[list[str], Iterator[list[str]]]:
    """The rejected rows as the file had them, with an Error column: fix and upload again."""
    headers = [*(job.headers or ["Login"]), "Error"]
    width = len(headers) - 1

    def rows() -> Iterator[list[str]]:
        for r in job_results(db, job.id, errors_only=True):
            cells = list(r.cells or [r.login or ""])
            cells = (cells + [""] * width)[:width]
            where = f"row {r.row_number}: " if r.row_number is not None else ""
            yield [*cells, f"{where}{r.error}"]

    return headers, rows()


# ---- running a job --------------------------------------------------------------------------


TableOpener = Callable[[], contextlib.AbstractContextManager[Table]]


def file_opener(
    path: Path, encoding: str | None = None, delimiter: str | None = None
) -> TableOpener:
    return lambda: open_table(path, encoding=encoding, delimiter=delimiter)


@contextlib.contextmanager
def _few_collections() -> Iterator[None]:
    """Python's cyclic garbage collector, run less often while a batch is planned and written.

    A batch makes hundreds of thousands of short-lived objects (rows, plans, change records),
    none of them in cycles, and by default every 700 allocations start a collection that
    walks the young objects, and every few of those the older ones: measured, a fifth of a
    50,000-row import (10.6 s against 8.6 s). Restored after the batch; nothing is leaked
    meanwhile, only collected later."""
    previous = gc.get_threshold()
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*previous)


def _stored_totals(conn: Connection, job_id: str) -> dict[str, int]:
    """The job's totals as the last committed batch left them."""
    text = conn.execute(select(import_jobs.c.totals).where(import_jobs.c.id == job_id)).scalar_one()
    return dict(json.loads(text))


class JobFailed(Exception):
    """The job cannot go on (the file is not a table, its columns are wrong, the user who
    started it may no longer import); the message says why."""


class JobRunner:
    """Runs one job step by step (`step`), or to its end (`run_to_end`)."""

    def __init__(
        self,
        db: Database,
        job_id: str,
        opener: TableOpener,
        *,
        batch_rows: int = BATCH_ROWS,
        owner: str | None = None,
    ) -> None:
        self.db = db
        self.job_id = job_id
        self.opener = opener
        self.batch_rows = batch_rows
        self.owner = owner
        self._stack = contextlib.ExitStack()
        self._ahead: _Reader | None = None
        self._position = 0
        self._state: JobState | None = None
        self._missing_after = ""
        self._managers_after = 0
        # The users the file names, for a sync's last phase (loaded when it starts).
        self._named: set[str] | None = None
        self._owner_ids: frozenset[str] | None = None
        self._account_id = ""

    def close(self) -> None:
        self._stack.close()
        self._ahead = None

    # -- the loop --

    def run_to_end(self, progress: Callable[[JobView], None] | None = None) -> JobView:
        try:
            while self.step():
                if progress is not None:
                    progress(job_by_id(self.db, self.job_id))
        finally:
            self.close()
        view = job_by_id(self.db, self.job_id)
        if progress is not None:
            progress(view)
        return view

    def step(self) -> bool:
        """One batch of rows, or one page of a later phase; False once the job is finished."""
        job = job_by_id(self.db, self.job_id)
        if job.finished:
            return False
        try:
            with (
                _few_collections(),
                acting_from(Origin(Interface.IMPORT, request_id=self.job_id)) as origin,
            ):
                state = self._prepare(job)
                origin.credential = f"import:{self.job_id}"
                origin.login = state.actor.login
                if job.phase == "rows":
                    self._rows_step(job, state)
                elif job.phase == "managers":
                    self._managers_step(job, state)
                elif job.phase == "missing":
                    self._missing_step(job, state)
        except JobFailed as exc:
            self._fail(str(exc))
            return False
        return True

    def _fail(self, reason: str) -> None:
        log.info("import job %s failed: %s", self.job_id, reason)
        with self.db.write() as conn:
            conn.execute(
                update(import_jobs)
                .where(import_jobs.c.id == self.job_id)
                .values(status="failed", failure=reason, finished_at=utcnow())
            )
            conn.execute(delete(import_chunks).where(import_chunks.c.job_id == self.job_id))
        self.close()

    def _prepare(self, job: JobView) -> JobState:
        if self._state is not None:
            return self._state
        with self.db.read() as conn:
            actor = load_actor(conn, job.actor_user_id)
            if actor is None or actor.account_id != job.account_id:
                raise JobFailed("the user who started the import is no longer active")
            try:
                check_may_import(actor)
            except DomainError as exc:
                raise JobFailed(exc.describe()) from None
            directory = Directory.load(conn, actor)
        try:
            table = self._open()
            columns = map_columns(table.headers, directory.settings.fields)
        except FileProblem as exc:
            raise JobFailed(str(exc)) from None
        except DomainError as exc:
            raise JobFailed(exc.reason or exc.message) from None
        try:
            match_field(directory.settings.fields, job.options.match_by)
            reader = RowReader(columns, directory, job.options)
        except DomainError as exc:
            raise JobFailed(exc.describe()) from None
        with self.db.read() as conn:
            raw_totals = _stored_totals(conn, job.id)
        self._state = JobState(
            job.id,
            actor,
            job.options,
            directory,
            reader,
            dry_seats=raw_totals.get(_SEATS, 0) if job.options.dry_run else 0,
        )
        if job.rows_done:
            self._state.email_rows = self._email_rows(job.id)
        if job.status == "queued":
            total = self._count_rows()
            with self.db.write() as conn:
                conn.execute(
                    update(import_jobs)
                    .where(import_jobs.c.id == job.id)
                    .values(
                        status="running",
                        started_at=utcnow(),
                        rows_total=total,
                        headers=json.dumps(table.headers, ensure_ascii=False),
                        encoding=table.encoding,
                        delimiter=table.delimiter,
                    )
                )
        return self._state

    def _email_rows(self, job_id: str) -> dict[int, int]:
        """The e-mail addresses of the rows accepted before a resume (see JobState)."""
        rows: dict[int, int] = {}
        with self.db.read() as conn:
            for key, number in conn.execute(
                select(import_results.c.email_key, import_results.c.row_number).where(
                    import_results.c.job_id == job_id,
                    import_results.c.email_key.is_not(None),
                    import_results.c.error.is_(None),
                )
            ):
                rows.setdefault(hash(key), number)
        return rows

    def _open(self) -> Table:
        self.close()
        self._stack = contextlib.ExitStack()
        table = self._stack.enter_context(self.opener())
        self._table = table
        return table

    def _count_rows(self) -> int:
        with self.opener() as table:
            return sum(1 for _ in table.rows)

    def _next_rows(self, job: JobView, state: JobState) -> list[ReadRow]:
        """The next batch of rows, read."""
        if self._ahead is None or self._position != job.rows_done:
            table = self._open()
            self._ahead = _Reader(table, job.rows_done, self.batch_rows, state.reader)
            self._position = job.rows_done
        taken = self._ahead.next_batch()
        self._position += len(taken)
        return taken

    def _rows_step(self, job: JobView, state: JobState) -> None:
        rows = self._next_rows(job, state)
        if not rows:
            self.close()
            with self.db.write() as conn:
                self._hold(conn, job)
                self._advance(conn, job, "managers")
            return
        for attempt in range(3):
            try:
                self._apply_rows(job, state, rows)
                return
            except (IntegrityError, DomainError, OperationalError) as exc:
                # A concurrent change took a value, a seat or a department this batch counted
                # on: plan it again against what is there now.
                if attempt == 2 or (
                    isinstance(exc, DomainError) and exc.code is not ErrorCode.SEAT_LIMIT_EXCEEDED
                ):
                    raise
                log.info(
                    "import job %s: batch at row %d planned again: %s", job.id, rows[0].number, exc
                )
                with self.db.read() as conn:
                    state.directory = Directory.load(conn, state.actor)
                state.reader.directory = state.directory
                # Rows read ahead may name what the failed batch created: read them again.
                self.close()
                rows = [state.reader.prepare(r.number, r.cells) for r in rows]

    def _apply_rows(self, job: JobView, state: JobState, rows: list[ReadRow]) -> None:
        with self.db.write() as conn:
            self._hold(conn, job)
            planner = BatchPlanner(conn, state)
            results = planner.plan(rows)
            batch = planner.batch
            if not state.options.dry_run:
                write_batch(conn, state, batch)
            write_results(conn, job.id, results)
            totals = self._totals_after(conn, results)
            totals[DEPARTMENTS_CREATED] = totals.get(DEPARTMENTS_CREATED, 0) + (
                batch.departments_created
            )
            if state.options.dry_run:
                totals[_SEATS] = totals.get(_SEATS, 0) + batch.seats_taken - batch.seats_released
            self._save(conn, job, rows_done=job.rows_done + len(rows), totals=totals)
        if state.options.dry_run:
            state.dry_seats = totals.get(_SEATS, 0)
        for key, number in batch.email_rows.items():
            state.email_rows.setdefault(key, number)

    def _totals_after(self, conn: Connection, results: Sequence[RowResult]) -> dict[str, int]:
        totals = _stored_totals(conn, self.job_id)
        for r in results:
            totals[r.action.value] = totals.get(r.action.value, 0) + 1
        return totals

    def _hold(self, conn: Connection, job: JobView) -> None:
        """Renews this runner's lease on the job, in the batch's transaction; a runner whose
        lease another worker took over stops."""
        if self.owner is None:
            return
        now = utcnow()
        renewed = conn.execute(
            update(import_jobs)
            .where(
                import_jobs.c.id == job.id,
                or_(
                    import_jobs.c.lease_owner == self.owner,
                    import_jobs.c.lease_until.is_(None),
                    import_jobs.c.lease_until < now,
                ),
            )
            .values(lease_owner=self.owner, lease_until=now + timedelta(seconds=LEASE_SECONDS))
        )
        if renewed.rowcount != 1:
            raise LeaseLost(job.id)

    def _save(self, conn: Connection, job: JobView, **values: Any) -> None:
        if "totals" in values:
            values["totals"] = json.dumps(values["totals"])
        conn.execute(update(import_jobs).where(import_jobs.c.id == job.id).values(**values))

    def _advance(self, conn: Connection, job: JobView, phase: str) -> None:
        """On to `phase` (a sync's last one only for a sync); done: the uploaded file goes."""
        if phase == "missing" and job.options.mode is not Mode.SYNC:
            phase = "done"
        if phase != "done":
            self._save(conn, job, phase=phase)
            return
        self._save(conn, job, phase="done", status="done", finished_at=utcnow())
        if not (job.options.dry_run and job.interface == Interface.CONSOLE.value):
            # A plan made in the console keeps its file until it is applied (apply_plan) or
            # purged with the job.
            conn.execute(delete(import_chunks).where(import_chunks.c.job_id == job.id))

    # -- managers --

    def _managers_step(self, job: JobView, state: JobState) -> None:
        """The Manager login cells of a page of rows: the manager is found by login (anywhere
        in the account) and becomes the user's supervisor; an empty cell means "inherit"."""
        with self.db.write() as conn:
            self._hold(conn, job)
            page = conn.execute(
                select(
                    import_results.c.id,
                    import_results.c.row_number,
                    import_results.c.user_id,
                    import_results.c.manager,
                    import_results.c.action,
                    import_results.c.changes,
                )
                .where(
                    import_results.c.job_id == job.id,
                    import_results.c.id > self._managers_after,
                    import_results.c.manager.is_not(None),
                    import_results.c.user_id.is_not(None),
                    import_results.c.error.is_(None),
                )
                .order_by(import_results.c.id)
                .limit(self.batch_rows)
            ).all()
            if not page:
                self._advance(conn, job, "missing")
                return
            totals = self._apply_managers(conn, job, state, page)
            self._save(conn, job, totals=totals)
        self._managers_after = page[-1].id

    def _apply_managers(
        self, conn: Connection, job: JobView, state: JobState, page: Sequence[Any]
    ) -> dict[str, int]:
        return apply_managers(conn, job, state, page, _stored_totals(conn, job.id))

    # -- sync: the users the file leaves out --

    def _owners(self, conn: Connection) -> frozenset[str]:
        if self._owner_ids is None:
            self._owner_ids = frozenset(
                conn.execute(
                    select(user_roles.c.user_id)
                    .join(roles, roles.c.id == user_roles.c.role_id)
                    .where(roles.c.account_id == self._account_id, roles.c.kind == "owner")
                ).scalars()
            )
        return self._owner_ids

    def _missing_step(self, job: JobView, state: JobState) -> None:
        actor = state.actor
        self._account_id = actor.account_id
        scope = edit_scope(actor)
        if self._named is None:
            with self.db.read() as conn:
                self._named = set(
                    conn.execute(
                        select(import_results.c.user_id).where(
                            import_results.c.job_id == job.id,
                            import_results.c.user_id.is_not(None),
                        )
                    ).scalars()
                )
        named = self._named
        with self.db.write() as conn:
            self._hold(conn, job)
            query = (
                select(users.c.id, users.c.login)
                .join(departments, departments.c.id == users.c.department_id)
                .where(
                    users.c.account_id == actor.account_id,
                    users.c.status == ACTIVE,
                    users.c.id > self._missing_after,
                )
                .order_by(users.c.id)
                .limit(self.batch_rows)
            )
            if not scope.account_wide:
                query = query.where(
                    or_(*(departments.c.path.startswith(p, autoescape=True) for p in scope.paths))
                )
            listed = conn.execute(query).all()
            if listed:
                self._missing_after = listed[-1].id
            # The owner is never deactivated by a sync, nor the user running it.
            page = [
                r
                for r in listed
                if r.id not in named and r.id != actor.user_id and r.id not in self._owners(conn)
            ]
            if not listed:
                self._advance(conn, job, "done")
                return
            if not page:
                return
            targets = {t.id: t for t in load_targets(conn, actor, [r.id for r in page], "Login")}
            allowed: list[str] = []
            results: list[RowResult] = []
            for r in page:
                result = RowResult(None, Action.DEACTIVATE, login=r.login, user_id=r.id)
                try:
                    target = targets[r.id]
                    authorize_target(actor, scope, target, "Login")
                    allowed.append(r.id)
                    result.changes = [{"field": "status", "before": ACTIVE, "after": INACTIVE}]
                except DomainError as exc:
                    result.action = Action.ERROR
                    result.error = "not in the file, but not deactivated: " + describe(exc, {})
                results.append(result)
            if allowed and not job.options.dry_run:
                change_status_in(conn, actor, allowed, INACTIVE, "Login")
            write_results(conn, job.id, results)
            totals = self._totals_after(conn, results)
            self._save(conn, job, totals=totals)


class _Reader:
    """A file's rows from a position on, a batch at a time, read into ReadRows.

    (Reading the next batch in a thread while the current one is written was measured: it
    made a 50,000-row import 20% slower, the two threads handing the interpreter lock back and
    forth at every database call.)"""

    def __init__(self, table: Table, skip: int, batch_rows: int, reader: RowReader) -> None:
        self._rows = iter(table.rows)
        self._batch_rows = batch_rows
        self._reader = reader
        self._skip = skip

    def next_batch(self) -> list[ReadRow]:
        try:
            if self._skip:
                for _ in islice(self._rows, self._skip):
                    pass
                self._skip = 0
            return [
                self._reader.prepare(r.number, r.cells)
                for r in islice(self._rows, self._batch_rows)
            ]
        except FileProblem as exc:
            raise JobFailed(str(exc)) from None


class LeaseLost(Exception):
    """Another worker holds the job now."""


# ---- the REST jobs in the background worker --------------------------------------------------


class ImportJobs:
    """The worker's job: runs uploaded imports, one batch per round, so that messages and
    webhooks keep flowing while a large file is applied."""

    def __init__(self, batch_rows: int = BATCH_ROWS) -> None:
        self.batch_rows = batch_rows
        self._runner: JobRunner | None = None
        self._spool: Path | None = None

    def __call__(self, db: Database, worker_id: str) -> int:
        runner = self._runner
        if runner is None:
            job_id = _claim(db, worker_id)
            if job_id is None:
                return 0
            self._spool = _spool_file(db, job_id)
            with db.read() as conn:
                given = conn.execute(
                    select(import_jobs.c.encoding, import_jobs.c.delimiter).where(
                        import_jobs.c.id == job_id
                    )
                ).one()
            runner = self._runner = JobRunner(
                db,
                job_id,
                file_opener(self._spool, given.encoding, given.delimiter),
                batch_rows=self.batch_rows,
                owner=worker_id,
            )
        try:
            more = runner.step()
        except LeaseLost:
            more = False
        except Exception:
            self.close()
            raise
        if not more:
            self.close()
        return 1

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None
        if self._spool is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._spool)
            self._spool = None


def _claim(db: Database, worker_id: str) -> str | None:
    """An uploaded job nobody holds: queued, running under a lease that ran out, or running
    under the lease of a process of this host that is gone (a restarted server takes its jobs
    back at once instead of waiting for the lease to run out)."""
    now = utcnow()
    unfinished = and_(
        import_jobs.c.status.in_(("queued", "running")),
        import_jobs.c.interface.in_((Interface.REST.value, Interface.CONSOLE.value)),
    )
    free = or_(import_jobs.c.lease_until.is_(None), import_jobs.c.lease_until < now)
    with db.write() as conn:
        rows = conn.execute(
            select(import_jobs.c.id, import_jobs.c.lease_owner, import_jobs.c.lease_until)
            .where(unfinished)
            .order_by(import_jobs.c.created_at)
            .limit(50)
        ).all()
        for row in rows:
            lease_free = row.lease_until is None or _aware(row.lease_until) < now
            if not lease_free and not _owner_is_gone(row.lease_owner):
                continue
            held = free if lease_free else import_jobs.c.lease_owner == row.lease_owner
            taken = conn.execute(
                update(import_jobs)
                .where(import_jobs.c.id == row.id, unfinished, held)
                .values(lease_owner=worker_id, lease_until=now + timedelta(seconds=LEASE_SECONDS))
            )
            if taken.rowcount == 1:
                return str(row.id)
    return None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _owner_is_gone(owner: str | None) -> bool:
    """A worker id (host:pid:suffix, see delivery.worker) of this host whose process is gone."""
    if not owner:
        return True
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname()[:40] or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _spool_file(db: Database, job_id: str) -> Path:
    """The uploaded file copied, a chunk at a time, to a local temporary file the reader can
    seek in (an XLSX is a zip)."""
    handle, name = tempfile.mkstemp(prefix="learndir-import-")
    with os.fdopen(handle, "wb") as out:
        seq = 0
        while True:
            with db.read() as conn:
                data = conn.execute(
                    select(import_chunks.c.data).where(
                        import_chunks.c.job_id == job_id, import_chunks.c.seq == seq
                    )
                ).scalar()
            if data is None:
                break
            out.write(data)
            seq += 1
    return Path(name)


def purge_jobs(db: Database, days: int) -> int:
    """Finished jobs older than `days`, with their results."""
    cutoff = utcnow() - timedelta(days=days)
    with db.write() as conn:
        ids = [
            r.id
            for r in conn.execute(
                select(import_jobs.c.id).where(
                    import_jobs.c.finished_at.is_not(None), import_jobs.c.finished_at < cutoff
                )
            )
        ]
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            conn.execute(delete(import_results).where(import_results.c.job_id.in_(chunk)))
            conn.execute(delete(import_jobs).where(import_jobs.c.id.in_(chunk)))
    return len(ids)
