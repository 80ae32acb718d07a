"""`learndir api-key list|revoke` as a user runs them, and revocation seen at once by a second
server process on the same database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from learndir.core.auth import create_api_key
from learndir.db.engine import Database
from tests.api.rest.test_api_keys import buy_token, keys_call, works
from tests.cli.test_cli import learndir
from tests.support import Server, acme_spec, make_world, start_server, stop_server


def test_list_and_revoke(database_url: str, db: Database, server: Server) -> None:
    world = make_world(db, acme_spec())
    other = make_world(db, acme_spec())
    made = learndir(
        "api-key",
        "create",
        "--account-url",
        world.account_url,
        "--login",
        "admin",
        "--database-url",
        database_url,
        "--json",
    )
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    token = buy_token(server, key["clientId"], key["clientSecret"]).json()["access_token"]
    assert works(server, token)

    listed = learndir(
        "api-key",
        "list",
        "--account-url",
        world.account_url,
        "--database-url",
        database_url,
        "--json",
    )
    assert listed.returncode == 0, listed.stderr
    keys = {k["clientId"]: k for k in json.loads(listed.stdout)}
    assert {k["accountUrl"] for k in keys.values()} == {world.account_url}
    assert set(keys[key["clientId"]]) == {
        "clientId",
        "accountUrl",
        "userId",
        "login",
        "createdAt",
        "lastUsedAt",
        "revokedAt",
    }
    mine = keys[key["clientId"]]
    assert mine["login"] == "admin" and mine["userId"] == world.users["admin"]
    assert mine["lastUsedAt"] is not None and mine["revokedAt"] is None
    assert key["clientSecret"] not in listed.stdout

    everyone = learndir("api-key", "list", "--database-url", database_url)
    assert everyone.returncode == 0, everyone.stderr
    assert everyone.stdout.splitlines()[0].split()[:3] == ["client", "id", "account"]
    assert world.account_url in everyone.stdout and other.account_url in everyone.stdout

    revoked = learndir("api-key", "revoke", key["clientId"], "--database-url", database_url)
    assert revoked.returncode == 0, revoked.stderr
    assert key["clientId"] in revoked.stdout and "revoked" in revoked.stdout
    assert not works(server, token)
    assert buy_token(server, key["clientId"], key["clientSecret"]).status_code == 401
    after = learndir(
        "api-key",
        "list",
        "--account-url",
        world.account_url,
        "--database-url",
        database_url,
        "--json",
    )
    assert {k["clientId"]: k for k in json.loads(after.stdout)}[key["clientId"]]["revokedAt"]

    again = learndir("api-key", "revoke", key["clientId"], "--database-url", database_url)
    assert again.returncode == 0 and "already revoked" in again.stdout
    unknown = learndir("api-key", "revoke", "0" * 32, "--database-url", database_url)
    assert unknown.returncode == 7
    assert "Unknown API key" in unknown.stderr and "Traceback" not in unknown.stderr


def test_revocation_is_seen_at_once_by_a_second_server(
    database_url: str, db: Database, server: Server, tmp_path: Path
) -> None:
    world = make_world(db, acme_spec())
    owner = world.token("owner")
    second = start_server(database_url, tmp_path)
    try:
        # Revoked over REST on the first server.
        key = create_api_key(db, world.account_url, "admin")
        token = buy_token(server, key.client_id, key.client_secret).json()["access_token"]
        assert works(second, token) and works(server, token)
        answer = keys_call(server, "DELETE", f"/{key.client_id}", token=owner)
        assert answer.status_code == 204, answer.text
        assert not works(second, token)
        assert not works(server, token)
        assert buy_token(second, key.client_id, key.client_secret).status_code == 401

        # Revoked from the command line while both servers serve its token.
        key = create_api_key(db, world.account_url, "sales.admin")
        token = buy_token(second, key.client_id, key.client_secret).json()["access_token"]
        assert works(server, token) and works(second, token)
        revoked = learndir("api-key", "revoke", key.client_id, "--database-url", database_url)
        assert revoked.returncode == 0, revoked.stderr
        assert not works(second, token)
        assert not works(server, token)
        listed = httpx.get(
            f"{second.base_url}/api-keys",
            headers={"Authorization": f"Bearer {owner}", "Accept": "application/json"},
            timeout=30,
        ).json()
        assert {k["clientId"]: k for k in listed}[key.client_id]["revokedAt"]
    finally:
        stop_server(second)
