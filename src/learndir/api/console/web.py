"""The console's plumbing, shared by every page: the session cookie, CSRF, rendering, notices
and errors.

Pages are server-rendered Jinja2 templates. Handlers are plain functions (FastAPI runs them in
its thread pool) that call the core with the signed-in user as the actor, exactly as the APIs
do: every rule, message and audit record is the core's.

- The session cookie `learndir_console` is HttpOnly, SameSite=Lax, Path=/ under the service's
  prefix, and Secure whenever the request came over HTTPS (forwarded headers honoured).
- Every POST must carry the session's CSRF token (a form field `csrf`, or the X-CSRF-Token
  header for the page scripts' requests), and must not come from another site (Origin and
  Sec-Fetch-Site are checked when the browser sends them). Refused with 403, nothing changed.
- A page's answer is never cached and runs only learndir's own script and style sheet.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

import learndir
from learndir.api.docs import OWN_ASSETS, base_path
from learndir.core.actor import Actor
from learndir.core.console_sessions import ConsoleSession, SessionPolicy, open_session, same_token
from learndir.core.errors import DomainError, ErrorCode
from learndir.db.engine import Database

COOKIE = "learndir_console"
NOTICE_COOKIE = "learndir_console_notice"
CONSOLE = "/console"
CONSOLE_ASSETS = "/console/assets"
ASSETS_PATH = Path(__file__).with_name("static")

POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}

templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))
templates.env.globals["version"] = learndir.__version__


class SignedOut(Exception):
    """No usable session: the page answers with the sign-in form (see install())."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Refused(Exception):
    """A request the console refuses outright (a forged form, a page not for this user)."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail


def database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def session_policy(request: Request) -> SessionPolicy:
    settings = request.app.state.settings
    return SessionPolicy.of(settings.console_idle_minutes, settings.console_max_hours)


def prefix(request: Request) -> str:
    """The console's own path, under the service's prefix (/api/v2/console, say)."""
    return base_path(request) + CONSOLE


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


@dataclass
class Console:
    """One request of a signed-in user: who, where, and how to answer."""

    request: Request
    session: ConsoleSession
    raw: str = field(repr=False)

    @property
    def actor(self) -> Actor:
        return self.session.actor

    @property
    def db(self) -> Database:
        return database(self.request)

    @property
    def base(self) -> str:
        return prefix(self.request)

    def url(self, path: str = "") -> str:
        return self.base + path

    def render(
        self,
        template: str,
        context: dict[str, Any] | None = None,
        *,
        status: int = 200,
        section: str = "",
        title: str = "",
    ) -> HTMLResponse:
        notice = _read_notice(self.request, self.raw)
        values: dict[str, Any] = {
            "console": self,
            "actor": self.actor,
            "account": self.actor.account,
            "csrf": self.session.csrf_token,
            "base": self.base,
            "assets": base_path(self.request) + CONSOLE_ASSETS,
            "api": base_path(self.request),
            "own_assets": base_path(self.request) + OWN_ASSETS,
            "section": section,
            "title": title,
            "notice": notice,
            "errors": {},
            "error": None,
        }
        values.update(context or {})
        response = templates.TemplateResponse(
            self.request, template, values, status_code=status, headers=HEADERS
        )
        if notice is not None:
            response.delete_cookie(NOTICE_COOKIE, path=cookie_path(self.request))
        return response

    def redirect(self, path: str, notice: str | None = None) -> RedirectResponse:
        """303 to a console page (POST, then GET), with a one-time notice shown there."""
        response = RedirectResponse(self.url(path), status_code=303, headers=HEADERS)
        if notice:
            response.set_cookie(
                NOTICE_COOKIE,
                _sign_notice(self.raw, notice),
                path=cookie_path(self.request),
                httponly=True,
                samesite="lax",
                secure=is_https(self.request),
                max_age=120,
            )
        return response


def cookie_path(request: Request) -> str:
    return prefix(request)


def _notice_mac(raw: str, encoded: str) -> str:
    return hmac.new(raw.encode(), b"notice\0" + encoded.encode(), hashlib.sha256).hexdigest()[:32]


def _sign_notice(raw: str, text: str) -> str:
    encoded = base64.urlsafe_b64encode(text[:500].encode()).decode()
    return f"{encoded}.{_notice_mac(raw, encoded)}"


def _read_notice(request: Request, raw: str) -> str | None:
    value = request.cookies.get(NOTICE_COOKIE)
    if not value or "." not in value:
        return None
    encoded, mac = value.rsplit(".", 1)
    if not same_token(_notice_mac(raw, encoded), mac):
        return None
    try:
        return base64.urlsafe_b64decode(encoded.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def current(request: Request) -> Console:
    """The signed-in user of this request (any role)."""
    raw = request.cookies.get(COOKIE)
    try:
        session = open_session(database(request), raw, session_policy(request))
    except DomainError as exc:
        raise SignedOut(exc.reason or exc.message) from exc
    return Console(request, session, raw or "")


def administrator(console: Console = Depends(current)) -> Console:
    """A user with console rights beyond their own profile: learners are sent to theirs."""
    if console.actor.is_learner_only:
        raise Refused(
            403,
            "Not available",
            "This page is for administrators. Your own profile is under My profile.",
        )
    return console


def account_administrator(console: Console = Depends(administrator)) -> Console:
    if not console.actor.administers_account:
        raise Refused(
            403,
            "Not available",
            "Only the account owner and account administrators can open this page.",
        )
    return console


def check_origin(request: Request) -> None:
    """Refuses a request another site made the browser send."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        raise Refused(403, "Request refused", "The form was sent from another site.")
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        parts = urlsplit(origin)
        if (parts.scheme, parts.netloc) != (request.url.scheme, request.url.netloc):
            raise Refused(403, "Request refused", "The form was sent from another site.")


async def posted(request: Request, console: Console = Depends(current)) -> FormData:
    """The submitted form, after the CSRF check: a form without this session's token (or from
    another site) is refused before any handler runs."""
    check_origin(request)
    form = await request.form()
    token = form.get("csrf")
    given = token if isinstance(token, str) else request.headers.get("x-csrf-token")
    if not same_token(console.session.csrf_token, given):
        raise Refused(
            403,
            "Request refused",
            "The form's security token is missing or out of date. Reload the page and try again.",
        )
    return form


def text(form: FormData, name: str) -> str:
    """A text field of the form, stripped ("" when absent or a file)."""
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def texts(form: FormData, name: str) -> list[str]:
    return [v.strip() for v in form.getlist(name) if isinstance(v, str) and v.strip()]


def field_errors(exc: DomainError, fields: dict[str, str] | None = None) -> dict[str, str]:
    """The core's error placed next to the form field it concerns: `fields` maps the core's
    parameter names to the form's field names (names not in it are used as they are). An error
    that concerns no field is under "" (shown at the top of the form)."""
    message = error_text(exc)
    parameter = exc.parameter or ""
    if not parameter:
        return {"": message}
    base = parameter.split("[", 1)[0].split(".", 1)[0]
    name = (fields or {}).get(parameter) or (fields or {}).get(base) or parameter
    return {name: message}


# The HTTP status of a rule's refusal, and the title of the page that shows it alone.
_STATUS = {
    ErrorCode.NOT_FOUND: (404, "Not found"),
    ErrorCode.PERMISSION_DENIED: (403, "Permission Denied"),
    ErrorCode.UNAUTHENTICATED: (401, "Signed out"),
    ErrorCode.TOO_MANY_ATTEMPTS: (429, "Too many attempts"),
}


def status_of(exc: DomainError) -> int:
    """What a page answering with the core's refusal says: 403, 404, ... or 422 (a form's
    input refused)."""
    return _STATUS.get(exc.code, (422, ""))[0]


def refusal_title(exc: DomainError) -> str:
    return _STATUS.get(exc.code, (422, exc.message))[1] or exc.message


def error_text(exc: DomainError) -> str:
    """The core's message as a person reads it: the seed's words, then what exactly."""
    if exc.code is ErrorCode.TOO_MANY_ATTEMPTS and exc.retry_after:
        return f"{exc.message}: try again in {exc.retry_after} seconds."
    if exc.reason:
        # The seed's words stay as they are (a script compares them); the reason follows.
        return f"{exc.message} ({exc.reason})"
    return exc.message


def sign_in_url(request: Request, reason: str | None = None) -> str:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    url = f"{prefix(request)}/sign-in?next={quote(target, safe='')}"
    if reason:
        url += "&ended=1"
    return url


def refused_page(request: Request, exc: Refused) -> Response:
    raw = request.cookies.get(COOKIE)
    context = {
        "console": None,
        "base": prefix(request),
        "assets": base_path(request) + CONSOLE_ASSETS,
        "api": base_path(request),
        "title": exc.title,
        "detail": exc.detail,
        "signed_in": bool(raw),
    }
    return templates.TemplateResponse(
        request, "refused.html", context, status_code=exc.status, headers=HEADERS
    )
