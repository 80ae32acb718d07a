"""The set-password page a new user reaches from an invitation's link: `GET /invite/{token}`
shows the form, `POST` sets the password. Server-rendered, no JavaScript.

The token in the path is the only credential, so the page is never cached, never sends the
address on as a referrer, cannot be framed, and loads nothing from anywhere else; the access
log masks it (see app.RequestGuard). A form carrying the token needs no CSRF token: a forged
submit would have to know it already.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from learndir.api.docs import OWN_ASSETS, base_path
from learndir.api.execution import call_core
from learndir.core.errors import DomainError, ErrorCode
from learndir.core.invitations import service
from learndir.core.invitations.service import InvitationLink, LinkState
from learndir.core.text import text_problem
from learndir.core.users.service import MAX_PASSWORD_LENGTH
from learndir.db.engine import Database

router = APIRouter()


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))

# The password form's body is tiny; anything larger is not a person typing a password.
_MAX_FORM_BYTES = 8 * 1024

_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}

# The page shown for a link that cannot be used, by the core's error code.
_STATE_OF_ERROR = {
    ErrorCode.INVITATION_USED: LinkState.USED,
    ErrorCode.INVITATION_EXPIRED: LinkState.EXPIRED,
    ErrorCode.INVITATION_REVOKED: LinkState.REVOKED,
}


def _page(
    request: Request,
    status: int,
    view: str,
    link: InvitationLink | None = None,
    errors: list[str] | None = None,
) -> HTMLResponse:
    context: dict[str, Any] = {
        "assets": base_path(request) + OWN_ASSETS,
        "view": view,
        "link": link,
        "errors": errors or [],
        "max_length": MAX_PASSWORD_LENGTH,
    }
    return templates.TemplateResponse(
        request, "invite.html", context, status_code=status, headers=_HEADERS
    )


def _unusable(
    request: Request, state: LinkState, link: InvitationLink | None = None
) -> HTMLResponse:
    return _page(request, 410, state.value, link)


def _locked(request: Request, exc: DomainError) -> HTMLResponse:
    """Too many unknown links from this address: the page says so, Retry-After says how long."""
    page = _page(request, 429, "locked")
    page.headers["Retry-After"] = str(exc.retry_after or 60)
    return page


def _not_found(request: Request) -> HTMLResponse:
    # The same wording as a revoked link: an unknown token tells nothing more.
    return _page(request, 404, LinkState.REVOKED.value)


def _usable_token(token: str) -> bool:
    """Whether the token keeps the input rule (core.text); one that does not is no link's."""
    return text_problem(token) is None


@router.get("/invite/{token}", include_in_schema=False)
def show(request: Request, token: str) -> HTMLResponse:
    if not _usable_token(token):
        return _not_found(request)
    try:
        link = service.invitation_by_token(_db(request), token)
    except DomainError as exc:
        if exc.code is ErrorCode.NOT_FOUND:
            return _not_found(request)
        if exc.code is ErrorCode.TOO_MANY_ATTEMPTS:
            return _locked(request, exc)
        raise
    if link.state is not LinkState.VALID:
        return _unusable(request, link.state, link)
    return _page(request, 200, "form", link)


def _form_again(request: Request, db: Database, token: str, error: str) -> HTMLResponse:
    """The form with `error`, or what the link has become meanwhile."""
    link = service.invitation_by_token(db, token)
    if link.state is not LinkState.VALID:
        return _unusable(request, link.state, link)
    return _page(request, 400, "form", link, [error])


def _read_form(body: bytes) -> tuple[str, str | None]:
    """The password from the form, or what is wrong with the form: text that is not UTF-8 or
    breaks the input rule (core.text), no password, or a confirmation that differs."""
    try:
        form = dict(parse_qsl(body[:_MAX_FORM_BYTES].decode("utf-8"), errors="strict"))
    except UnicodeDecodeError:
        return "", "The password is not valid UTF-8."
    password, confirmation = form.get("password", ""), form.get("confirmation", "")
    for value in (password, confirmation):
        problem = text_problem(value)
        if problem is not None:
            return "", f"The password {problem}."
    if not password:
        return "", "Enter a password."
    if password != confirmation:
        return "", "The two passwords differ: type the same one twice."
    return password, None


@router.post("/invite/{token}", include_in_schema=False)
async def submit(request: Request, token: str) -> HTMLResponse:
    db = _db(request)
    if not _usable_token(token):
        return _not_found(request)
    password, problem = _read_form(await request.body())
    try:
        # The link is read here only to show the form again; accept() reads it itself.
        if problem is not None:
            return _form_again(request, db, token, problem)
        done = await call_core(db, lambda: service.accept(db, token, password), may_hash=True)
    except DomainError as exc:
        if exc.code is ErrorCode.NOT_FOUND:
            return _not_found(request)
        if exc.code is ErrorCode.TOO_MANY_ATTEMPTS:
            return _locked(request, exc)
        if exc.code in _STATE_OF_ERROR:
            return _unusable(request, _STATE_OF_ERROR[exc.code])
        if exc.code is ErrorCode.INVALID_PARAMETERS:
            return _form_again(request, db, token, f"The password {exc.reason}.")
        raise
    return _page(request, 200, "done", done)
