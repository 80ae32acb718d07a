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
from sqlalchemy import select

from learndir.db.engine import Database
from learndir.db.schema import outbox
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


def test_init_keeps_the_owner_profile_and_the_invitation_text(
    database_url: str, tmp_path: Path
) -> None:
    owner = {
        "login": "boss",
        "email": "boss@acme.test",
        "password": "Boss-Pass-1",
        "fields": {
            "first_name": "Bea",
            "last_name": "Boss",
            "job_title": "CEO",
            "employee_id": "E-0",
            "country": "Germany",
        },
    }
    text = "Welcome to Acme's academy: sign in with the login below."
    spec = write_spec(tmp_path, acme_spec(owner=owner, invitationMessage=text, users=[]))
    result = learndir("init", "--account-file", str(spec), "--database-url", database_url, "--json")
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    server = start_server(database_url, tmp_path)
    try:
        headers = {
            "X-Auth-Account-Url": created["accountUrl"],
            "X-Auth-Email": "boss",
            "X-Auth-Password": "Boss-Pass-1",
            "Accept": "application/json",
        }
        profile = httpx.get(
            f"{server.base_url}/user/{created['ownerUserId']}", headers=headers
        ).json()
        assert profile["fields"] == [
            {"name": "LOGIN", "value": "boss"},
            {"name": "EMAIL", "value": "boss@acme.test"},
            {"name": "FIRST_NAME", "value": "Bea"},
            {"name": "LAST_NAME", "value": "Boss"},
            {"name": "JOB_TITLE", "value": "CEO"},
            {"name": "EMPLOYEE_ID", "value": "E-0"},
            {"name": "COUNTRY", "value": "DE"},
        ]
        # The owner's unique value is taken like anyone's.
        taken = httpx.post(
            f"{server.base_url}/user",
            headers=headers,
            json={
                "departmentId": created["rootDepartmentId"],
                "fields": {"login": "dup", "employee_id": "e-0"},
            },
        )
        assert taken.status_code == 409, taken.text
        invited = httpx.post(
            f"{server.base_url}/user",
            headers=headers,
            json={
                "departmentId": created["rootDepartmentId"],
                "fields": {"login": "newbie", "email": "newbie@acme.test", "employee_id": "E-9"},
                "sendLoginEmail": True,
            },
        )
        assert invited.status_code == 201, invited.text
    finally:
        stop_server(server)
    db = Database(database_url)
    try:
        with db.read() as conn:
            messages = conn.execute(
                select(outbox.c.recipient, outbox.c.message).where(
                    outbox.c.account_id == created["accountId"]
                )
            ).all()
    finally:
        db.dispose()
    assert [tuple(m) for m in messages] == [("newbie@acme.test", text)]


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
        # Keys learndir does not know are errors that name them, never ignored.
        ({"seatlimit": 5}, "seatlimit: unknown key"),
        ({"owner": {"login": "o", "nickname": "Boss"}}, "owner.nickname: unknown key"),
        ({"departments": [{"name": "X", "kode": "x"}]}, "departments.0.kode: unknown key"),
        ({"invitationMessage": ""}, "invitationMessage"),
        # The owner's profile values are checked like anyone's.
        ({"owner": {"login": "o", "fields": {"birthday": "someday"}}}, "fields.birthday"),
        ({"owner": {"login": "o", "fields": {"shoe_size": "42"}}}, "fields.shoe_size"),
        # The input rule for text (core.text), as for any request.
        ({"departments": [{"name": "a\x00b"}]}, "departments[0].name: must not contain"),
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
