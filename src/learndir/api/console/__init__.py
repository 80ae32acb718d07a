"""The admin console at /console: server-rendered pages over the same core as the APIs (see
web.py for sessions, CSRF and rendering)."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from learndir.api.console import groups, imports, overview, people, settings, signin, tree
from learndir.api.console.web import (
    ASSETS_PATH,
    CONSOLE,
    CONSOLE_ASSETS,
    COOKIE,
    Refused,
    SignedOut,
    error_text,
    prefix,
    refusal_title,
    refused_page,
    sign_in_url,
    status_of,
)
from learndir.api.docs import base_path
from learndir.core.errors import DomainError

router = APIRouter(prefix=CONSOLE)
# The sections; each is a router of its own module, mounted under /console.
for section in (
    signin.router,
    overview.router,
    people.router,
    tree.router,
    groups.router,
    imports.router,
    settings.router,
):
    router.include_router(section)


def install(app: FastAPI) -> None:
    app.mount(CONSOLE_ASSETS, StaticFiles(directory=str(ASSETS_PATH)), name="console-assets")
    app.include_router(router)

    @app.get("/", include_in_schema=False)
    @app.get(CONSOLE, include_in_schema=False)
    def home(request: Request) -> Response:
        return RedirectResponse(base_path(request) + CONSOLE + "/", status_code=303)

    @app.exception_handler(SignedOut)
    async def signed_out(request: Request, exc: SignedOut) -> Response:
        if request.method == "GET":
            had_session = bool(request.cookies.get(COOKIE))
            return RedirectResponse(
                sign_in_url(request, exc.reason if had_session else None), status_code=303
            )
        return refused_page(
            request,
            Refused(401, "Signed out", "Your session has ended. Sign in again, then resend."),
        )

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        return refused_page(request, exc)


def is_console_path(request: Request) -> bool:
    path = request.url.path
    home = prefix(request)
    return path == home or path.startswith(home + "/")


def domain_error_page(request: Request, exc: DomainError) -> Response:
    """A rule's refusal that no form catches (a page for a user outside one's departments)."""
    return refused_page(request, Refused(status_of(exc), refusal_title(exc), error_text(exc)))


def http_error_page(request: Request, status: int, detail: str) -> Response:
    title = "Not found" if status == 404 else detail
    text = "There is no such page in the console." if status == 404 else detail
    return refused_page(request, Refused(status, title, text))
