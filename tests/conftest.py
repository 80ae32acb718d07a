"""Fixtures: every data test runs on SQLite and on PostgreSQL; servers are real processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from learndir.db.engine import Database
from learndir.db.migrate import upgrade_database
from tests.support import (
    Server,
    World,
    acme_spec,
    fresh_postgres_database,
    make_world,
    postgres_available,
    start_server,
    stop_server,
)

# A real headless browser for page tests (fixtures `browser` and `offline_page`); a real SMTP
# server and HTTP receiver (`smtp_server`, `http_receiver`).
pytest_plugins = ["tests.browser", "tests.receivers"]

BACKENDS = ["sqlite", "postgres"]


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("CI") and not postgres_available():
        raise pytest.UsageError("CI is set and PostgreSQL on 127.0.0.1:5432 is unreachable")


@pytest.fixture(scope="session")
def _pg_ok() -> bool:
    return postgres_available()


def migrated_database(
    kind: str, tmp_path_factory: pytest.TempPathFactory, pg_ok: bool, prefix: str = "learndir_test"
) -> Iterator[str]:
    """A new, migrated, empty database of `kind` (sqlite or postgres), removed afterwards."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'learndir.db'}"
        upgrade_database(url)
        yield url
        return
    if not pg_ok:
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    with fresh_postgres_database(prefix) as url:
        upgrade_database(url)
        yield url


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, _pg_ok: bool
) -> Iterator[str]:
    """A migrated, empty database of each kind, shared by the tests of one worker."""
    yield from migrated_database(request.param, tmp_path_factory, _pg_ok)


@pytest.fixture(scope="session")
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(database_url, Path(tmp_path_factory.mktemp("logs")))
    yield running
    stop_server(running)


@pytest.fixture(scope="session")
def world(db: Database) -> World:
    """The acme account (examples/acme.yaml) under a unique URL, shared within a session."""
    return make_world(db, acme_spec())


@pytest.fixture
def backend(database_url: str) -> str:
    return "sqlite" if database_url.startswith("sqlite") else "postgres"
