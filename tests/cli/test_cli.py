"""The `learndir` command as a user runs it: init from account files, API keys, errors."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support import ROOT, acme_spec, start_server, stop_server


def learndir(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "learndir", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def write_spec(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / f"account-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_init_prints_ids_and_a_working_api_key(database_url: str, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, acme_spec())
    result = learndir("init", "--account-file", str(spec), "--database-url", database_url, "--json")
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert set(created) == {
        "accountId",
        "accountUrl",
        "rootDepartmentId",
        "ownerUserId",
        "clientId",
        "clientSecret",
    }
    server = start_server(database_url, tmp_path)
    try:
        token = httpx.post(
            f"{server.base_url}/api/v3/token",
            data={
                "client_id": created["clientId"],
                "client_secret": created["clientSecret"],
                "grant_type": "client_credentials",
            },
        ).json()["access_token"]
        response = httpx.post(
            f"{server.base_url}/user",
            headers={"Authorization": token, "Accept": "application/json"},
            json={
                "departmentId": created["rootDepartmentId"],
                "fields": {"login": "cli.user", "employee_id": "C-1"},
            },
        )
        assert response.status_code == 201, response.text
    finally:
        stop_server(server)


def test_init_twice_is_a_clear_error(database_url: str, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, acme_spec())
    assert (
        learndir("init", "--account-file", str(spec), "--database-url", database_url).returncode
        == 0
    )
    again = learndir("init", "--account-file", str(spec), "--database-url", database_url)
    assert again.returncode == 3
    assert "already" in again.stderr and "Traceback" not in again.stderr


def test_database_url_from_environment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    spec = write_spec(tmp_path, acme_spec())
    result = learndir(
        "init", "--account-file", str(spec), "--json", env={"LEARNDIR_DATABASE_URL": url}
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "env.db").exists()


def test_api_key_create(database_url: str, tmp_path: Path) -> None:
    data = acme_spec()
    assert (
        learndir(
            "init",
            "--account-file",
            str(write_spec(tmp_path, data)),
            "--database-url",
            database_url,
        ).returncode
        == 0
    )
    result = learndir(
        "api-key",
        "create",
        "--account-url",
        data["url"],
        "--login",
        "sales.admin",
        "--database-url",
        database_url,
        "--json",
    )
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)) == {"clientId", "clientSecret"}
    unknown = learndir(
        "api-key",
        "create",
        "--account-url",
        data["url"],
        "--login",
        "nobody",
        "--database-url",
        database_url,
    )
    assert unknown.returncode == 2 and "nobody" in unknown.stderr


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (
            {"users": [{"login": "x", "department": "nowhere", "fields": {"employee_id": "1"}}]},
            "nowhere",
        ),
        ({"users": [{"login": "x"}]}, "employee_id"),
        ({"customRoles": [{"name": "Bad", "permissions": ["fly"]}]}, "fly"),
        ({"profileFields": [{"name": "x", "type": "colour"}]}, "colour"),
        ({"seatLimit": 2}, "seatLimit"),
        ({"owner": {"login": "o", "password": "short"}}, "password"),
    ],
)
def test_invalid_account_file_creates_nothing(
    database_url: str, tmp_path: Path, change: dict[str, Any], complaint: str
) -> None:
    data = acme_spec(**change)
    result = learndir(
        "init", "--account-file", str(write_spec(tmp_path, data)), "--database-url", database_url
    )
    assert result.returncode == 2 or result.returncode == 5, result.stderr
    assert complaint in result.stderr and "Traceback" not in result.stderr
    # Nothing was created: the same file, corrected, still inits under the same URL.
    fixed = acme_spec(url=data["url"])
    assert (
        learndir(
            "init",
            "--account-file",
            str(write_spec(tmp_path, fixed)),
            "--database-url",
            database_url,
        ).returncode
        == 0
    )


def test_malformed_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("url: [unclosed")
    result = learndir(
        "init", "--account-file", str(bad), "--database-url", f"sqlite:///{tmp_path / 'x.db'}"
    )
    assert result.returncode == 2 and "not valid YAML" in result.stderr


@pytest.mark.parametrize("name", ["acme.yaml", "demo.yaml"])
def test_shipped_examples_init(name: str, tmp_path: Path) -> None:
    result = learndir(
        "init",
        "--account-file",
        str(ROOT / "examples" / name),
        "--database-url",
        f"sqlite:///{tmp_path / 'ex.db'}",
        "--json",
    )
    assert result.returncode == 0, result.stderr
