"""Inserting many rows at once, for bulk work (imports): one statement per table and batch.

On SQLite the rows go to the driver's executemany as tuples, each value passed through its
column type's bind processor once (dates to text, booleans to integers): SQLAlchemy's own
executemany processes every parameter of every row through the compiled statement, which for a
batch of a thousand users costs more than the database's work. On PostgreSQL a batch goes by
COPY, in the same transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any

import psycopg
from sqlalchemy import Connection, Table, insert
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError


def insert_many(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], *, skip_taken: bool = False
) -> int:
    """Inserts `rows` (dicts with the same keys) into `table`; returns how many went in. With
    `skip_taken`, a row a unique index refuses is left out (ON CONFLICT DO NOTHING) instead of
    raising, which on PostgreSQL would abort the transaction."""
    if not rows:
        return 0
    if conn.dialect.name == "postgresql":
        if skip_taken:
            # One multi-row statement: its row count is that of all the rows.
            skipping = postgresql.insert(table).values(list(rows)).on_conflict_do_nothing()
            return conn.execute(skipping.execution_options(preserve_rowcount=True)).rowcount
        if len(rows) < _COPY_FROM or table.name in _NOTICED:
            conn.execute(insert(table), list(rows))
        else:
            _copy(conn, table, rows)
        return len(rows)
    statement, params = sqlite_insert(conn.dialect, table, rows, skip_taken=skip_taken)
    if not conn.in_transaction():
        # SQLAlchemy begins the transaction first (see the engine's "begin" event).
        result = conn.exec_driver_sql(
            statement, params, execution_options={"preserve_rowcount": True}
        )
        return int(result.rowcount)
    return sqlite_execute(conn, statement, params)


def sqlite_insert(
    dialect: Any, table: Table, rows: Sequence[dict[str, Any]], *, skip_taken: bool = False
) -> tuple[str, list[Any]]:
    """SQLite's INSERT of `rows` (dicts with the same keys) into `table`, and its parameters as
    the driver takes them: a tuple per row, each value through its column type's conversion."""
    names = list(rows[0])
    get = itemgetter(*names)
    if len(names) == 1:
        params: list[Any] = [(get(row),) for row in rows]
    else:
        params = list(map(get, rows))
    convert = converter(
        [
            (index, process)
            for index, name in enumerate(names)
            if (process := table.c[name].type._cached_bind_processor(dialect)) is not None
        ]
    )
    if convert is not None:
        params = [convert(values) for values in params]
    # The table's name unquoted: the worker recognises "INSERT INTO outbox " (see
    # delivery.worker); column names quoted (some are SQL words).
    columns = ", ".join(f'"{name}"' for name in names)
    marks = ", ".join("?" for _ in names)
    statement = f"INSERT INTO {table.name} ({columns}) VALUES ({marks})"
    if skip_taken:
        statement += " ON CONFLICT DO NOTHING"
    return statement, params


def sqlite_execute(conn: Connection, statement: str, params: list[Any]) -> int:
    """`statement` for each row of `params` on the driver's cursor, in the connection's open
    transaction: what exec_driver_sql does, without its 20 µs of CPU per statement (addUser's
    three inserts, see db.rows)."""
    many = len(params) > 1
    bound: Any = params if many else params[0]
    with driver_cursor(conn, statement, bound, many=many) as cursor:
        if many:
            cursor.executemany(statement, bound)
        else:
            cursor.execute(statement, bound)
        conn.dispatch.after_cursor_execute(conn, cursor, statement, bound, None, many)
        return int(cursor.rowcount)


@contextlib.contextmanager
def driver_cursor(
    conn: Connection, statement: str, bound: Any, *, many: bool = False
) -> Iterator[Any]:
    """A cursor of `conn`'s driver connection (its transaction) for running `statement` with
    `bound` straight on the driver. What watches statements sees it as any other (the request's
    transaction or writers' lock, statements a PostgreSQL request deferred sent first: see
    db.engine); a driver error is raised as SQLAlchemy would raise it (IntegrityError for a
    violated constraint, a connection found dead invalidated, so that the request runs again on
    a fresh one: see Database.run)."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        conn.dispatch.before_cursor_execute(conn, cursor, statement, bound, None, many)
        yield cursor
    except conn.dialect.loaded_dbapi.Error as exc:
        conn._handle_dbapi_exception(exc, statement, bound, cursor, None)
        raise  # pragma: no cover - the line above always raises
    finally:
        cursor.close()


def converter(
    processors: Sequence[tuple[int, Callable[[Any], Any]]],
) -> Callable[[tuple[Any, ...]], tuple[Any, ...]] | None:
    """A function applying SQLAlchemy's conversions (`processors`: position, function) to a
    row of values; None when there is nothing to convert."""
    if not processors:
        return None

    def convert(row: tuple[Any, ...]) -> tuple[Any, ...]:
        values = list(row)
        for index, process in processors:
            values[index] = process(values[index])
        return tuple(values)

    return convert


# Below this many rows a plain INSERT costs less than starting a COPY.
_COPY_FROM = 50
# Tables whose INSERT statements the worker watches for (see delivery.worker): a COPY would
# not wake it.
_NOTICED = frozenset({"outbox", "webhook_deliveries", "import_jobs"})


def _copy(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """PostgreSQL's COPY, in the connection's transaction: a thousand rows in one round trip,
    without building an INSERT (measured: a third of the time of SQLAlchemy's multi-row
    INSERTs for an import's batch)."""
    from learndir.db.engine import before_driver_use

    before_driver_use(conn)
    names = list(rows[0])
    get = itemgetter(*names)
    columns = ", ".join(f'"{name}"' for name in names)
    statement = f"COPY {table.name} ({columns}) FROM STDIN"
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(statement) as copy:
            if len(names) == 1:
                for row in rows:
                    copy.write_row((get(row),))
            else:
                for row in rows:
                    copy.write_row(get(row))
    except psycopg.errors.IntegrityError as exc:
        # As an INSERT's would be: the callers tell a taken value from any other failure.
        raise IntegrityError(statement, None, exc) from None
    finally:
        cursor.close()
