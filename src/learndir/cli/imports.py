"""`learndir import FILE`: a CSV or Excel file of users applied to an account, with a live
progress bar and a summary; `learndir import --template` writes the account's import template.

The import runs in this process against the database (no server needed), through the same
core as every interface: it is a job like the REST uploads, applied in batches of a thousand
rows, each one transaction. Interrupted, it leaves no half user; run again, it completes.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from learndir.cli.common import DatabaseUrl, JsonFlag, database_url, fail, open_database

# Exit codes of an import: it ran (rows may have been rejected: see the summary and --errors),
# some rows were rejected and --strict was given, the file could not be imported at all.
EXIT_REJECTED_ROWS = 1
EXIT_NOT_IMPORTED = 2
# Rows of a dry run's plan printed as text (--json gives every row).
PLAN_LINES = 100


def register(app: typer.Typer) -> None:
    app.command("import")(import_users)


def import_users(
    file: Annotated[
        Path | None,
        typer.Argument(
            metavar="FILE", help="CSV (any delimiter and encoding) or XLSX file of users."
        ),
    ] = None,
    account_url: Annotated[str, typer.Option("--account-url", help="The account's URL.")] = "",
    login: Annotated[
        str | None,
        typer.Option("--login", help="Import as this user (login or e-mail); default: the owner."),
    ] = None,
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            help="create (new users only), update (existing only), upsert (both), sync (upsert, "
            "and deactivate the users the file leaves out).",
        ),
    ] = "upsert",
    match: Annotated[
        str,
        typer.Option("--match", help="Match users on login, email or a unique profile field."),
    ] = "login",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan; change nothing.")
    ] = False,
    invite: Annotated[
        bool,
        typer.Option("--invite", help="Send new users without a password the invitation e-mail."),
    ] = False,
    errors: Annotated[
        Path | None,
        typer.Option(
            "--errors", help="Write the rejected rows, with an Error column, to this CSV file."
        ),
    ] = None,
    encoding: Annotated[
        str | None, typer.Option("--encoding", help="The CSV's encoding (default: detected).")
    ] = None,
    delimiter: Annotated[
        str | None, typer.Option("--delimiter", help="The CSV's delimiter (default: detected).")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help=f"Exit {EXIT_REJECTED_ROWS} if any row is rejected.")
    ] = False,
    template: Annotated[
        bool,
        typer.Option("--template", help="Write the account's import template instead."),
    ] = False,
    template_format: Annotated[
        str, typer.Option("--format", help="The template's format: csv or xlsx.")
    ] = "csv",
    output: Annotated[
        Path | None, typer.Option("--output", help="Where --template writes (default: stdout).")
    ] = None,
    database: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Import users from a CSV or XLSX file: create, update, upsert or sync."""
    from learndir.core.auth import actor_for_login
    from learndir.core.errors import DomainError

    if not account_url:
        typer.echo("error: --account-url is required", err=True)
        raise typer.Exit(EXIT_NOT_IMPORTED)
    db = open_database(database_url(database))
    try:
        actor = actor_for_login(db, account_url, login)
        if template:
            from learndir.cli.exports import write_template

            write_template(db, actor, template_format, output)
            return
        if file is None:
            typer.echo("error: give the FILE to import (or --template)", err=True)
            raise typer.Exit(EXIT_NOT_IMPORTED)
        if not file.is_file():
            typer.echo(f"error: no file {str(file)!r}", err=True)
            raise typer.Exit(EXIT_NOT_IMPORTED)
        _run(
            db,
            actor,
            file,
            mode,
            match,
            dry_run,
            invite,
            errors,
            encoding,
            delimiter,
            strict,
            as_json,
        )
    except DomainError as exc:
        fail(exc)
    finally:
        db.dispose()


def _run(
    db: Any,
    actor: Any,
    file: Path,
    mode: str,
    match: str,
    dry_run: bool,
    invite: bool,
    errors: Path | None,
    encoding: str | None,
    delimiter: str | None,
    strict: bool,
    as_json: bool,
) -> None:
    from learndir.core.imports.jobs import (
        JobRunner,
        check_csv_options,
        create_job,
        error_report,
        file_opener,
        job_results,
        parse_options,
    )
    from learndir.core.origin import Interface

    options = parse_options(mode, match, invite, dry_run)
    encoding, delimiter = check_csv_options(encoding, delimiter)
    job_id = create_job(db, actor, options, file.name, Interface.CLI)
    started = time.monotonic()
    runner = JobRunner(db, job_id, file_opener(file, encoding, delimiter))
    with _Progress(file.name, enabled=not as_json) as progress:
        job = runner.run_to_end(progress.update)
    seconds = time.monotonic() - started
    if job.status == "failed":
        if as_json:
            typer.echo(json.dumps({"jobId": job.id, "status": "failed", "error": job.failure}))
        typer.echo(f"error: {file.name} was not imported: {job.failure}", err=True)
        raise typer.Exit(EXIT_NOT_IMPORTED)
    rejected = job.totals.get("error", 0)
    if errors is not None:
        from learndir.imports.writers import write_csv

        headers, rows = error_report(db, job)
        with errors.open("wb") as out:
            write_csv(headers, rows, out)
    rows_per_second = job.rows_done / seconds if seconds > 0 else 0.0
    if as_json:
        summary: dict[str, Any] = {
            "jobId": job.id,
            "file": file.name,
            "mode": options.mode.value,
            "dryRun": options.dry_run,
            "status": job.status,
            "rows": job.rows_done,
            "totals": job.totals,
            "seconds": round(seconds, 3),
            "rowsPerSecond": round(rows_per_second, 1),
            "errors": [
                {"row": r.row_number, "login": r.login, "error": r.error}
                for r in job_results(db, job.id, errors_only=True)
            ],
        }
        if options.dry_run:
            summary["plan"] = [
                {
                    "row": r.row_number,
                    "action": r.action,
                    "login": r.login,
                    "userId": r.user_id,
                    "changes": r.changes,
                    "error": r.error,
                }
                for r in job_results(db, job.id)
            ]
        typer.echo(json.dumps(summary, ensure_ascii=False, default=str))
    else:
        if options.dry_run:
            _print_plan(db, job.id)
        verb = "would be" if options.dry_run else "were"
        typer.echo(
            f"{file.name}: {job.rows_done} rows in {seconds:.1f} s "
            f"({rows_per_second:,.0f} rows/s), mode {options.mode.value}"
            + (" (dry run: nothing changed)" if options.dry_run else "")
        )
        for action, count in job.totals.items():
            if count:
                typer.echo(f"  {action:<20} {count:>8}")
        if rejected:
            typer.echo(
                f"{rejected} row(s) {verb} rejected"
                + (
                    f"; the report is in {errors}"
                    if errors is not None
                    else "; --errors FILE writes them with the reason"
                )
            )
    if strict and rejected:
        raise typer.Exit(EXIT_REJECTED_ROWS)


def _print_plan(db: Any, job_id: str) -> None:
    from learndir.core.imports.jobs import job_results

    shown = 0
    hidden = 0
    for r in job_results(db, job_id):
        if r.action == "unchanged" and not r.error:
            continue
        if shown >= PLAN_LINES:
            hidden += 1
            continue
        shown += 1
        where = f"row {r.row_number}" if r.row_number is not None else "not in file"
        what = r.error or ", ".join(c["field"] for c in r.changes)
        typer.echo(f"{where:<12} {r.action:<10} {r.login or '-':<30} {what}")
    if hidden:
        typer.echo(f"... and {hidden} more (--json lists every row)")


class _Progress:
    """A live bar on stderr: rows done of the total, rows per second, time left."""

    def __init__(self, name: str, *, enabled: bool) -> None:
        self.name = name
        self.enabled = enabled and sys.stderr.isatty()
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} rows/s"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.name, total=None, rate="-")
            self._started = time.monotonic()
        return self

    def update(self, job: Any) -> None:
        if self._progress is None:
            return
        elapsed = max(time.monotonic() - self._started, 1e-6)
        self._progress.update(
            self._task,
            total=job.rows_total,
            completed=job.rows_done,
            rate=f"{job.rows_done / elapsed:,.0f}",
            description=f"{self.name} ({job.phase})",
        )

    def __exit__(self, *_exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
