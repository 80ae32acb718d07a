"""`learndir export` as a user runs it, on SQLite and PostgreSQL, and the template writer that
`learndir import --template` calls."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from learndir.cli.exports import write_template
from learndir.core.auth import actor_for_login
from learndir.core.errors import DomainError
from learndir.db.engine import Database
from learndir.imports.files import open_table
from tests.cli.test_cli import learndir
from tests.support import World, acme_spec, make_world


@pytest.fixture(scope="module")
def world(db: Database) -> World:
    return make_world(db, acme_spec())


def logins_in(path: Path) -> set[str]:
    with open_table(path) as table:
        assert table.headers[0] == "Login"
        return {row.cells[0] for row in table.rows}


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_export_to_a_file(world: World, database_url: str, tmp_path: Path, fmt: str) -> None:
    output = tmp_path / f"users.{fmt}"
    result = learndir(
        "export",
        "--account-url",
        world.account_url,
        "--format",
        fmt,
        "--output",
        str(output),
        "--database-url",
        database_url,
    )
    assert result.returncode == 0, result.stderr
    assert logins_in(output) == set(world.users)
    assert f"exported {len(world.users)} user(s) to {output}" in result.stderr
    assert list(tmp_path.iterdir()) == [output]


def test_export_csv_to_stdout_as_a_department_administrator(
    world: World, database_url: str, tmp_path: Path
) -> None:
    result = learndir(
        "export",
        "--account-url",
        world.account_url,
        "--login",
        "SALES.ADMIN@acme.test",
        "--database-url",
        database_url,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("\ufeffLogin,Email,")
    path = tmp_path / "out.csv"
    path.write_text(result.stdout, encoding="utf-8")
    assert logins_in(path) == {"sales.admin", "jane.doe"}
    assert "exported 2 user(s)" in result.stderr


def test_export_errors(world: World, database_url: str) -> None:
    base = ("export", "--database-url", database_url)
    xlsx = learndir(*base, "--account-url", world.account_url, "--format", "xlsx")
    assert xlsx.returncode == 2
    assert "--output" in xlsx.stderr
    unknown_format = learndir(*base, "--account-url", world.account_url, "--format", "pdf")
    assert unknown_format.returncode == 2
    assert "'pdf'" in unknown_format.stderr
    nowhere = learndir(*base, "--account-url", "http://nowhere.learn.test")
    assert nowhere.returncode == 7
    assert "nowhere.learn.test" in nowhere.stderr
    nobody = learndir(*base, "--account-url", world.account_url, "--login", "nobody")
    assert nobody.returncode == 7
    assert "'nobody'" in nobody.stderr
    learner = learndir(*base, "--account-url", world.account_url, "--login", "jane.doe")
    assert learner.returncode == 6
    assert learner.stdout == ""


def test_the_template_writer(
    world: World, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    owner = actor_for_login(world.db, world.account_url, None)
    for fmt in ("csv", "xlsx"):
        path = tmp_path / f"template.{fmt}"
        write_template(world.db, owner, fmt, path)
        with open_table(path) as table:
            assert table.headers[-3:] == ["Group", "Password", "Add to Group"]
            assert list(table.rows) == []
    write_template(world.db, owner, "csv", None)
    out = capsysbinary.readouterr().out
    assert out.startswith(codecs.BOM_UTF8 + b"Login,Email,")
    assert out.count(b"\r\n") == 1
    with pytest.raises(DomainError) as caught:
        write_template(world.db, owner, "xlsx", None)
    assert caught.value.parameter == "output"
