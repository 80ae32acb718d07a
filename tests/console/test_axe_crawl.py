"""axe-core on every page a person can reach: the console is crawled link by link from the
overview, as the owner and as a department administrator, each kind of page (ids aside) once,
and every page must pass (no serious or critical violation) without a request leaving the
machine or a breach of its Content-Security-Policy. The error pages a department administrator
meets outside its subtree are checked too."""

from __future__ import annotations

import re
from urllib.parse import urldefrag, urlsplit

from playwright.sync_api import expect

from tests.console.support import ConsolePage, ConsoleSite, add_people
from tests.support import World

_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Files, not pages.
_DOWNLOADS = re.compile(r"/(template|export|errors)(\?|$)|format=")


def _shape(path: str) -> str:
    return _ID.sub("{id}", path.split("?", 1)[0])


def _crawl(console: ConsolePage, limit: int = 60) -> set[str]:
    """Every kind of console page reachable by links from the overview, each checked."""
    page = console.page
    origin = console.site.base_url
    todo = [console.url("/")]
    seen_shapes: set[str] = set()
    while todo and len(seen_shapes) < limit:
        url = todo.pop(0)
        shape = _shape(urlsplit(url).path)
        if shape in seen_shapes:
            continue
        seen_shapes.add(shape)
        answer = page.goto(url)
        assert answer is not None and answer.status < 500, url
        console.check()
        for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
            target, _ = urldefrag(href)
            parts = urlsplit(target)
            if (
                target.startswith(origin + "/console")
                and not _DOWNLOADS.search(target)
                and _shape(parts.path) not in seen_shapes
            ):
                todo.append(target)
    return seen_shapes


def test_every_page_passes_axe_for_the_owner(console: ConsolePage, demo_world: World) -> None:
    console.sign_in(demo_world, "owner")
    shapes = _crawl(console)
    for expected in (
        "/console/people",
        "/console/people/{id}",
        "/console/people/new",
        "/console/departments/{id}",
        "/console/groups/{id}",
        "/console/settings/audit",
        "/console/me",
    ):
        assert expected in shapes, sorted(shapes)


def test_every_page_passes_axe_for_a_department_administrator(
    console: ConsolePage, console_site: ConsoleSite, demo_world: World
) -> None:
    add_people(console_site, demo_world, [("eng.person", "eng", {"first_name": "Eng"})])
    console.sign_in(demo_world, "sales.admin")
    shapes = _crawl(console)
    assert "/console/settings" not in shapes
    # Outside its subtree: the core's refusal, as a page that passes axe too.
    page = console.page
    for path in (
        f"/people/{demo_world.users['eng.person']}",
        f"/departments/{demo_world.departments['eng']}",
        "/settings",
    ):
        answer = page.goto(console.url(path))
        assert answer is not None and answer.status == 403, path
        expect(page.get_by_role("alert")).to_be_visible()
        console.check()
