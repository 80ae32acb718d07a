"""The client address behind a reverse proxy: taken from X-Forwarded-For only when the
connection comes from a proxy in LEARNDIR_FORWARDED_ALLOW_IPS, as the audit trail records it
(sign-in throttling counts the same address)."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from learndir.db.schema import audit_log
from tests.support import Server, World, start_server, stop_server


def _add_user_through(base_url: str, w: World, forwarded_for: str) -> str:
    login = f"fwd.{uuid.uuid4().hex[:8]}"
    response = httpx.post(
        f"{base_url}/user",
        headers={
            "Authorization": f"Bearer {w.token('owner')}",
            "Accept": "application/json",
            "X-Forwarded-For": forwarded_for,
        },
        json={"departmentId": w.root_id, "fields": {"login": login, "employee_id": login}},
    )
    assert response.status_code == 201, response.text
    return str(response.json())


def _recorded_address(w: World, user_id: str) -> str | None:
    with w.db.read() as conn:
        addresses = (
            conn.execute(select(audit_log.c.client_address).where(audit_log.c.target_id == user_id))
            .scalars()
            .all()
        )
    assert len(addresses) == 1
    return addresses[0]


def test_a_trusted_proxy_gives_the_client_address(server: Server, world: World) -> None:
    """The default trusts a proxy on the same machine (the tests' loopback connection)."""
    user_id = _add_user_through(server.base_url, world, "203.0.113.7")
    assert _recorded_address(world, user_id) == "203.0.113.7"


def test_anyone_else_cannot_claim_an_address(
    database_url: str, world: World, backend: str, tmp_path: Path
) -> None:
    if backend != "sqlite":
        pytest.skip("the address is the HTTP layer's: one database is enough")
    untrusting = start_server(
        database_url, tmp_path, env={"LEARNDIR_FORWARDED_ALLOW_IPS": "10.0.0.5"}
    )
    try:
        user_id = _add_user_through(untrusting.base_url, world, "203.0.113.7")
    finally:
        stop_server(untrusting)
    assert _recorded_address(world, user_id) == "127.0.0.1"
