"""Inserting many rows at once, for bulk work (imports): one statement per table and batch.

On SQLite the rows go to the driver's executemany as tuples, each value passed through its
column type's bind processor once (dates to text, booleans to integers): SQLAlchemy's own
executemany processes every parameter of every row through the compiled statement, which for a
batch of a thousand users costs more than the database's work. On PostgreSQL SQLAlchemy's
"insertmanyvalues" already sends a batch as multi-row INSERTs, so it is used as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table, insert


def insert_many(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Inserts `rows` (dicts with the same keys) into `table`."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        conn.execute(insert(table), list(rows))
        return
    names = list(rows[0])
    processors = [table.c[name].type._cached_bind_processor(conn.dialect) for name in names]
    # The table's name unquoted: the worker recognises "INSERT INTO outbox " (see
    # delivery.worker); column names quoted (some are SQL words).
    columns = ", ".join(f'"{name}"' for name in names)
    marks = ", ".join("?" for _ in names)
    if any(processors):
        params = [
            tuple(
                process(row[name]) if process is not None else row[name]
                for name, process in zip(names, processors, strict=True)
            )
            for row in rows
        ]
    else:
        params = [tuple(row[name] for name in names) for row in rows]
    conn.exec_driver_sql(f"INSERT INTO {table.name} ({columns}) VALUES ({marks})", params)
