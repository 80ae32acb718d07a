"""The core under the console's import pages, on SQLite and PostgreSQL: an upload checked
before any job is made, a plan that keeps its file and is applied once from it (by the
background worker, as an upload), and the recent imports one may see."""

from __future__ import annotations

import io
import os
import socket

import pytest
from sqlalchemy import func, select

from learndir.core.actor import Actor
from learndir.core.auth import load_actor
from learndir.core.errors import DomainError
from learndir.core.imports.jobs import (
    ImportJobs,
    JobView,
    apply_plan,
    check_table,
    create_job,
    get_job,
    job_by_id,
    job_results,
    parse_options,
    plan_applicable,
    read_chunks,
    recent_jobs,
)
from learndir.core.origin import Interface
from learndir.db.engine import Database
from learndir.db.schema import import_chunks, users
from tests.support import World, acme_spec, make_world

CSV = (
    b"Login,Email,First Name,Employee ID,Country,Department code\n"
    b"pia,pia@x.test,Pia,P-1,DE,sales\n"
    b"raj,raj@x.test,Raj,P-2,FR,sales-eu\n"
    b"bad,not-an-email,Bad,P-3,DE,sales\n"
)


@pytest.fixture
def world(db: Database) -> World:
    return make_world(db, acme_spec(seatLimit=None))


def actor_of(world: World, login: str) -> Actor:
    with world.db.read() as conn:
        actor = load_actor(conn, world.users[login])
    assert actor is not None
    return actor


def upload(world: World, login: str, data: bytes = CSV, *, dry_run: bool = True) -> str:
    actor = actor_of(world, login)
    stream = io.BytesIO(data)
    check_table(world.db, actor, stream)
    options = parse_options("upsert", "login", False, dry_run)
    return create_job(
        world.db, actor, options, "people.csv", Interface.CONSOLE, read_chunks(stream)
    )


def run_worker(db: Database, job_id: str) -> JobView:
    """The background worker's job, round after round, until this job is finished (another
    test's server may run it meanwhile: the outcome is the same)."""
    worker = ImportJobs(batch_rows=2)
    worker_id = f"{socket.gethostname()[:40]}:{os.getpid()}:test"
    try:
        for _ in range(500):
            job = job_by_id(db, job_id)
            if job.finished:
                return job
            worker(db, worker_id)
    finally:
        worker.close()
    raise AssertionError("the job did not finish")


def chunks_of(db: Database, job_id: str) -> int:
    with db.read() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(import_chunks)
                .where(import_chunks.c.job_id == job_id)
            ).scalar_one()
        )


def logins(world: World) -> set[str]:
    with world.db.read() as conn:
        return set(
            conn.execute(select(users.c.login).where(users.c.account_id == world.account_id))
            .scalars()
            .all()
        )


def test_a_plan_keeps_its_file_and_is_applied_once(world: World) -> None:
    db = world.db
    plan_id = upload(world, "owner")
    plan = run_worker(db, plan_id)
    assert plan.status == "done" and plan.options.dry_run
    assert plan.totals["create"] == 2 and plan.totals["error"] == 1
    assert "pia" not in logins(world)
    assert chunks_of(db, plan_id) > 0 and plan_applicable(db, plan)

    owner = actor_of(world, "owner")
    real_id = apply_plan(db, owner, plan_id, Interface.CONSOLE)
    assert real_id != plan_id
    assert chunks_of(db, plan_id) == 0
    assert not plan_applicable(db, get_job(db, owner, plan_id))
    queued = get_job(db, owner, real_id)
    assert not queued.options.dry_run and queued.file_name == "people.csv"
    assert queued.actor_login == "owner"

    done = run_worker(db, real_id)
    assert done.status == "done"
    assert done.totals["create"] == 2 and done.totals["error"] == 1
    assert {"pia", "raj"} <= logins(world) and "bad" not in logins(world)
    # A real job's file goes when it is done.
    assert chunks_of(db, real_id) == 0
    errors = [r for r in job_results(db, real_id) if r.error]
    assert [r.row_number for r in errors] == [4]

    # Applied once: again is refused, and nothing is made.
    with pytest.raises(DomainError) as again:
        apply_plan(db, owner, plan_id, Interface.CONSOLE)
    assert again.value.parameter == "id"
    # A real job is not a plan.
    with pytest.raises(DomainError):
        apply_plan(db, owner, real_id, Interface.CONSOLE)
    assert [j.id for j in recent_jobs(db, owner)][:2] == [real_id, plan_id]


def test_an_unfinished_plan_or_another_users_plan_is_not_applied(world: World) -> None:
    db = world.db
    plan_id = upload(world, "owner")
    with pytest.raises(DomainError) as unfinished:
        apply_plan(db, actor_of(world, "owner"), plan_id, Interface.CONSOLE)
    assert "finished" in (unfinished.value.reason or "")
    run_worker(db, plan_id)
    # A department administrator neither sees nor applies the owner's plan.
    with pytest.raises(DomainError) as hidden:
        apply_plan(db, actor_of(world, "sales.admin"), plan_id, Interface.CONSOLE)
    assert hidden.value.code.value == "not_found"
    assert chunks_of(db, plan_id) > 0
    # Learners may not import at all.
    with pytest.raises(DomainError) as learner:
        apply_plan(db, actor_of(world, "jane.doe"), plan_id, Interface.CONSOLE)
    assert learner.value.code.value == "permission_denied"


def test_recent_imports_follow_get_jobs_rule(world: World) -> None:
    db = world.db
    owners = upload(world, "owner")
    admins = upload(world, "sales.admin", CSV.replace(b"sales-eu", b"sales"))
    owner, sales_admin, admin = (actor_of(world, x) for x in ("owner", "sales.admin", "admin"))
    assert [j.id for j in recent_jobs(db, owner)] == [admins, owners]
    assert [j.id for j in recent_jobs(db, admin)] == [admins, owners]
    assert [j.id for j in recent_jobs(db, sales_admin)] == [admins]
    assert [j.id for j in recent_jobs(db, owner, limit=1)] == [admins]
    with pytest.raises(DomainError):
        recent_jobs(db, actor_of(world, "jane.doe"))
    run_worker(db, owners)
    run_worker(db, admins)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "encoding"),
        (b"PK\x03\x04not a zip at all", "XLSX"),
        (b"Name,Mail\nann,ann@x.test\n", "unknown column"),
    ],
)
def test_a_file_that_is_not_a_table_of_people_is_refused_at_once(
    world: World, data: bytes, words: str
) -> None:
    owner = actor_of(world, "owner")
    before = recent_jobs(world.db, owner)
    stream = io.BytesIO(data)
    with pytest.raises(DomainError) as refused:
        check_table(world.db, owner, stream)
    assert refused.value.parameter == "file"
    assert words in (refused.value.reason or "")
    assert not stream.closed
    with pytest.raises(DomainError) as encoding:
        check_table(world.db, owner, io.BytesIO(CSV), encoding="no-such-codec")
    assert encoding.value.parameter == "encoding"
    assert recent_jobs(world.db, owner) == before


def test_a_good_file_is_read_from_its_start_and_left_open(world: World) -> None:
    owner = actor_of(world, "owner")
    stream = io.BytesIO(CSV)
    stream.seek(10)
    headers = check_table(world.db, owner, stream, delimiter=",")
    assert headers[0] == "Login" and "Department code" in headers
    assert not stream.closed and stream.tell() == 0
    assert b"".join(read_chunks(stream)) == CSV


def test_an_xlsx_upload_is_checked_and_planned(world: World) -> None:
    from learndir.imports.writers import write_xlsx

    book = io.BytesIO()
    rows = [line.split(",") for line in CSV.decode().splitlines()]
    write_xlsx(rows[0], rows[1:], book)
    plan_id = upload(world, "owner", book.getvalue())
    plan = run_worker(world.db, plan_id)
    assert plan.status == "done" and plan.rows_total == 3
    assert plan.totals["create"] == 2 and plan.totals["error"] == 1


def test_a_plan_made_over_rest_does_not_keep_its_file(world: World) -> None:
    db = world.db
    owner = actor_of(world, "owner")
    options = parse_options("upsert", "login", False, True)
    plan_id = create_job(
        db, owner, options, "people.csv", Interface.REST, read_chunks(io.BytesIO(CSV))
    )
    plan = run_worker(db, plan_id)
    assert plan.status == "done" and chunks_of(db, plan_id) == 0
    assert not plan_applicable(db, plan)
    with pytest.raises(DomainError) as refused:
        apply_plan(db, owner, plan_id, Interface.CONSOLE)
    assert "upload it again" in (refused.value.reason or "")
    assert [j.id for j in recent_jobs(db, owner)] == [plan_id]
