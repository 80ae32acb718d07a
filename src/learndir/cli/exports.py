"""`learndir export`: every user an account's user may see, as a CSV or XLSX file that
`learndir import` reads back; and `write_template`, the empty file `learndir import --template`
writes."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from learndir.cli.common import DatabaseUrl, database_url, fail, open_database
from learndir.core.errors import DomainError, invalid
from learndir.imports.writers import table_format, write_csv, write_xlsx

if TYPE_CHECKING:
    from learndir.core.actor import Actor
    from learndir.db.engine import Database

Format = Annotated[str, typer.Option("--format", help="csv (UTF-8 with BOM) or xlsx.")]
Output = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="The file to write; default standard output (CSV only)."),
]


def check_destination(fmt: str, output: Path | None) -> str:
    """The format `fmt` names (csv or xlsx); Wrong parameters when it names none, or for XLSX
    without a file to write."""
    fmt = table_format(fmt)
    if fmt == "xlsx" and output is None:
        raise invalid("output", "an XLSX workbook needs --output FILE; only CSV goes to stdout")
    return fmt


def write_table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], fmt: str, output: Path | None
) -> None:
    """The table in `fmt` to `output`, or to standard output. A file is written under a
    temporary name and renamed when complete, so a failed export leaves no half a file."""
    fmt = check_destination(fmt, output)
    writer = write_xlsx if fmt == "xlsx" else write_csv
    if output is None:
        write_csv(headers, rows, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    partial = output.with_name(f".{output.name}.part")
    try:
        with partial.open("wb") as out:
            writer(headers, rows, out)
        os.replace(partial, output)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def write_template(db: Database, actor: Actor, fmt: str, output: Path | None) -> None:
    """The import template of the actor's account (the export's headers with one Group column,
    then Password and Add to Group, no rows) in `fmt` to `output` or standard output."""
    from learndir.core.imports.export import template_headers

    write_table(template_headers(db, actor), [], fmt, output)


def _counted(rows: Iterable[Sequence[str]], count: list[int]) -> Iterator[Sequence[str]]:
    for row in rows:
        count[0] += 1
        yield row


def export(
    account_url: Annotated[str, typer.Option("--account-url", help="The account's URL.")],
    login: Annotated[
        str | None,
        typer.Option(
            "--login", help="Export as this user (login or e-mail); default the account owner."
        ),
    ] = None,
    fmt: Format = "csv",
    output: Output = None,
    database: DatabaseUrl = None,
) -> None:
    """Write every user LOGIN may see as a file that `learndir import` reads back: profile
    fields, department, status, roles, manager and groups."""
    from learndir.core.auth import actor_for_login
    from learndir.core.imports.export import export_users

    try:
        fmt = check_destination(fmt, output)
    except DomainError as exc:
        fail(exc)
    db = open_database(database_url(database))
    count = [0]
    try:
        headers, rows = export_users(db, actor_for_login(db, account_url, login))
        write_table(headers, _counted(rows, count), fmt, output)
    except DomainError as exc:
        fail(exc)
    except OSError as exc:
        typer.echo(f"error: cannot write {output}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    finally:
        db.dispose()
    where = f" to {output}" if output is not None else ""
    typer.echo(f"exported {count[0]} user(s){where}", err=True)


def register(app: typer.Typer) -> None:
    """Adds `learndir export` to the command."""
    app.command("export")(export)
