"""Signing in and out, and a user's own profile page (all a learner sees of the console)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from learndir.api.console.web import (
    COOKIE,
    HEADERS,
    Console,
    check_origin,
    cookie_path,
    current,
    database,
    error_text,
    field_errors,
    is_https,
    posted,
    prefix,
    session_policy,
    templates,
    text,
)
from learndir.api.docs import base_path
from learndir.core import console_sessions
from learndir.core.errors import DomainError, ErrorCode
from learndir.core.profile_fields import account_fields
from learndir.core.users.changes import change_password
from learndir.core.users.queries import get_user

router = APIRouter()

# A sign-in form is a few short fields.
_MAX_FORM_BYTES = 16 * 1024


def _safe_next(request: Request, target: str | None) -> str:
    """Where to go after signing in: a console page of this service, never another site."""
    home = prefix(request)
    if target and (target == home or target.startswith(home + "/")) and "//" not in target:
        return target
    return home + "/"


def _sign_in_page(
    request: Request, status: int, values: dict[str, str], error: str | None = None
) -> HTMLResponse:
    context: dict[str, Any] = {
        "console": None,
        "base": prefix(request),
        "assets": base_path(request) + "/console/assets",
        "api": base_path(request),
        "values": values,
        "error": error,
        "title": "Sign in",
    }
    headers = dict(HEADERS)
    if status == 429:
        headers["Retry-After"] = values.get("retry_after", "60")
    return templates.TemplateResponse(
        request, "sign_in.html", context, status_code=status, headers=headers
    )


@router.get("/sign-in", include_in_schema=False)
def sign_in_form(request: Request, account: str = "", next: str = "", ended: str = "") -> Response:
    raw = request.cookies.get(COOKIE)
    if raw:
        try:
            console_sessions.open_session(database(request), raw, session_policy(request))
            return RedirectResponse(_safe_next(request, next), status_code=303)
        except DomainError:
            pass
    values = {"account": account, "login": "", "next": next}
    notice = "Your session has ended. Sign in again to go on." if ended else None
    return _sign_in_page(request, 200, values, notice)


@router.post("/sign-in", include_in_schema=False)
async def sign_in(request: Request) -> Response:
    check_origin(request)
    if int(request.headers.get("content-length") or 0) > _MAX_FORM_BYTES:
        return _sign_in_page(request, 413, {}, "The form is too large.")
    form: FormData = await request.form()
    values = {
        "account": text(form, "account"),
        "login": text(form, "login"),
        "next": text(form, "next"),
    }
    password = form.get("password")
    secret = password if isinstance(password, str) else ""
    try:
        raw, _session = await run_in_threadpool(
            console_sessions.sign_in,
            database(request),
            values["account"],
            values["login"],
            secret,
        )
    except DomainError as exc:
        if exc.code is ErrorCode.TOO_MANY_ATTEMPTS:
            values["retry_after"] = str(exc.retry_after or 60)
            return _sign_in_page(request, 429, values, error_text(exc))
        return _sign_in_page(request, 401, values, error_text(exc))
    response = RedirectResponse(_safe_next(request, values["next"]), status_code=303)
    response.set_cookie(
        COOKIE,
        raw,
        path=cookie_path(request),
        httponly=True,
        samesite="lax",
        secure=is_https(request),
    )
    return response


@router.post("/sign-out", include_in_schema=False)
def sign_out(
    request: Request, console: Console = Depends(current), _form: FormData = Depends(posted)
) -> Response:
    console_sessions.end_session(console.db, console.raw)
    response = RedirectResponse(prefix(request) + "/sign-in", status_code=303, headers=HEADERS)
    response.delete_cookie(COOKIE, path=cookie_path(request))
    return response


def _profile_context(console: Console) -> dict[str, Any]:
    user = get_user(console.db, console.actor, console.actor.user_id)
    # The labels of one's own profile's fields (a learner may not list the account's fields
    # over the API, but sees its own values here under their labels).
    with console.db.read() as conn:
        fields = account_fields(conn, console.actor.account_id)
    return {"user": user, "fields": fields}


@router.get("/me", include_in_schema=False)
def my_profile(console: Console = Depends(current)) -> Response:
    return console.render("me.html", _profile_context(console), section="me", title="My profile")


@router.post("/me/password", include_in_schema=False)
def my_password(console: Console = Depends(current), form: FormData = Depends(posted)) -> Response:
    current_password = form.get("current")
    new_password = form.get("password")
    repeat = form.get("repeat")
    errors: dict[str, str] = {}
    try:
        console_sessions.confirm_password(
            console.db,
            console.session,
            current_password if isinstance(current_password, str) else "",
        )
    except DomainError as exc:
        reason = (
            error_text(exc)
            if exc.code is ErrorCode.TOO_MANY_ATTEMPTS
            else "the current password is not right"
        )
        errors["current"] = reason
    if not errors and new_password != repeat:
        errors["repeat"] = "the two new passwords differ"
    if not errors:
        try:
            change_password(
                console.db,
                console.actor,
                console.actor.user_id,
                new_password if isinstance(new_password, str) else None,
            )
        except DomainError as exc:
            errors.update(field_errors(exc, {"password": "password"}))
    if errors:
        context = _profile_context(console)
        context["errors"] = errors
        return console.render("me.html", context, status=422, section="me", title="My profile")
    console_sessions.end_sessions_of(
        console.db, console.actor.user_id, keep=console.session.session_id
    )
    return console.redirect("/me", "Your password has been changed.")
