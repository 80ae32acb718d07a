"""The Departments section in a browser: the tree with counts per branch, expand and collapse
by keyboard, create, rename, move, delete (and the core's refusals shown next to the form), and
what a department administrator sees."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from learndir.core import console_sessions
from learndir.core.users.commands import AddUser
from learndir.core.users.service import add_user
from tests.console.support import ConsolePage, ConsoleSite, notice, squash
from tests.support import World


@pytest.fixture(scope="module")
def world(console_site: ConsoleSite, demo_world: World) -> World:
    """The demo account with two more people in Sales EU (and sales.admin in Sales)."""
    owner = console_sessions.sign_in(
        console_site.db, demo_world.account_url, "owner", "Demo-Owner-1"
    )[1].actor
    for login in ("eu.one", "eu.two"):
        add_user(
            console_site.db,
            owner,
            AddUser(login=login, departmentId=demo_world.departments["sales-eu"]),
        )
    return demo_world


def node(page: Page, dept_id: str) -> str:
    return squash(page.locator(f'li[data-dept="{dept_id}"]').first.inner_text())


def test_the_tree_and_every_change_of_a_department(console: ConsolePage, world: World) -> None:
    page = console.sign_in(world, "owner")
    sales, sales_eu, eng = (world.departments[c] for c in ("sales", "sales-eu", "eng"))
    page.get_by_role("navigation", name="Console sections").get_by_role(
        "link", name="Departments"
    ).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Departments")
    assert "1 person here, 3 in this branch" in node(page, sales)
    assert "2 people here, 2 in this branch" in node(page, world.departments["sales-eu"])
    assert "1 person here, 4 in this branch" in node(page, world.root_id)
    people = page.get_by_role("link", name="People in Sales EU")
    expect(people).to_have_attribute("href", f"/console/people?department={sales_eu}&sub=1")
    console.check("departments")

    # Collapse and expand a branch by keyboard: its summary is a native control.
    summary = page.locator(f'li[data-dept="{sales}"] > details > summary')
    child = page.locator(f'li[data-dept="{sales_eu}"]')
    summary.focus()
    page.keyboard.press("Enter")
    expect(child).to_be_hidden()
    page.keyboard.press("Space")
    expect(child).to_be_visible()
    page.get_by_role("button", name="Collapse all").click()
    expect(child).to_be_hidden()
    page.get_by_role("button", name="Expand all").click()
    expect(child).to_be_visible()

    # Create; a duplicate code is the core's error next to the field, the values kept.
    page.get_by_label("Name", exact=True).fill("Marketing")
    page.get_by_label("Code", exact=True).fill("SALES")
    page.get_by_label("Parent department").select_option(world.root_id)
    page.get_by_role("button", name="Add department").click()
    expect(page.locator("#new-code-error")).to_contain_text("already used")
    expect(page.get_by_label("Code", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Name", exact=True)).to_have_value("Marketing")
    page.get_by_label("Code", exact=True).fill("mkt")
    page.get_by_role("button", name="Add department").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Marketing")
    assert notice(page) == "Department Marketing has been created."
    marketing = page.url.rsplit("/", 1)[1]

    # Rename and re-code.
    page.locator("#rename-name").fill("Marketing and PR")
    page.locator("#rename-code").fill("mpr")
    page.get_by_role("button", name="Save name and code").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Marketing and PR")
    expect(page.locator("dl.facts")).to_contain_text("mpr")

    # A sub-department, added from the page.
    page.locator("#add-name").fill("Events")
    page.get_by_role("button", name="Add sub-department").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Events")
    events = page.url.rsplit("/", 1)[1]
    expect(page.get_by_role("navigation", name="Breadcrumb")).to_contain_text("Marketing and PR")
    console.check("department")

    # Move Marketing and PR under Engineering: the tree shows it (and Events) there. Its own
    # branch is not offered as a parent; sent anyway, the core refuses.
    page.goto(console.url(f"/departments/{marketing}"))
    options = page.locator("#move-parent option").all_inner_texts()
    assert not any("Events" in o or "Marketing" in o for o in options)
    page.get_by_label("New parent department").select_option(eng)
    page.get_by_role("button", name="Move department").click()
    assert notice(page) == "The department has been moved."
    with console.client() as client:
        answer = client.post(
            f"/console/departments/{marketing}/move",
            data={"csrf": console.csrf(), "parent": events},
        )
    assert answer.status_code == 422
    assert "cannot be moved under itself" in answer.text
    page.goto(console.url("/departments"))
    moved = page.locator(f'li[data-dept="{eng}"] li[data-dept="{marketing}"]')
    expect(moved).to_contain_text("Marketing and PR")
    expect(moved.locator(f'li[data-dept="{events}"]')).to_be_visible()

    # Deleting a department with people in it: the core's message, nothing deleted.
    page.goto(console.url(f"/departments/{sales_eu}"))
    page.get_by_role("button", name="Delete Sales EU").click()
    expect(page.get_by_role("alert")).to_contain_text("Department is not empty")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sales EU")
    # An empty one goes; its parent's page says so.
    page.goto(console.url(f"/departments/{events}"))
    page.get_by_role("button", name="Delete Events").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Marketing and PR")
    assert notice(page) == "Department Events has been deleted."
    expect(page.locator(f'a[href$="/departments/{events}"]')).to_have_count(0)


def test_a_department_administrator_sees_its_branch_only(
    console: ConsolePage, world: World
) -> None:
    page = console.sign_in(world, "sales.admin")
    page.goto(console.url("/departments"))
    tree = page.locator(".dept-tree")
    expect(tree).to_contain_text("Sales EU")
    expect(tree.locator(".dept-name", has_text=re.compile(r"^Sales$"))).to_be_visible()
    expect(tree).not_to_contain_text("Engineering")
    answer = page.goto(console.url(f"/departments/{world.departments['eng']}"))
    assert answer is not None and answer.status == 403
    answer = page.goto(console.url(f"/departments/{world.departments['sales-eu']}"))
    assert answer is not None and answer.status == 200
    page.get_by_label("New parent department").select_option(world.departments["sales"])
    page.get_by_role("button", name="Move department").click()
    assert notice(page) == "The department is there already."
    # Its own top it may not delete: the core says why.
    page.goto(console.url(f"/departments/{world.departments['sales']}"))
    page.get_by_role("button", name="Delete Sales").click()
    expect(page.get_by_role("alert")).to_contain_text("top of the departments you manage")
