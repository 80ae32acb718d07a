"""What a person finds at the service's address, in a real headless browser: the home page,
the interactive API docs (their assets served by learndir itself: nothing from a CDN), and
learndir's OpenAPI document behind them."""

from __future__ import annotations

import httpx
from axe_playwright_python.sync_playwright import Axe

from tests.browser import OfflinePage
from tests.support import Server

PAGE_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def assert_page_headers(response: httpx.Response) -> str:
    """The security headers of every HTML page; returns its Content-Security-Policy."""
    assert response.headers["content-type"].startswith("text/html")
    for name, value in PAGE_HEADERS.items():
        assert response.headers[name] == value, name
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    return policy


def test_the_root_leads_to_the_console(server: Server) -> None:
    for root, console in (("/", "/console/"), ("/api/v2/", "/api/v2/console/")):
        response = httpx.get(f"{server.base_url}{root}")
        assert response.status_code == 303
        assert response.headers["location"] == console


def test_home_page_says_what_this_is(server: Server) -> None:
    response = httpx.get(f"{server.base_url}/about")
    assert response.status_code == 200
    assert "script-src" not in assert_page_headers(response)
    assert "<style" not in response.text and "<script" not in response.text
    for link in ('href="/console"', 'href="/docs"', 'href="/openapi.json"', 'href="/soap?wsdl"', 'href="/health"'):
        assert link in response.text


def test_home_page_under_a_prefix_links_within_it(server: Server) -> None:
    response = httpx.get(f"{server.base_url}/index.php/api/v2/about")
    assert response.status_code == 200
    assert 'href="/index.php/api/v2/docs"' in response.text
    assert 'href="/index.php/api/v2/assets/pages.css"' in response.text
    style = httpx.get(f"{server.base_url}/index.php/api/v2/assets/pages.css")
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")


def test_docs_page_has_no_inline_script(server: Server) -> None:
    response = httpx.get(f"{server.base_url}/docs")
    assert response.status_code == 200
    policy = assert_page_headers(response)
    assert "script-src 'self'" in policy
    assert "<script>" not in response.text and "<style" not in response.text


def test_api_answers_are_not_sniffed(server: Server) -> None:
    for path in (
        "/health",
        "/openapi.json",
        "/soap?wsdl",
        "/no-such-path",
        "/docs/assets/swagger-ui.css",
    ):
        response = httpx.get(f"{server.base_url}{path}")
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"], path


def test_home_page_in_the_browser(server: Server, offline_page: OfflinePage) -> None:
    page = offline_page.page
    page.goto(f"{server.base_url}/about")
    assert page.title() == "learndir"
    assert page.get_by_role("heading", level=1).inner_text().startswith("learndir")
    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_report()
    page.get_by_role("link", name="Interactive API documentation").click()
    page.wait_for_url(f"{server.base_url}/docs")
    assert offline_page.outside == []
    assert offline_page.csp_violations == []


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
    page.locator(".opblock-summary").first.click()
    page.wait_for_selector(".opblock-body", timeout=5_000)
    assert offline_page.outside == []
    assert offline_page.csp_violations == []
