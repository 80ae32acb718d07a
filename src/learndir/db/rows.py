"""A SELECT that every request runs, executed on the driver's cursor.

SQLAlchemy's execution costs 20 µs (SQLite) to 70 µs (PostgreSQL) of CPU per statement on top
of the driver's (building the cache key, the execution context and the result's metadata; see
docs/benchmarks.md). For the few statements on every request's path (authentication), that is
a tenth of a request. `fetch_rows` compiles such a statement once per dialect and runs it on the
driver's cursor, with SQLAlchemy's own conversions of the results (SQLite keeps timestamps as
text); rows are named tuples with the statement's column names, as SQLAlchemy's rows are.
Not for a list expanded into IN (...): such a statement takes the list as one parameter, an
array on PostgreSQL (`= ANY(:ids)`), JSON on SQLite (`IN (SELECT value FROM json_each(:ids))`).
"""

from __future__ import annotations

import functools
from collections import namedtuple
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Select

from learndir.db.bulk import converter, driver_cursor


class _Compiled:
    def __init__(self, dialect: Any, statement: Select[Any]) -> None:
        compiled = statement.compile(dialect=dialect)
        self.bind_processors: dict[str, Callable[[Any], Any]] = dict(
            compiled._bind_processors  # type: ignore[arg-type]
        )
        self.sql = compiled.string
        self.fixed = dict(compiled.params)
        self.positional = list(compiled.positiontup or []) if compiled.positional else None
        columns = compiled._result_columns
        self.row: Any = namedtuple("Row", [c.keyname for c in columns])  # type: ignore[misc]
        self.convert = converter(
            [
                (index, process)
                for index, c in enumerate(columns)
                if (process := c.type._cached_result_processor(dialect, None)) is not None
            ]
        )


@functools.lru_cache(maxsize=64)
def _compiled(dialect: Any, statement: Select[Any]) -> _Compiled:
    return _Compiled(dialect, statement)


def fetch_rows(conn: Connection, statement: Select[Any], params: dict[str, Any]) -> list[Any]:
    """All rows of `statement` with `params`, on `conn`'s driver connection (its transaction)."""
    compiled = _compiled(conn.dialect, statement)
    values = {**compiled.fixed, **params} if compiled.fixed else params
    if compiled.bind_processors:
        values = {
            name: process(values[name]) if (process := compiled.bind_processors.get(name)) else v
            for name, v in values.items()
        }
    bound: Any = (
        [values[name] for name in compiled.positional]
        if compiled.positional is not None
        else values
    )
    with driver_cursor(conn, compiled.sql, bound) as cursor:
        cursor.execute(compiled.sql, bound)
        fetched = cursor.fetchall()
    make = compiled.row._make
    if compiled.convert is None:
        return [make(values) for values in fetched]
    convert = compiled.convert
    return [make(convert(values)) for values in fetched]
