"""Schema migrations: the only way the schema is built, in production and in tests."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from learndir.db.engine import normalize_database_url, nullpool_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same in every learndir process.
_PG_ADVISORY_LOCK_ID = 0x1EA5D1


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


@contextlib.contextmanager
def _sqlite_file_lock(database: str) -> Iterator[None]:
    path = os.path.abspath(database) + ".migrate-lock"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        yield


def upgrade_database(url: str) -> None:
    """Bring the schema to the newest revision; safe when several processes start together."""
    url = normalize_database_url(url)
    parsed = make_url(url)
    engine = nullpool_engine(url)
    try:
        if parsed.get_backend_name() == "sqlite":
            with _sqlite_file_lock(parsed.database or ""), engine.begin() as conn:
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
                command.upgrade(alembic_config(conn), "head")
        else:
            with engine.begin() as conn:
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_ADVISORY_LOCK_ID}
                )
                command.upgrade(alembic_config(conn), "head")
    finally:
        engine.dispose()
