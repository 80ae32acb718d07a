"""`GET /users/export` and `GET /import/template` against a real `learndir serve`, on SQLite and
PostgreSQL: CSV and XLSX files that the import's reader reads back, who may download them, and
the errors of the REST API."""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from learndir.db.engine import Database
from learndir.imports.files import open_table
from learndir.imports.writers import XLSX_MEDIA_TYPE
from tests.support import Server, World, acme_spec, make_world


@pytest.fixture(scope="module")
def world(db: Database) -> World:
    return make_world(db, acme_spec())


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        yield http


def bearer(world: World, login: str = "owner") -> dict[str, str]:
    return {"Authorization": f"Bearer {world.token(login)}", "Accept": "application/json"}


def read_back(tmp_path: Path, content: bytes) -> tuple[list[str], list[tuple[str, ...]]]:
    path = tmp_path / "download"
    path.write_bytes(content)
    with open_table(path) as table:
        return table.headers, [row.cells for row in table.rows]


def test_csv_export(client: httpx.Client, world: World, tmp_path: Path) -> None:
    answer = client.get("/users/export", headers=bearer(world))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["content-disposition"] == 'attachment; filename="users.csv"'
    assert answer.content.startswith(codecs.BOM_UTF8)
    headers, rows = read_back(tmp_path, answer.content)
    assert headers[:2] == ["Login", "Email"]
    assert headers[-1] == "Group"
    by_login = {row[0]: dict(zip(headers, row, strict=True)) for row in rows}
    assert set(by_login) == set(world.users)
    assert by_login["jane.doe"]["Department path"] == "Acme/Sales/Sales EU"
    assert by_login["jane.doe"]["Group"] == "Newcomers"


def test_xlsx_export_under_the_api_prefix(
    client: httpx.Client, world: World, tmp_path: Path
) -> None:
    answer = client.get("/api/v2/users/export", params={"format": "XLSX"}, headers=bearer(world))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == XLSX_MEDIA_TYPE
    assert answer.headers["content-disposition"] == 'attachment; filename="users.xlsx"'
    headers, rows = read_back(tmp_path, answer.content)
    assert "Department ID" in headers
    assert {row[0] for row in rows} == set(world.users)


def test_with_account_credentials_a_department_administrator_gets_their_subtree(
    client: httpx.Client, world: World, tmp_path: Path
) -> None:
    credentials = {
        "X-Auth-Account-Url": world.account_url,
        "X-Auth-Email": "sales.admin",
        "X-Auth-Password": world.passwords["sales.admin"],
    }
    answer = client.get("/users/export", headers=credentials)
    assert answer.status_code == 200, answer.text
    _, rows = read_back(tmp_path, answer.content)
    assert {row[0] for row in rows} == {"sales.admin", "jane.doe"}


def test_refusals(client: httpx.Client, world: World) -> None:
    for path in ("/users/export", "/import/template"):
        answer = client.get(path, params={"format": "pdf"}, headers=bearer(world))
        assert answer.status_code == 400
        assert answer.json()["parameter"] == "format"
        assert client.get(path, headers={"Accept": "application/json"}).status_code == 401
        learner = client.get(path, headers=bearer(world, "jane.doe"))
        assert learner.status_code == 403
        assert learner.json()["message"] == "Permission Denied"


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_the_template(client: httpx.Client, world: World, tmp_path: Path, fmt: str) -> None:
    answer = client.get("/import/template", params={"format": fmt}, headers=bearer(world))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-disposition"] == f'attachment; filename="users-template.{fmt}"'
    headers, rows = read_back(tmp_path, answer.content)
    assert headers[:2] == ["Login", "Email"]
    assert "Employee ID" in headers
    assert headers[-3:] == ["Group", "Password", "Add to Group"]
    assert rows == []
