"""Import jobs against real databases (SQLite and PostgreSQL): every mode, the plan, partial
success and the error report, duplicates within a file, the seat limit reached mid-file,
delegated scope, an unchanged second run, managers, sync, and a job resumed after a crash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from learndir.core.auth import load_actor
from learndir.core.imports.jobs import (
    JobRunner,
    JobView,
    create_job,
    error_report,
    file_opener,
    job_by_id,
    job_results,
    parse_options,
)
from learndir.core.origin import Interface
from learndir.db.engine import Database
from learndir.db.schema import (
    account_seats,
    audit_log,
    departments,
    group_members,
    groups,
    outbox,
    user_field_values,
    users,
)
from tests.support import World, acme_spec, make_world

HEADER = "Login,Email,First Name,Employee ID,Country,Department code,Status"


def write(
    tmp_path: Path, lines: list[str], name: str = "users.csv", encoding: str = "utf-8"
) -> Path:
    path = tmp_path / name
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def run(
    world: World,
    path: Path,
    mode: str = "upsert",
    *,
    login: str = "owner",
    dry_run: bool = False,
    invite: bool = False,
    match: str = "login",
    batch_rows: int = 1000,
) -> tuple[JobView, list[Any]]:
    db = world.db
    with db.read() as conn:
        actor = load_actor(conn, world.users[login])
    assert actor is not None
    options = parse_options(mode, match, invite, dry_run)
    job_id = create_job(db, actor, options, path.name, Interface.CLI)
    view = JobRunner(db, job_id, file_opener(path), batch_rows=batch_rows).run_to_end()
    return view, list(job_results(db, job_id))


def user_rows(db: Database, world: World) -> dict[str, Any]:
    with db.read() as conn:
        rows = conn.execute(select(users).where(users.c.account_id == world.account_id)).all()
    return {r.login: r for r in rows}


def by_row(results: list[Any]) -> dict[int | None, Any]:
    return {r.row_number: r for r in results}


@pytest.fixture
def world(db: Database) -> World:
    return make_world(db, acme_spec(seatLimit=None))


def test_upsert_creates_and_updates_then_nothing_changes(world: World, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            HEADER,
            "ann,ann@x.test,Ann,A-1,DE,sales,Active",
            "ben,ben@x.test,Ben,A-2,FR,eng,",
            "jane.doe,jane.doe@acme.test,Janet,E-4,DE,sales-eu,",
        ],
    )
    job, results = run(world, path)
    assert job.status == "done"
    assert job.totals["create"] == 2 and job.totals["update"] == 1 and job.totals["error"] == 0
    rows = user_rows(world.db, world)
    assert rows["ann"].department_id == world.departments["sales"]
    assert rows["ben"].department_id == world.departments["eng"]
    assert rows["jane.doe"].first_name == "Janet"
    update_row = by_row(results)[4]
    assert update_row.action == "update"
    assert {c["field"] for c in update_row.changes} == {"first_name", "country"}

    snapshot = world.snapshot()
    again, results = run(world, path)
    assert again.totals["unchanged"] == 3
    assert {r.action for r in results} == {"unchanged"}
    assert world.snapshot() == snapshot


def test_dry_run_changes_nothing_and_shows_the_plan(world: World, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            HEADER,
            "ann,ann@x.test,Ann,A-1,DE,sales,",
            "jane.doe,,Jane,E-4,DE,eng,",
            "bad,not-an-email,Bad,A-3,DE,sales,",
        ],
    )
    before = world.snapshot()
    with world.db.read() as conn:
        audited = conn.execute(
            select(audit_log.c.id).where(audit_log.c.account_id == world.account_id)
        ).all()
    job, results = run(world, path, dry_run=True)
    assert world.snapshot() == before
    with world.db.read() as conn:
        assert (
            conn.execute(
                select(audit_log.c.id).where(audit_log.c.account_id == world.account_id)
            ).all()
            == audited
        )
    plan = by_row(results)
    assert plan[2].action == "create"
    assert plan[3].action == "update"
    assert {c["field"] for c in plan[3].changes} == {"email", "country", "departmentId"}
    assert plan[4].action == "error" and "Email" in plan[4].error
    assert job.totals == {**job.totals, "create": 1, "update": 1, "error": 1}

    # Applied for real, the plan is what happens.
    _applied, results = run(world, path)
    assert [(r.row_number, r.action) for r in results] == [
        (r.row_number, r.action) for r in plan.values()
    ]
    assert user_rows(world.db, world)["jane.doe"].email is None


def test_rejected_rows_never_stop_the_others(world: World, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            HEADER + ",Group",
            "ok1,ok1@x.test,One,B-1,DE,sales,,Newcomers",
            ",nologin@x.test,None,B-2,DE,sales,,",
            "ok2,ok2@x.test,Two,,DE,sales,,",
            "ok3,ok3@x.test,Three,B-3,Narnia,sales,,",
            "ok4,ok4@x.test,Four,B-4,DE,nowhere,,",
            "ok5,ok5@x.test,Five,B-5,DE,sales,Sleeping,",
            "ok6,ok6@x.test,Six,B-6,DE,sales,,No Such Group",
            "ok7,ok7@x.test,Seven,B-7,DE,,,",
            "ok8,ok8@x.test,Eight,B-8,DE,eng,Inactive,",
        ],
    )
    before = world.snapshot()
    job, results = run(world, path)
    plan = by_row(results)
    assert plan[2].action == "create" and plan[10].action == "create"
    reasons = {n: plan[n].error for n in range(3, 10)}
    assert "Login" in reasons[3] and "required" in reasons[3]
    assert "Employee ID" in reasons[4] and "required" in reasons[4]
    assert "Country" in reasons[5]
    assert "Department code" in reasons[6] and "nowhere" in reasons[6]
    assert "Status" in reasons[7] and "Sleeping" in reasons[7]
    assert "Group" in reasons[8] and "No Such Group" in reasons[8]
    assert "department" in reasons[9].lower()
    after = world.snapshot()
    assert after["users"] == before["users"] + 2
    assert after["active_users"] == before["active_users"] + 1  # ok8 is inactive
    rows = user_rows(world.db, world)
    assert rows["ok8"].status == 3

    # The error report: the rejected rows as they were, with the reason, ready to fix.
    headers, report = error_report(world.db, job)
    report_rows = list(report)
    assert headers == [*HEADER.split(","), "Group", "Error"]
    assert len(report_rows) == 7
    assert report_rows[0][:3] == ["", "nologin@x.test", "None"]
    assert report_rows[0][-1].startswith("row 3: Login")


def test_a_login_or_email_twice_in_a_file(world: World, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            HEADER,
            "dup,dup@x.test,First,D-1,DE,sales,",
            "other,other@x.test,Other,D-2,DE,sales,",
            "DUP,dup2@x.test,Second,D-3,DE,sales,",
            "third,dup@x.test,Third,D-4,DE,sales,",
            "fourth,fourth@x.test,Fourth,D-2,DE,sales,",
        ],
    )
    # Batches of two: the repeats are found across batches as well as within one.
    _job, results = run(world, path, batch_rows=2)
    plan = by_row(results)
    assert plan[2].action == "create" and plan[3].action == "create"
    assert "also in row 2" in plan[4].error
    assert "also in row 2" in plan[5].error
    assert "Employee ID" in plan[6].error
    assert user_rows(world.db, world)["dup"].first_name == "First"


def test_the_seat_limit_reached_mid_file(db: Database, tmp_path: Path) -> None:
    world = make_world(db, acme_spec(seatLimit=10))
    before = world.snapshot()
    free = 10 - before["active_users"]
    lines = [HEADER] + [f"s{i},s{i}@x.test,S,S-{i},DE,sales," for i in range(free + 3)]
    lines.insert(3, "asleep,asleep@x.test,S,S-x,DE,sales,Inactive")
    _job, results = run(world, write(tmp_path, lines), batch_rows=2)
    created = [r for r in results if r.action == "create"]
    rejected = [r for r in results if r.action == "error"]
    assert len(created) == free + 1  # the inactive user takes no seat
    assert len(rejected) == 3
    assert all("subscription" in r.error for r in rejected)
    assert world.snapshot()["active_users"] == 10
    with db.read() as conn:
        assert (
            conn.execute(
                select(account_seats.c.active_users).where(
                    account_seats.c.account_id == world.account_id
                )
            ).scalar_one()
            == 10
        )


def test_a_department_administrator_imports_within_their_departments(
    world: World, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        [
            HEADER,
            "in.sales,in.sales@x.test,In,C-1,DE,sales-us,",
            "in.eng,in.eng@x.test,Out,C-2,DE,eng,",
            "admin,admin@acme.test,Admin,E-3,DE,sales,",
            "jane.doe,jane.doe@acme.test,Jane,E-4,DE,eng,",
        ],
    )
    _job, results = run(world, path, login="sales.admin")
    plan = by_row(results)
    assert plan[2].action == "create"
    assert "permission denied" in plan[3].error
    assert "permission denied" in plan[4].error  # an account administrator
    assert "permission denied" in plan[5].error  # moving out of their departments
    rows = user_rows(world.db, world)
    assert "in.eng" not in rows
    assert rows["jane.doe"].department_id == world.departments["sales-eu"]


def test_create_and_update_modes(world: World, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [HEADER, "newbie,newbie@x.test,New,N-1,DE,sales,", "jane.doe,,Janet,E-4,DE,sales-eu,"],
    )
    _job, results = run(world, path, "create")
    plan = by_row(results)
    assert plan[2].action == "create"
    assert "create mode" in plan[3].error
    # Run again in create mode: what it created is there as the file says, not an error.
    _job, results = run(world, path, "create")
    assert by_row(results)[2].action == "unchanged"

    path = write(tmp_path, [HEADER, "nobody,n@x.test,N,N-2,DE,sales,", "jane.doe,,Janet,E-4,DE,,"])
    _job, results = run(world, path, "update")
    plan = by_row(results)
    assert "update mode" in plan[2].error
    assert plan[3].action == "update"
    assert "nobody" not in user_rows(world.db, world)


def test_sync_deactivates_whom_the_file_leaves_out(world: World, tmp_path: Path) -> None:
    rows = user_rows(world.db, world)
    keep = ["owner", "admin", "jane.doe", "sales.admin"]
    lines = [HEADER.replace("Country,", "Country,Department path,")]
    for login in keep:
        row = rows[login]
        with world.db.read() as conn:
            eid = (
                conn.execute(
                    select(user_field_values.c.value).where(user_field_values.c.user_id == row.id)
                )
                .scalars()
                .all()
            )
        employee = next((v for v in eid if "-" in v), "")
        lines.append(f"{login},{row.email or ''},{row.first_name or ''},{employee},DE,,,")
    lines.append("newdept.user,nd@x.test,Nd,Z-1,DE,Acme/Logistics,logistics,")
    job, results = run(world, write(tmp_path, lines), "sync")
    assert job.status == "done", job.failure
    after = user_rows(world.db, world)
    assert len(after) == len(rows) + 1  # never deleted
    for login, row in after.items():
        expected = 1 if login in keep or login == "newdept.user" else 3
        assert row.status == expected, login
    deactivated = [r for r in results if r.row_number is None]
    assert {r.login for r in deactivated} == set(rows) - set(keep)
    assert all(r.action == "deactivate" for r in deactivated)
    assert job.totals["departmentsCreated"] == 1
    with world.db.read() as conn:
        made = conn.execute(
            select(departments).where(
                departments.c.account_id == world.account_id, departments.c.code == "logistics"
            )
        ).one()
    assert made.name == "Logistics" and made.parent_id == world.root_id
    assert after["newdept.user"].department_id == made.id


def test_sync_never_deactivates_the_owner_or_the_importer(world: World, tmp_path: Path) -> None:
    path = write(tmp_path, [HEADER, "solo,solo@x.test,Solo,Q-1,DE,sales,"])
    _job, results = run(world, path, "sync", login="admin")
    after = user_rows(world.db, world)
    assert after["owner"].status == 1 and after["admin"].status == 1
    assert after["jane.doe"].status == 3
    # Neither is in the plan: they are not the file's to deactivate.
    assert not {"owner", "admin"} & {r.login for r in results}


def test_groups_replace_and_add(world: World, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        ["Login,Group,Group,Add to Group", "jane.doe,Managers,,", "admin,,,Newcomers; Managers"],
    )
    job, results = run(world, path, "update")
    assert job.totals["update"] == 2, results
    with world.db.read() as conn:
        member = conn.execute(
            select(groups.c.name, group_members.c.user_id)
            .join(group_members, group_members.c.group_id == groups.c.id)
            .where(groups.c.account_id == world.account_id)
        ).all()
    held: dict[str, set[str]] = {}
    for name, user_id in member:
        held.setdefault(user_id, set()).add(name)
    assert held[world.users["jane.doe"]] == {"Managers"}  # Newcomers replaced
    assert held[world.users["admin"]] == {"Newcomers", "Managers"}
    # Empty Group columns: the user ends up in no group.
    path = write(tmp_path, ["Login,Group", "jane.doe,"], "empty.csv")
    job, results = run(world, path, "update")
    assert by_row(results)[2].action == "update"


def test_managers_may_come_later_in_the_file(world: World, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            HEADER + ",Manager login",
            "report,report@x.test,R,M-1,DE,sales,,boss",
            "boss,boss@x.test,B,M-2,DE,sales,,",
            "lost,lost@x.test,L,M-3,DE,sales,,nobody",
        ],
    )
    _job, results = run(world, path)
    rows = user_rows(world.db, world)
    assert rows["report"].subordination_type == "manual"
    assert rows["report"].supervisor_id == rows["boss"].id
    plan = by_row(results)
    assert "Manager login" in plan[4].error and "nobody" in plan[4].error
    _again, results = run(world, path)
    assert by_row(results)[2].action == "unchanged"


def test_matching_on_email(world: World, tmp_path: Path) -> None:
    path = write(tmp_path, ["Email,Login,First Name", "jane.doe@acme.test,jane.d,Jane"])
    _job, results = run(world, path, "update", match="email")
    assert by_row(results)[2].action == "update"
    assert user_rows(world.db, world)["jane.d"].id == world.users["jane.doe"]


def test_invitations_when_asked(world: World, tmp_path: Path) -> None:
    path = write(tmp_path, [HEADER, "invited,invited@x.test,I,V-1,DE,sales,"])
    run(world, path, invite=True)
    with world.db.read() as conn:
        sent = (
            conn.execute(select(outbox.c.recipient).where(outbox.c.account_id == world.account_id))
            .scalars()
            .all()
        )
    assert "invited@x.test" in sent


def test_changes_are_audited_as_the_import(world: World, tmp_path: Path) -> None:
    path = write(tmp_path, [HEADER, "audited,audited@x.test,A,U-1,DE,sales,"])
    job, _ = run(world, path)
    with world.db.read() as conn:
        row = conn.execute(
            select(audit_log).where(
                audit_log.c.account_id == world.account_id,
                audit_log.c.operation == "USER_REGISTERED",
                audit_log.c.target_id == user_rows(world.db, world)["audited"].id,
            )
        ).one()
    assert row.interface == "import"
    assert row.actor_user_id == world.users["owner"]
    assert row.request_id == job.id


def test_encodings_and_excel(world: World, tmp_path: Path) -> None:
    from openpyxl import Workbook

    cyrillic = [HEADER, "ivan,ivan@x.test,Иван,R-1,RU,sales,"]
    run(world, write(tmp_path, cyrillic, "cp1251.csv", "cp1251"))
    bom = ["\ufeff" + HEADER.replace(",", ";"), "olga;olga@x.test;Ольга;R-2;RU;sales;"]
    run(world, write(tmp_path, bom, "bom.csv"))
    book = Workbook()
    sheet = book.active
    sheet.append(HEADER.split(","))
    sheet.append(["xl", "xl@x.test", "Excel", "R-3", "DE", "eng", "Active"])
    book.save(tmp_path / "users.xlsx")
    run(world, tmp_path / "users.xlsx")
    rows = user_rows(world.db, world)
    assert rows["ivan"].first_name == "Иван"
    assert rows["olga"].first_name == "Ольга"
    assert rows["xl"].department_id == world.departments["eng"]


def test_a_job_resumes_where_it_stopped(world: World, tmp_path: Path) -> None:
    lines = [HEADER] + [f"r{i},r{i}@x.test,R,Y-{i},DE,sales," for i in range(10)]
    path = write(tmp_path, lines)
    db = world.db
    with db.read() as conn:
        actor = load_actor(conn, world.users["owner"])
    assert actor is not None
    job_id = create_job(db, actor, parse_options("upsert", None, False, False), "x", Interface.CLI)
    first = JobRunner(db, job_id, file_opener(path), batch_rows=3)
    assert first.step()  # one batch goes in
    first.close()  # the process dies here
    assert job_by_id(db, job_id).rows_done == 3
    view = JobRunner(db, job_id, file_opener(path), batch_rows=3).run_to_end()
    assert view.status == "done" and view.rows_done == 10
    assert view.totals["create"] == 10
    assert len([u for u in user_rows(db, world) if u.startswith("r")]) == 10


def test_a_file_that_is_not_a_table_fails_the_job(world: World, tmp_path: Path) -> None:
    job, _ = run(world, write(tmp_path, ["Name,Whatever", "a,b"]))
    assert job.status == "failed"
    assert "Whatever" in (job.failure or "") and "Login" in (job.failure or "")
