"""What every `learndir` command module shares: the database option, opening the database and
the one table that maps domain errors to exit codes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Annotated, Any, NoReturn

import typer

from learndir.core.errors import DomainError, ErrorCode

DEFAULT_DATABASE_URL = "sqlite:///learndir.db"

# Domain error -> process exit code.
EXIT_CODES: dict[ErrorCode, int] = {
    ErrorCode.INVALID_PARAMETERS: 2,
    ErrorCode.ACCOUNT_EXISTS: 3,
    ErrorCode.LOGIN_TAKEN: 4,
    ErrorCode.EMAIL_TAKEN: 4,
    ErrorCode.FIELD_VALUE_TAKEN: 4,
    ErrorCode.SEAT_LIMIT_EXCEEDED: 5,
    ErrorCode.PERMISSION_DENIED: 6,
    ErrorCode.UNAUTHENTICATED: 6,
    ErrorCode.NOT_FOUND: 7,
    ErrorCode.DEPARTMENT_NOT_EMPTY: 8,
    ErrorCode.TOO_MANY_ATTEMPTS: 9,
}

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help=f"SQLAlchemy URL; default $LEARNDIR_DATABASE_URL, else {DEFAULT_DATABASE_URL}",
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def database_url(option: str | None) -> str:
    return option or os.environ.get("LEARNDIR_DATABASE_URL") or DEFAULT_DATABASE_URL


def fail(exc: DomainError) -> NoReturn:
    typer.echo(f"error: {exc.describe()}", err=True)
    raise typer.Exit(EXIT_CODES.get(exc.code, 1))


def open_database(url: str) -> Any:
    from learndir.db.engine import Database
    from learndir.db.migrate import upgrade_database

    upgrade_database(url)
    return Database(url, pool_size=2)


def when_text(moment: Any) -> str:
    """A time in a table: to the second, "-" when there is none."""
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment is not None else "-"


def iso_or_none(moment: Any) -> str | None:
    """A time in JSON output (ISO 8601, UTC, milliseconds), None when there is none."""
    from learndir.core.changes import iso_utc

    return iso_utc(moment) if moment is not None else None


def print_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    """Columns padded to their widest cell; the last one is left as it is."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        typer.echo("  ".join([*cells, row[-1]]))
