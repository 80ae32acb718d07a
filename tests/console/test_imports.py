"""Import and export in the console, in a real browser against a real server whose background
worker runs the uploads: the template, a file refused at once, a plan with a rejected row,
applying it with the progress bar, the error report, the export; and a department
administrator's own imports only."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from playwright.sync_api import Page, expect

from learndir.core.auth import load_actor
from learndir.core.imports.jobs import create_job, parse_options, read_chunks, recent_jobs
from learndir.core.origin import Interface
from learndir.core.users.queries import UserFilter, list_users
from tests.console.support import ConsolePage
from tests.support import World

# The worker runs a small job in a few rounds; its idle poll is at most a second.
JOB_TIMEOUT = 15_000

PEOPLE = (
    b"Login,Email,First Name,Last Name,Employee ID,Country,Department code\n"
    b"imp.ann,imp.ann@demo.example.com,Ann,Archer,IMP-1,DE,sales\n"
    b"imp.ben,imp.ben@demo.example.com,Ben,Baker,IMP-2,FR,sales-eu\n"
    b"imp.cid,imp.cid@demo.example.com,Cid,Cole,IMP-3,GB,eng\n"
    b"sales.admin,sales.admin@demo.example.com,Sally,Seller,,,sales\n"
    b"imp.bad,not-an-e-mail,Bad,Row,IMP-4,DE,sales\n"
)
NEW = ("imp.ann", "imp.ben", "imp.cid")


def downloaded(page: Page, link_name: str) -> str:
    with page.expect_download() as info:
        page.get_by_role("link", name=link_name).click()
    return Path(info.value.path()).read_bytes().decode("utf-8-sig")


def table_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def logins_in(world: World, logins: tuple[str, ...]) -> set[str]:
    """Which of `logins` the account has, read through the core as its owner."""
    db = world.db
    with db.read() as conn:
        owner = load_actor(conn, world.users["owner"])
    assert owner is not None
    found = list_users(db, owner, UserFilter(logins=logins))
    return {u.fields["login"] for u in found}


def test_plan_apply_report_and_export(console: ConsolePage, demo_world: World) -> None:
    page = console.sign_in(demo_world, "owner")
    console.goto("/import")
    expect(page.get_by_role("heading", level=1)).to_have_text("Import and export")
    expect(page.get_by_text("No imports yet.")).to_be_visible()
    console.check("import-upload")

    # The template: the account's columns, no rows.
    template = table_of(downloaded(page, "template as CSV"))
    assert template[0][:2] == ["Login", "Email"]
    assert {"Employee ID", "Country", "Department code", "Password"} <= set(template[0])
    assert len(template) == 1

    # No file at all (what a browser without the form's checks sends): 422, next to the field.
    with console.client() as client:
        answer = client.post(
            "/console/import",
            data={"csrf": console.csrf(), "mode": "upsert"},
            files={"file": ("", b"", "application/octet-stream")},
        )
        assert answer.status_code == 422
        assert 'id="import-file-error"' in answer.text and "choose the CSV or XLSX" in answer.text
        # An unknown mode, an unknown encoding: each next to its field.
        for field, value, words in (
            ("mode", "merge", "is not a mode"),
            ("encoding", "klingon", "unknown encoding"),
        ):
            answer = client.post(
                "/console/import",
                data={"csrf": console.csrf(), field: value},
                files={"file": ("people.csv", PEOPLE, "text/csv")},
            )
            assert answer.status_code == 422
            assert f'id="import-{field}-error"' in answer.text and words in answer.text
    # A file that is not a table of people: the same, in the browser; nothing is created.
    page.set_input_files(
        "#import-file",
        files=[{"name": "photo.csv", "mimeType": "text/csv", "buffer": b"Name;Mail\nx;y\n"}],
    )
    page.get_by_role("button", name="Upload and see the plan").click()
    file_field = page.get_by_label("File (CSV or XLSX)")
    expect(file_field).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#import-file-error")).to_contain_text("unknown column(s) 'Name', 'Mail'")
    expect(page.get_by_text("No imports yet.")).to_be_visible()
    console.screenshot("import-refused")

    # A file with three good rows and a bad one: the plan.
    page.set_input_files(
        "#import-file",
        files=[{"name": "people.csv", "mimeType": "text/csv", "buffer": PEOPLE}],
    )
    page.get_by_label("Create and update").check()
    page.get_by_role("button", name="Upload and see the plan").click()
    expect(page).to_have_url(re.compile(r"/console/import/[0-9a-f-]{36}$"))
    plan_url = page.url
    expect(page.get_by_role("heading", level=1)).to_have_text("Plan of people.csv")
    apply_button = page.get_by_role("button", name="Apply this plan")
    expect(apply_button).to_be_visible(timeout=JOB_TIMEOUT)
    expect(page.locator("#job-progress-text")).to_contain_text("The plan is ready: 5 of 5 rows")
    expect(page.locator("li.total-create")).to_have_text("3 to create")
    expect(page.locator("li.total-update")).to_have_text("1 to update")
    expect(page.locator("li.total-error")).to_have_text("1 rejected")
    rows = page.locator("table.plan tbody tr")
    expect(rows).to_have_count(5)
    expect(rows.nth(0)).to_contain_text("imp.ann")
    expect(page.locator("table.plan tr.action-update")).to_contain_text(
        "First name: (empty) → Sally"
    )
    bad = page.locator("table.plan tr.action-error")
    expect(bad).to_contain_text("6")
    expect(bad).to_contain_text("imp.bad")
    expect(bad).to_contain_text("e-mail")
    assert logins_in(demo_world, (*NEW, "imp.bad")) == set()
    console.check("import-plan")

    # Apply it: a new job, its progress bar to the end, the totals.
    apply_button.click()
    expect(page).not_to_have_url(plan_url)
    expect(page).to_have_url(re.compile(r"/console/import/[0-9a-f-]{36}$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Import of people.csv")
    status = page.locator("#job-progress-text")
    expect(status).to_contain_text(
        "The import is finished: 5 of 5 rows applied", timeout=JOB_TIMEOUT
    )
    expect(status).to_have_attribute("role", "status")
    bar = page.locator("progress#job-progress")
    expect(bar).to_have_attribute("max", "5")
    assert bar.evaluate("b => b.value") == 5
    expect(page.locator("li.total-create")).to_have_text("3 created")
    expect(page.locator("li.total-error")).to_have_text("1 rejected")
    console.check("import-done")
    assert logins_in(demo_world, (*NEW, "imp.bad")) == set(NEW)

    # The error report: the bad row as it was, with the reason.
    report = table_of(downloaded(page, "Download the error report"))
    assert report[0][-1] == "Error" and report[0][0] == "Login"
    assert len(report) == 2
    assert report[1][0] == "imp.bad" and report[1][1] == "not-an-e-mail"
    assert report[1][-1].startswith("row 6: ")

    # The plan was applied once; the recent imports list both; the export has the new people.
    page.goto(plan_url)
    expect(page.get_by_text("This plan has been applied")).to_be_visible()
    expect(page.get_by_role("button", name="Apply this plan")).to_have_count(0)
    with console.client() as client:
        again = client.post(f"{plan_url}/apply", data={"csrf": console.csrf()})
    assert again.status_code == 422 and "already applied" in again.text
    console.goto("/import")
    jobs = page.locator("table.jobs tbody tr")
    expect(jobs).to_have_count(2)
    expect(jobs.nth(0)).to_contain_text("3 created, 1 updated, 1 rejected")
    expect(jobs.nth(1)).to_contain_text("plan")
    export = table_of(downloaded(page, "export as CSV"))
    exported = {row[0] for row in export[1:]}
    assert set(NEW) <= exported and "owner" in exported and "imp.bad" not in exported


def test_department_administrator_sees_only_own_imports(
    console: ConsolePage, demo_world: World
) -> None:
    db = demo_world.db
    with db.read() as conn:
        owner = load_actor(conn, demo_world.users["owner"])
    assert owner is not None
    owners_job = create_job(
        db,
        owner,
        parse_options("upsert", "login", False, True),
        "owners-secret-file.csv",
        Interface.CONSOLE,
        read_chunks(io.BytesIO(b"Login\nowner\n")),
    )
    page = console.sign_in(demo_world, "sales.admin", demo_world.passwords["sales.admin"])
    console.goto("/import")
    expect(page.get_by_role("heading", level=1)).to_have_text("Import and export")
    expect(page.get_by_text("owners-secret-file.csv")).to_have_count(0)
    expect(page.get_by_text("No imports yet.")).to_be_visible()
    # By keyboard: from the file to the modes, chosen with the arrow keys.
    page.get_by_label("File (CSV or XLSX)").focus()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Create and update")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(page.get_by_label("Create only")).to_be_checked()
    with console.client() as client:
        assert client.get(f"/console/import/{owners_job}").status_code == 404
        assert client.get(f"/console/import/{owners_job}/progress").status_code == 404
        assert client.get(f"/console/import/{owners_job}/errors").status_code == 404
        applied = client.post(f"/console/import/{owners_job}/apply", data={"csrf": console.csrf()})
        assert applied.status_code == 404
        # Without the form's token nothing is even read.
        assert client.post("/console/import", data={"mode": "sync"}).status_code == 403
    assert recent_jobs(db, owner, limit=1)[0].id == owners_job
