"""`learndir import` as a user runs it, on SQLite and PostgreSQL: the summary, --json, --dry-run,
--errors, --strict, the template, the export imported back unchanged, and a process killed
mid-import whose rerun completes the file."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from learndir.db.engine import Database
from learndir.db.schema import import_jobs
from learndir.imports.files import open_table
from tests.cli.test_cli import learndir
from tests.support import World, acme_spec, count_users, make_world

HEADER = "Login,Email,First Name,Employee ID,Country,Department code"


@pytest.fixture
def world(db: Database) -> World:
    return make_world(db, acme_spec(seatLimit=None))


def run_import(world: World, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return learndir(
        "import", *args, "--account-url", world.account_url, "--database-url", database_url
    )


def test_import_prints_a_summary_and_writes_the_errors(
    world: World, database_url: str, db: Database, tmp_path: Path
) -> None:
    path = tmp_path / "people.csv"
    path.write_text(
        "\n".join(
            [
                HEADER,
                "cli.one,cli.one@x.test,One,K-1,DE,sales",
                "cli.two,not-an-email,Two,K-2,DE,sales",
                "cli.three,cli.three@x.test,Three,K-3,DE,sales",
            ]
        )
        + "\n"
    )
    errors = tmp_path / "errors.csv"
    done = run_import(world, database_url, str(path), "--errors", str(errors))
    assert done.returncode == 0, done.stderr
    assert "3 rows" in done.stdout and "create" in done.stdout
    assert "1 row(s) were rejected" in done.stdout
    with errors.open(encoding="utf-8-sig", newline="") as report:
        rows = list(csv.reader(report))
    assert rows[0] == [*HEADER.split(","), "Error"]
    assert rows[1][:2] == ["cli.two", "not-an-email"]
    assert rows[1][-1].startswith("row 3: Email")
    assert count_users(db, world.account_id, "cli.") == 2

    # The report fixed and imported again: the rejected row goes in.
    fixed = tmp_path / "fixed.csv"
    with errors.open(encoding="utf-8-sig", newline="") as report:
        table = list(csv.reader(report))
    table[1][1] = "cli.two@x.test"
    with fixed.open("w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows(table)
    again = run_import(world, database_url, str(fixed), "--strict")
    assert again.returncode == 0, again.stderr + again.stdout
    assert count_users(db, world.account_id, "cli.") == 3


def test_json_dry_run_and_strict(
    world: World, database_url: str, db: Database, tmp_path: Path
) -> None:
    path = tmp_path / "plan.csv"
    path.write_text(f"{HEADER}\njson.one,json.one@x.test,J,L-1,DE,sales\njson.two,,J,,DE,sales\n")
    planned = run_import(world, database_url, str(path), "--dry-run", "--json", "--strict")
    assert planned.returncode == 1, planned.stderr
    summary = json.loads(planned.stdout)
    assert summary["dryRun"] is True and summary["status"] == "done"
    assert summary["totals"]["create"] == 1 and summary["totals"]["error"] == 1
    assert [(p["row"], p["action"]) for p in summary["plan"]] == [(2, "create"), (3, "error")]
    assert "Employee ID" in summary["errors"][0]["error"]
    assert count_users(db, world.account_id, "json.") == 0


def test_a_file_that_cannot_be_imported(world: World, database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "wrong.csv"
    path.write_text("Name,Shoe size\nBob,42\n")
    failed = run_import(world, database_url, str(path))
    assert failed.returncode == 2
    assert "Shoe size" in failed.stderr and "Login" in failed.stderr
    missing = run_import(world, database_url, str(tmp_path / "absent.csv"))
    assert missing.returncode == 2 and "no file" in missing.stderr
    bad_mode = run_import(world, database_url, str(path), "--mode", "merge")
    assert bad_mode.returncode == 2 and "mode" in bad_mode.stderr


def test_the_template_and_the_export_import_back_unchanged(
    world: World, database_url: str, tmp_path: Path
) -> None:
    template = tmp_path / "template.csv"
    made = run_import(world, database_url, "--template", "--output", str(template))
    assert made.returncode == 0, made.stderr
    with open_table(template) as table:
        assert table.headers[0] == "Login"
        assert "Password" in table.headers and "Add to Group" in table.headers

    exported = tmp_path / "everyone.xlsx"
    out = learndir(
        "export",
        "--account-url",
        world.account_url,
        "--format",
        "xlsx",
        "--output",
        str(exported),
        "--database-url",
        database_url,
    )
    assert out.returncode == 0, out.stderr
    before = world.snapshot()
    back = run_import(world, database_url, str(exported), "--mode", "sync", "--json", "--strict")
    assert back.returncode == 0, back.stdout + back.stderr
    summary = json.loads(back.stdout)
    assert summary["totals"]["unchanged"] == summary["rows"] >= 5, summary
    assert set(summary["totals"]) >= {"create", "update"}
    assert all(v == 0 for k, v in summary["totals"].items() if k != "unchanged")
    assert world.snapshot() == before


def test_killed_mid_import_then_run_again(
    world: World, database_url: str, db: Database, tmp_path: Path
) -> None:
    rows = 12_000
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER + "\n")
        for i in range(rows):
            out.write(f"kill{i:05d},kill{i:05d}@x.test,K,KX-{i},DE,sales\n")
    command = [
        sys.executable,
        "-m",
        "learndir",
        "import",
        str(path),
        "--account-url",
        world.account_url,
        "--database-url",
        database_url,
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    try:
        # Killed once some batches are in and before the end.
        while time.monotonic() < deadline:
            done = count_users(db, world.account_id, "kill")
            if done >= 2000:
                break
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    partial = count_users(db, world.account_id, "kill")
    assert 0 < partial < rows
    assert partial % 2000 == 0  # whole batches, never half of one
    with db.read() as conn:
        assert (
            conn.execute(
                select(import_jobs.c.status).where(import_jobs.c.account_id == world.account_id)
            ).scalar_one()
            == "running"
        )
    rerun = learndir(*command[3:], "--json")
    assert rerun.returncode == 0, rerun.stderr
    summary: dict[str, Any] = json.loads(rerun.stdout)
    assert summary["totals"]["unchanged"] == partial
    assert summary["totals"]["create"] == rows - partial
    assert count_users(db, world.account_id, "kill") == rows
