"""The People section in a real browser: search as you type, a person's page, adding with an
error then without, editing, invitations, a bulk deactivation, and what a department
administrator sees and may not see. The tests share one demo account, in order."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from playwright.sync_api import expect

from learndir.core import console_sessions
from learndir.core.users.changes import INACTIVE
from learndir.core.users.commands import AddUser
from learndir.core.users.queries import get_user
from learndir.core.users.service import add_user
from tests.console.support import ConsolePage, ConsoleSite, add_people
from tests.support import World

PEOPLE = [
    ("anna.berg", "Anna", "Berg", "sales"),
    ("annika.roth", "Annika", "Roth", "sales-eu"),
    ("bert.anders", "Bert", "Anders", "eng"),
    ("carl.nilsson", "Carl", "Nilsson", "eng"),
    ("dora.annan", "Dora", "Annan", "sales"),
]


@pytest.fixture(scope="module")
def people(console_site: ConsoleSite, demo_world: World) -> World:
    return add_people(
        console_site,
        demo_world,
        [
            (login, dept, {"first_name": first, "last_name": last, "employee_id": f"E-{login}"})
            for login, first, last, dept in PEOPLE
        ],
    )


def test_an_owner_searches_adds_edits_invites_and_deactivates(
    console: ConsolePage, console_site: ConsoleSite, people: World
) -> None:
    page = console.sign_in(people, "owner")
    page.get_by_role("navigation", name="Console sections").get_by_role(
        "link", name="People"
    ).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("People")
    # Search as you type needs people.js (a deferred script), which may still be loading when
    # the page is shown: the load event comes after it ran.
    page.wait_for_load_state()
    rows = page.locator("#people-results tbody tr")
    expect(rows.filter(has_text="bert.anders")).to_have_count(1)
    console.check("people-list")

    # Search as you type: no Enter, the list follows the typing and the URL keeps it.
    page.get_by_label("Login, e-mail or name").press_sequentially("ann", delay=30)
    expect(rows).to_have_count(3)
    expect(rows.filter(has_text="bert.anders")).to_have_count(0)
    expect(page.locator("[data-people-announce]")).to_have_text("3 people found")
    expect(page).to_have_url(re.compile(r"/console/people\?q=ann$"))
    page.get_by_label("Login, e-mail or name").fill("anna ber")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("anna.berg")

    # Bulk: deactivate two people chosen in a filtered list. The emptied search answers first
    # (after its debounce): a list swapped in after the boxes are ticked would clear them.
    page.get_by_label("Login, e-mail or name").fill("")
    expect(rows.filter(has_text="bert.anders")).to_have_count(1)
    page.get_by_label("Department").first.select_option(label="\u2003Engineering")
    expect(rows).to_have_count(2)
    page.get_by_label("Select Bert Anders").check()
    page.get_by_label("Select Carl Nilsson").check()
    expect(page.locator("[data-selected-count]")).to_have_text("2 selected")
    page.get_by_role("button", name="Deactivate").click()
    expect(page.locator(".notice")).to_have_text("Deactivated 2 people.")
    expect(page).to_have_url(re.compile(r"department="))
    page.wait_for_load_state()  # the new page's people.js, before the next filter change
    owner = console_sessions.sign_in(console_site.db, people.account_url, "owner", "Demo-Owner-1")[
        1
    ].actor
    for login in ("bert.anders", "carl.nilsson"):
        assert get_user(console_site.db, owner, people.users[login]).status == INACTIVE
    assert get_user(console_site.db, owner, people.users["anna.berg"]).status == 1

    # Bulk: two people of Sales into a group, then into Sales EU.
    page.locator("#department").select_option(label="\u2003Sales")
    expect(rows).to_have_count(4)  # with Sales EU's annika.roth and sales.admin
    for name in ("Anna Berg", "Dora Annan"):
        page.get_by_label(f"Select {name}").check()
    page.locator("#to_group").select_option(label="Newcomers")
    page.get_by_role("button", name="Add to group").click()
    expect(page.locator(".notice")).to_have_text("Added 2 people to the group.")
    for name in ("Anna Berg", "Dora Annan"):
        page.get_by_label(f"Select {name}").check()
    page.locator("#to_department").select_option(label="\u2003\u2003Sales EU")
    page.get_by_role("button", name="Move there").click()
    expect(page.locator(".notice")).to_have_text("Moved 2 people.")
    for login in ("anna.berg", "dora.annan"):
        moved = get_user(console_site.db, owner, people.users[login])
        assert moved.department_id == people.departments["sales-eu"]
        assert people.groups["Newcomers"] in moved.groups

    # Adding: a taken login is shown next to Login, with what was typed kept.
    page.get_by_role("link", name="Add a person").click()
    page.get_by_label("Login (required)").fill("anna.berg")
    page.locator("#email").fill("eva.lund@demo.example.com")
    page.get_by_label("First name").fill("Eva")
    page.get_by_label("Last name").fill("Lund")
    page.get_by_label("Employee ID").fill("E-eva")
    page.get_by_label("Newcomers").check()
    page.get_by_role("button", name="Add the person").click()
    expect(page.locator("#login-error")).to_contain_text(
        "User with the same login is already registered."
    )
    expect(page.get_by_label("Login (required)")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("First name")).to_have_value("Eva")
    expect(page.get_by_label("Newcomers")).to_be_checked()
    console.check("person-add-error")
    page.get_by_label("Login (required)").fill("eva.lund")
    page.get_by_role("button", name="Add the person").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Eva Lund")
    expect(page.locator(".notice")).to_contain_text("eva.lund has been added.")
    expect(page.get_by_role("link", name="Newcomers")).to_be_visible()
    invitations = page.locator("section[aria-labelledby=inv-h] tbody tr")
    expect(invitations).to_have_count(1)
    expect(invitations.first).to_contain_text("eva.lund@demo.example.com")
    console.check("person-page")

    # Resend, then revoke.
    page.get_by_role("button", name="Resend the invitation").click()
    expect(page.locator(".notice")).to_contain_text("on its way to eva.lund@demo.example.com")
    expect(invitations).to_have_count(2)
    page.get_by_role("button", name="Revoke invitations").click()
    expect(page.locator(".notice")).to_contain_text("Revoked 1 invitation")
    expect(invitations.filter(has_text="revoked")).to_have_count(2)

    # Editing: a bad e-mail next to its field, then a good change.
    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_label("First name")).to_have_value("Eva")
    console.check("person-edit")
    page.locator("#email").fill("not an address")
    page.get_by_label("Job title").fill("Analyst")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#email-error")).to_be_visible()
    expect(page.get_by_label("Job title")).to_have_value("Analyst")
    page.locator("#email").fill("eva@demo.example.com")
    # A department administrator needs departments to manage: the core says so next to them.
    page.get_by_label("Role").select_option(label="Department Administrator")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#managed-error")).to_contain_text("is required")
    page.get_by_label("Managed departments").select_option(label="\u2003Sales")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator(".notice")).to_have_text("The changes have been saved.")
    profile = page.locator("section[aria-labelledby=profile-h]")
    expect(profile).to_contain_text("Analyst")
    expect(profile).to_contain_text("eva@demo.example.com")
    roles = page.locator("section[aria-labelledby=roles-h]")
    expect(roles).to_contain_text("Department Administrator, managing Sales")
    # The audit of the person, newest first.
    expect(page.locator("section[aria-labelledby=audit-h] tbody tr").first).to_contain_text("owner")


def test_a_department_administrator_sees_only_its_departments(
    console: ConsolePage, people: World
) -> None:
    page = console.sign_in(people, "sales.admin")
    console.goto("/people")
    token = console.csrf()
    rows = page.locator("#people-results tbody tr")
    expect(rows.filter(has_text="anna.berg")).to_have_count(1)
    expect(rows.filter(has_text="annika.roth")).to_have_count(1)
    expect(rows.filter(has_text="bert.anders")).to_have_count(0)
    options = page.locator("#department option")
    expect(options.filter(has_text="Engineering")).to_have_count(0)
    console.goto(f"/people/{people.users['bert.anders']}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Permission Denied")
    with console.client() as client:
        answer = client.get(f"/console/people/{people.users['bert.anders']}")
        assert answer.status_code == 403
        # Junk in the query string: a clear message, never a 500.
        for query, words in (
            ("department=junk", "no such department"),
            (f"department={people.departments['eng']}", "no such department"),
            ("status=sleeping", "must be active"),
            ("group=nope", "no such group"),
            ("after=zzz", "is not a user id"),
        ):
            answer = client.get(f"/console/people?{query}")
            assert answer.status_code == 422, query
            assert words in answer.text, query
        assert client.get("/console/people/not-an-id").status_code == 404
        # A bulk change reaching outside one's departments changes nobody, and says why.
        bert, anna = people.users["bert.anders"], people.users["anna.berg"]
        for selected, words in (([], "select at least one"), ([anna, bert], "outside")):
            answer = client.post(
                "/console/people/bulk",
                data={"csrf": token, "action": "deactivate", "selected": selected},
            )
            assert answer.status_code == 422
            assert words in answer.text
        assert client.get("/console/people?q=anna.berg").status_code == 200
        assert client.get("/console/people?q=" + "x" * 1000).status_code in (200, 422)


def test_the_list_pages_with_keysets(
    console: ConsolePage, console_site: ConsoleSite, people: World
) -> None:
    owner = console_sessions.sign_in(console_site.db, people.account_url, "owner", "Demo-Owner-1")[
        1
    ].actor
    for i in range(55):
        add_user(
            console_site.db,
            owner,
            AddUser(login=f"pager{i:02d}", department_id=people.departments["eng"]),
        )
    console.sign_in(people, "owner")
    seen: list[str] = []
    with console.client() as client:
        url = "/console/people?q=pager"
        answer = client.get(url)
        first = re.findall(r'href="/console/people/([0-9a-f-]{36})"', answer.text)
        assert len(first) == 50
        following = re.search(r'href="([^"]*after=[^"]*)" rel="next">Next page', answer.text)
        assert following is not None
        answer = client.get(following.group(1).replace("&amp;", "&"))
        rest = re.findall(r'href="/console/people/([0-9a-f-]{36})"', answer.text)
        assert "First page" in answer.text and "Next page" not in answer.text
        seen = first + rest
    assert len(seen) == len(set(seen)) == 55


def test_a_deactivation_scheduled_changed_and_cancelled(
    console: ConsolePage, console_site: ConsoleSite, people: World
) -> None:
    page = console.sign_in(people, "owner")
    anna = people.users["anna.berg"]
    console.goto(f"/people/{anna}")
    later = (date.today() + timedelta(days=30)).isoformat()
    page.get_by_label("Deactivate on").fill(later)
    page.get_by_role("button", name="Schedule").first.click()
    expect(page.locator(".notice")).to_have_text(f"The person will be deactivated on {later}.")
    owner = console_sessions.sign_in(console_site.db, people.account_url, "owner", "Demo-Owner-1")[
        1
    ].actor
    assert get_user(console_site.db, owner, anna).deactivate_on == date.fromisoformat(later)
    # A date in the past (the browser's date picker does not offer one; a script may send it):
    # the core's message next to the field, nothing changed.
    with console.client() as client:
        answer = client.post(
            f"/console/people/{anna}/schedule",
            data={"csrf": console.csrf(), "change": "deactivation", "date": "2001-01-01"},
        )
    assert answer.status_code == 422
    assert 'id="when-deactivation-error"' in answer.text and "in the past" in answer.text
    assert get_user(console_site.db, owner, anna).deactivate_on == date.fromisoformat(later)
    page.get_by_role("button", name="Cancel the deactivation").click()
    expect(page.locator(".notice")).to_have_text("The scheduled deactivation was cancelled.")
    assert get_user(console_site.db, owner, anna).deactivate_on is None
