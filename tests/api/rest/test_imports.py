"""`POST /import` and the job's status, rows and error report against a real `learndir serve`
(its background worker runs the job), on SQLite and PostgreSQL: a dry run then the real run,
who may import, what is refused, and a job that resumes after the server is killed."""

from __future__ import annotations

import csv
import io
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from learndir.db.engine import Database
from learndir.db.schema import import_jobs, users
from tests.api.rest.test_exports import bearer
from tests.support import (
    Server,
    World,
    acme_spec,
    count_users,
    make_world,
    start_server,
    stop_server,
)

HEADER = "Login,Email,First Name,Employee ID,Country,Department code"


@pytest.fixture(scope="module")
def world(db: Database) -> World:
    return make_world(db, acme_spec(seatLimit=None))


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        yield http


def upload(
    client: httpx.Client,
    world: World,
    content: bytes,
    *,
    login: str = "owner",
    name: str = "people.csv",
    path: str = "/import",
    **fields: str,
) -> httpx.Response:
    return client.post(
        path, headers=bearer(world, login), files={"file": (name, content)}, data=fields
    )


def finished(
    client: httpx.Client, world: World, job_id: str, timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/import/{job_id}", headers=bearer(world))
        assert status.status_code == 200, status.text
        job: dict[str, Any] = status.json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_dry_run_then_import(client: httpx.Client, world: World, db: Database) -> None:
    content = (
        f"{HEADER}\nrest.one,rest.one@x.test,One,T-1,DE,sales\n"
        "rest.two,rest.two@x.test,Two,,DE,sales\nrest.three,rest.three@x.test,Three,T-3,DE,eng\n"
    ).encode()
    planned = upload(client, world, content, dryRun="true")
    assert planned.status_code == 202, planned.text
    job_id = planned.json()["id"]
    assert planned.headers["location"].endswith(f"/import/{job_id}")
    job = finished(client, world, job_id)
    assert job["status"] == "done" and job["dryRun"] is True
    assert job["progress"] == {"rowsDone": 3, "rowsTotal": 3}
    assert job["totals"]["create"] == 2 and job["totals"]["error"] == 1
    assert count_users(db, world.account_id, "rest.") == 0
    rows = client.get(f"/import/{job_id}/rows", headers=bearer(world)).json()["rows"]
    assert [(r["row"], r["action"]) for r in rows] == [(2, "create"), (3, "error"), (4, "create")]

    applied = upload(client, world, content, mode="upsert")
    assert applied.status_code == 202, applied.text
    job = finished(client, world, applied.json()["id"])
    assert job["totals"]["create"] == 2
    assert count_users(db, world.account_id, "rest.") == 2
    report = client.get(f"/import/{applied.json()['id']}/errors", headers=bearer(world))
    assert report.status_code == 200
    assert report.headers["content-type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(report.content.decode("utf-8-sig"))))
    assert lines[0] == [*HEADER.split(","), "Error"]
    assert lines[1][0] == "rest.two" and "Employee ID" in lines[1][-1]


def test_rows_are_paged(client: httpx.Client, world: World) -> None:
    content = (HEADER + "\n" + "".join(f"page{i},,P,PG-{i},DE,sales\n" for i in range(5))).encode()
    job_id = upload(client, world, content, dryRun="1").json()["id"]
    finished(client, world, job_id)
    seen: list[int] = []
    token = None
    while True:
        params = {"pageSize": "2", **({"pageToken": token} if token else {})}
        page = client.get(f"/import/{job_id}/rows", headers=bearer(world), params=params).json()
        seen.extend(r["row"] for r in page["rows"])
        token = page.get("nextPageToken")
        if not token:
            break
    assert seen == [2, 3, 4, 5, 6]


def test_who_may_import_and_what_is_refused(client: httpx.Client, world: World) -> None:
    content = f"{HEADER}\nnobody,n@x.test,N,Z-1,DE,sales\n".encode()
    learner = upload(client, world, content, login="jane.doe")
    assert learner.status_code == 403, learner.text
    assert client.post("/import", files={"file": ("a.csv", content)}).status_code == 401
    no_file = client.post("/import", headers=bearer(world), data={"mode": "upsert"})
    assert no_file.status_code == 400 and no_file.json()["parameter"] == "file"
    bad_mode = upload(client, world, content, mode="merge")
    assert bad_mode.status_code == 400 and bad_mode.json()["parameter"] == "mode"
    bad_flag = upload(client, world, content, dryRun="maybe")
    assert bad_flag.status_code == 400 and bad_flag.json()["parameter"] == "dryRun"
    assert client.get("/import/not-a-job", headers=bearer(world)).status_code == 404
    # Someone else's job is not found for a department administrator.
    job_id = upload(client, world, content, dryRun="true").json()["id"]
    other = client.get(f"/import/{job_id}", headers=bearer(world, "sales.admin"))
    assert other.status_code == 404


def test_a_department_administrator_imports_into_their_departments(
    client: httpx.Client, world: World, db: Database
) -> None:
    content = (
        f"{HEADER}\ndelegated.in,d.in@x.test,In,DL-1,DE,sales-eu\n"
        "delegated.out,d.out@x.test,Out,DL-2,DE,eng\n"
    ).encode()
    accepted = upload(client, world, content, login="sales.admin", path="/api/v2/import")
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = client.get(f"/import/{job_id}", headers=bearer(world, "sales.admin")).json()
        if job["status"] == "done":
            break
        time.sleep(0.1)
    assert job["totals"]["create"] == 1 and job["totals"]["error"] == 1
    assert count_users(db, world.account_id, "delegated.") == 1


def test_a_job_resumes_after_the_server_is_killed(
    database_url: str, db: Database, tmp_path_factory: pytest.TempPathFactory
) -> None:
    world = make_world(db, acme_spec(seatLimit=None))
    rows = 12_000
    content = (
        HEADER
        + "\n"
        + "".join(f"resume{i:05d},resume{i:05d}@x.test,R,RS-{i},DE,sales\n" for i in range(rows))
    ).encode()
    logs = Path(tmp_path_factory.mktemp("resume-logs"))
    first = start_server(database_url, logs)
    try:
        with httpx.Client(base_url=first.base_url, timeout=60) as http:
            job_id = upload(http, world, content).json()["id"]
            deadline = time.monotonic() + 60
            while (
                count_users(db, world.account_id, "resume") < 2000 and time.monotonic() < deadline
            ):
                time.sleep(0.02)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
    finally:
        stop_server(first)
    partial = count_users(db, world.account_id, "resume")
    assert 0 < partial < rows
    with db.read() as conn:
        status = conn.execute(
            select(import_jobs.c.status).where(import_jobs.c.id == job_id)
        ).scalar_one()
    assert status == "running"
    second = start_server(database_url, logs)
    try:
        with httpx.Client(base_url=second.base_url, timeout=60) as http:
            # The new server sees that the lease's process is gone and takes the job over.
            job = finished(http, world, job_id, timeout=120)
    finally:
        stop_server(second)
    assert job["status"] == "done", job
    assert job["totals"]["create"] == rows
    assert job["progress"]["rowsDone"] == rows
    assert count_users(db, world.account_id, "resume") == rows


def test_the_file_s_encoding_and_delimiter(
    client: httpx.Client, world: World, db: Database
) -> None:
    content = (HEADER.replace(",", ";") + "\nrest.cyr;cyr@x.test;Ирина;CY-1;RU;sales\n").encode(
        "cp1251"
    )
    job_id = upload(client, world, content, encoding="windows-1251", delimiter=";").json()["id"]
    job = finished(client, world, job_id)
    assert job["totals"]["create"] == 1, job
    with db.read() as conn:
        first = conn.execute(
            select(users.c.first_name).where(
                users.c.account_id == world.account_id, users.c.login_key == "rest.cyr"
            )
        ).scalar_one()
    assert first == "Ирина"
    bad = upload(client, world, content, encoding="klingon")
    assert bad.status_code == 400 and bad.json()["parameter"] == "encoding"
    wide = upload(client, world, content, delimiter=";;")
    assert wide.status_code == 400 and wide.json()["parameter"] == "delimiter"
