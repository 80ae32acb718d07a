"""The Groups section in a browser: the list with member counts, an ordinary group's members
(add by login, remove), and a smart group's rules in words with a live member count while they
are edited."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from playwright.sync_api import Page, expect

from tests.console.support import ConsolePage, ConsoleSite, add_people, notice, squash
from tests.support import World

# Who is where: sales.admin (Sales, no country), and these.
PEOPLE = (
    ("ana", "sales", "DE", "Ana"),
    ("ben", "sales-eu", "FR", "Ben"),
    ("cem", "eng", "DE", "Cem"),
)


@pytest.fixture(scope="module")
def world(console_site: ConsoleSite, demo_world: World) -> World:
    return add_people(
        console_site,
        demo_world,
        [
            (login, dept, {"country": country, "first_name": first})
            for login, dept, country, first in PEOPLE
        ],
    )


def live(page: Page) -> str:
    return squash(page.locator("[data-live-count]").inner_text())


def test_an_ordinary_group_its_members_added_and_removed(
    console: ConsolePage, world: World
) -> None:
    page = console.sign_in(world, "owner")
    page.goto(console.url("/groups"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Groups")
    row = page.get_by_role("row", name="Newcomers")
    expect(row).to_contain_text("ordinary")
    console.check("groups")

    page.get_by_label("Group name").fill("Mentors")
    page.get_by_role("button", name="Create group").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Mentors")
    assert notice(page) == "Group Mentors has been created."

    # An unknown login is reported by name; nothing is added, what was typed stays.
    box = page.get_by_label("Logins or e-mails")
    box.fill("ana, nobody.here")
    page.get_by_role("button", name="Add members").click()
    expect(page.locator("#add-members-error")).to_contain_text("'nobody.here'")
    expect(box).to_have_value("ana, nobody.here")
    expect(page.get_by_text("No members yet.")).to_be_visible()
    box.fill("ana\nben@demo.example.com")
    page.get_by_role("button", name="Add members").click()
    assert notice(page) == "2 members added."
    members = page.get_by_role("table")
    expect(members.get_by_role("row")).to_have_count(3)
    expect(members).to_contain_text("Sales EU")
    page.get_by_role("button", name="Remove ben").click()
    assert notice(page) == "1 member removed."
    expect(members.get_by_role("row")).to_have_count(2)
    expect(members).to_contain_text("ana")
    expect(members).not_to_contain_text("ben")
    console.check("group")
    mentors = page.url.split("?")[0].rsplit("/", 1)[1]
    page.goto(console.url("/groups"))
    expect(page.get_by_role("row", name="Mentors")).to_contain_text("1")

    # Whatever is sent, an answer that says what is wrong, never a server error.
    junk = [
        (f"/groups/{mentors}/members/remove", {"selected": "not-an-id"}),
        (f"/groups/{mentors}/members/remove", {}),
        (f"/groups/{mentors}/members/add", {"members": " , ;"}),
        (f"/groups/{mentors}/rules", {"attr": "department", "value": "Sales"}),
        ("/groups/preview", {"attr": "field:nope", "value": "x"}),
        ("/groups/preview", {"attr": "department", "op": "9", "value": "x" * 300}),
        ("/groups/preview", {"group": "nope", "attr": "department", "value": "Sales"}),
        ("/groups/preview", {}),
        ("/groups/smart", {"name": "", "value": ["a", "b"], "attr": "group"}),
        (f"/departments/{world.root_id}/move", {"parent": ""}),
        (f"/departments/{world.root_id}/delete", {}),
        ("/departments", {"name": "", "parent": "zzz"}),
        ("/departments/zzz", {"name": "x"}),
    ]
    with console.client() as client:
        for path, data in junk:
            answer = client.post("/console" + path, data={**data, "csrf": console.csrf()})
            assert answer.status_code in (403, 404, 422), (path, answer.status_code)
        assert client.get(f"/console/groups/{mentors}?after=zzz").status_code == 200
        assert client.get("/console/groups/zzz").status_code == 404


def test_a_smart_group_in_words_with_a_live_count(console: ConsolePage, world: World) -> None:
    page = console.sign_in(world, "owner")
    page.goto(console.url("/groups"))
    page.get_by_role("link", name="New smart group").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New smart group")
    page.get_by_label("Group name").fill("Sales in Germany")
    page.get_by_label("Field of condition 1").select_option(label="Department")
    page.get_by_label("Condition of condition 1").select_option(label="is, or below it")
    page.get_by_label("Value of condition 1").fill("Nowhere")
    expect(page.locator("[data-live-count]")).to_contain_text("no department named 'Nowhere'")
    page.get_by_label("Value of condition 1").fill("Sales")
    # sales.admin and ana in Sales, ben in Sales EU.
    expect(page.locator("[data-live-count]")).to_have_text("3 people match these rules.")
    page.get_by_role("button", name="Add a condition").click()
    expect(page.get_by_label("Field of condition 2")).to_be_focused()
    page.get_by_label("Field of condition 2").select_option(label="Country")
    page.get_by_label("Value of condition 2").fill("Germany")
    expect(page.locator("[data-live-count]")).to_have_text("1 person matches these rules.")
    console.check("smart-group-new")
    page.get_by_role("button", name="Create smart group").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sales in Germany")
    words = page.locator("[data-rules-words]")
    expect(words).to_have_text("Department is Sales or below, and Country is Germany")
    members = page.get_by_role("table")
    expect(members.get_by_role("row")).to_have_count(2)
    expect(members).to_contain_text("ana")
    expect(page.get_by_role("button", name="Remove ana")).to_have_count(0)
    console.check("smart-group")

    # Edited: "or" instead of "and" matches more people; the count follows before saving.
    expect(page.locator("[data-live-count]")).to_have_text("1 person matches these rules.")
    page.get_by_label("Joined to condition 1").select_option("or")
    expect(page.locator("[data-live-count]")).to_have_text("4 people match these rules.")
    expect(words).to_have_text("Department is Sales or below, and Country is Germany")
    page.get_by_role("button", name="Save rules").click()
    assert notice(page) == "The smart group has been saved."
    expect(words).to_have_text("Department is Sales or below or Country is Germany")
    expect(members.get_by_role("row")).to_have_count(5)

    # A rule the core refuses is shown next to its row; nothing is saved.
    page.get_by_label("Value of condition 2").fill("Atlantis")
    page.get_by_role("button", name="Save rules").click()
    expect(page.locator("#value-1-error")).to_contain_text("not a country")
    expect(page.get_by_label("Value of condition 2")).to_have_value("Atlantis")
    expect(words).to_have_text("Department is Sales or below or Country is Germany")


def test_a_department_administrator_reads_smart_rules_but_cannot_change_them(
    console: ConsolePage, world: World
) -> None:
    page = console.sign_in(world, "sales.admin")
    page.goto(console.url("/groups"))
    expect(page.get_by_role("link", name="New smart group")).to_have_count(0)
    with console.client() as client:
        assert client.get("/console/groups/smart/new").status_code == 403
    page.get_by_role("link", name="Sales in Germany").click()
    expect(page.locator("[data-rules-words]")).to_have_text(
        "Department is Sales or below or Country is Germany"
    )
    expect(page.get_by_role("button", name="Save rules")).to_have_count(0)
    # Only its own people are listed: cem (Engineering) is a member it does not see.
    members = page.get_by_role("table")
    expect(members).to_contain_text("ana")
    expect(members).not_to_contain_text("cem")
    form = {"join": "and", "attr": "department", "op": "1", "value": "Sales"}
    with console.client() as client:
        answer = client.post("/console/groups/preview", data=form)
        assert answer.status_code == 403  # no CSRF token
        answer = client.post(
            "/console/groups/preview", data=form, headers={"X-CSRF-Token": console.csrf()}
        )
        assert answer.status_code == 422
        assert "only the owner and account administrators" in answer.json()["text"]


def test_text_no_field_may_hold_is_refused_next_to_the_field(
    console: ConsolePage, world: World
) -> None:
    console.sign_in(world, "owner")
    group = world.groups["Newcomers"]
    bad = "a\x00b\ud800"
    posts = [
        ("/departments", {"name": bad, "parent": world.root_id}, "new-name-error"),
        (f"/departments/{world.root_id}", {"name": "Root", "code": bad}, "rename-code-error"),
        (f"/groups/{group}/members/add", {"members": bad}, "add-members-error"),
        ("/groups", {"name": bad}, "group-name-error"),
        ("/groups/smart", {"name": "S", "attr": "field:first_name", "value": bad}, "value-0-error"),
        (
            "/groups/smart",
            {"name": bad, "attr": "department", "value": "Sales"},
            "smart-name-error",
        ),
        (f"/groups/{group}/rename", {"name": "x", bad: "y"}, "form-error"),
    ]
    with console.client() as client:
        for path, data, shown_in in posts:
            body = "&".join(
                f"{quote(k, errors='surrogatepass')}={quote(v, errors='surrogatepass')}"
                for k, v in {**data, "csrf": console.csrf()}.items()
            )
            answer = client.post(
                "/console" + path,
                content=body.encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert answer.status_code == 422, (path, answer.status_code)
            assert shown_in in answer.text, path
            assert "control characters" in answer.text or "surrogates" in answer.text
        answer = client.post(
            "/console/groups/preview",
            data={"attr": "field:first_name", "value": "x\x00", "csrf": console.csrf()},
        )
        assert answer.status_code == 422
        assert "control characters" in answer.json()["text"]
