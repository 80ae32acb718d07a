"""Pooled PostgreSQL connections are not pinged on checkout: one that died (a restarted or
failed-over database, an idle timeout) makes its request run again, once, on a fresh one.
Against a real server whose connections PostgreSQL itself terminates."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from tests.support import PG_ADMIN_URL, Server, World


def _terminate_server_connections(database_url: str) -> int:
    """Ends every other session on the server's database, as a restart would."""
    name = urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return len(rows)


def test_a_dead_connection_is_replaced_without_an_error(
    server: Server, world: World, database_url: str, backend: str
) -> None:
    if backend != "postgres":
        pytest.skip("SQLite has no connections to lose")
    headers = {"Authorization": f"Bearer {world.token('owner')}", "Accept": "application/json"}
    with httpx.Client(base_url=server.base_url, timeout=30) as client:

        def add() -> httpx.Response:
            login = f"dead.{uuid.uuid4().hex[:8]}"
            return client.post(
                "/user",
                headers=headers,
                json={
                    "departmentId": world.root_id,
                    "fields": {"login": login, "employee_id": login},
                },
            )

        def read() -> httpx.Response:
            return client.get("/user", params={"logins[]": "owner"}, headers=headers)

        def retries() -> int:
            return server.log_path.read_text().count("a pooled database connection was dead")

        for call in (add, read):
            assert call().is_success  # the server holds a pooled connection now
            # The pool may also hold connections older than the last one found dead, which
            # SQLAlchemy replaces silently when they are next checked out (up to THREADS of
            # them, 16, after a test that ran many requests side by side on this server): until
            # this kind of request has met a dead one, its connections are ended again.
            before = retries()
            for _attempt in range(24):
                assert _terminate_server_connections(database_url) >= 1
                # The tests' own pool (shared by the later tests of this process) lost its
                # connections too: they are dropped, not left for another test to meet.
                world.db.engine.dispose()
                response = call()
                assert response.is_success, response.text
                if retries() > before:
                    break
            # The request that met a dead connection ran again and succeeded; the server says so.
            assert retries() > before, call
        assert add().status_code == 201
