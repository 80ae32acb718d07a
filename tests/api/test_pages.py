"""What a person finds at the service's address, in a real headless browser: the home page,
the interactive API docs (their assets served by learndir itself: nothing from a CDN), and
learndir's OpenAPI document behind them."""

from __future__ import annotations

import httpx
from axe_playwright_python.sync_playwright import Axe

from tests.browser import OfflinePage
from tests.support import Server


def test_home_page_says_what_this_is(server: Server) -> None:
    response = httpx.get(f"{server.base_url}/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    for link in ('href="/docs"', 'href="/openapi.json"', 'href="/soap?wsdl"', 'href="/health"'):
        assert link in response.text


def test_home_page_under_a_prefix_links_within_it(server: Server) -> None:
    response = httpx.get(f"{server.base_url}/index.php/api/v2/")
    assert response.status_code == 200
    assert 'href="/index.php/api/v2/docs"' in response.text


def test_home_page_in_the_browser(server: Server, offline_page: OfflinePage) -> None:
    page = offline_page.page
    page.goto(f"{server.base_url}/")
    assert page.title() == "learndir"
    assert page.get_by_role("heading", level=1).inner_text().startswith("learndir")
    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_report()
    page.get_by_role("link", name="Interactive API documentation").click()
    page.wait_for_url(f"{server.base_url}/docs")
    assert offline_page.outside == []


def test_docs_render_offline(server: Server, offline_page: OfflinePage) -> None:
    """Swagger UI loads learndir's document from the service and lists its operations."""
    page = offline_page.page
    page.goto(f"{server.base_url}/docs")
    page.wait_for_selector(".opblock-tag-section", timeout=15_000)
    assert "learndir REST API" in page.locator(".info .title").inner_text()
    tags = {t.strip() for t in page.locator(".opblock-tag").all_inner_texts()}
    assert {"user", "department", "group", "role", "token"} <= {t.split("\n")[0] for t in tags}
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/user/{userId}" in [p.replace("\u200b", "") for p in paths]
    assert offline_page.outside == []
