"""Assembles the interfaces into one ASGI application."""

from __future__ import annotations

import contextlib
import gc
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from learndir.api import console, docs, invite, scim
from learndir.api.connections import BODY_TIMED_OUT
from learndir.api.ispring_rest import (
    api_keys,
    audit,
    directory,
    exports,
    imports,
    invitations,
    signin_locks,
    users_read,
    users_write,
    webhooks,
)
from learndir.api.ispring_rest import routes as rest
from learndir.api.ispring_rest.wire import error_body, render, render_error
from learndir.api.soap import routes as soap
from learndir.core import signin
from learndir.core.errors import DomainError
from learndir.core.origin import Interface, Origin, acting_from
from learndir.core.passwords import dummy_hash
from learndir.db.engine import Database
from learndir.delivery.outbox import backlog, webhook_backlog
from learndir.delivery.worker import Worker
from learndir.settings import Settings, get_settings

access_log = logging.getLogger("learndir.access")
error_log = logging.getLogger("learndir.error")

# A body this much larger than the cap is not drained: the connection is closed instead.
_DRAIN_LIMIT = 64 * 1024 * 1024


class _BodyTooLarge(Exception):
    pass


# A set-password link's token is a credential: logged paths show where it was, not what.
_INVITE_TOKEN = re.compile(r"(/invite/)[^/]+")


def loggable_path(path: str) -> str:
    if "/invite/" not in path:  # every request logs its path: skip the regex when it cannot match
        return path
    return _INVITE_TOKEN.sub(r"\1[token]", path)


# Every answer: no content sniffing, no framing, no script or style of any kind (an API answer
# opened in a browser is data, never a page).
_API_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
)
# HTML pages, unless a page sends its own (the docs page runs Swagger UI; the set-password page
# adds no-store): styles from learndir's own files, no script, no framing, no referrer (a
# page's address may carry a token).
_PAGE_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        b"frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


def _security_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The security headers an answer with `headers` lacks."""
    present = set()
    page = False
    for name, value in headers:
        present.add(name)
        if name == b"content-type" and value.startswith(b"text/html"):
            page = True
    return [
        header for header in (_PAGE_HEADERS if page else _API_HEADERS) if header[0] not in present
    ]


def _interface(path: str) -> Interface:
    for prefix, interface in (
        ("/soap", Interface.SOAP),
        ("/invite/", Interface.INVITE),
        ("/scim/", Interface.SCIM),
        ("/console", Interface.CONSOLE),
    ):
        if path.startswith(prefix):
            return interface
    return Interface.REST


def request_origin(scope: Scope, request_id: str) -> Origin:
    """Where the request comes from, for the audit trail and sign-in throttling."""
    client = scope.get("client")
    return Origin(
        interface=_interface(scope.get("path", "")),
        client_address=client[0] if client else None,
        request_id=request_id,
    )


class RequestGuard:
    """Caps request bodies before anything parses them, writes one log line per request with a
    request id (never a body, header value or query string), and adds the security headers to
    every answer."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, max_upload_bytes: int = 0) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        # File uploads (POST .../import) may be larger than any API call.
        self.max_upload_bytes = max(max_upload_bytes, max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex
        status_holder = {"status": 0}
        answered = False

        async def send_logged(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode("latin-1")),
                    *_security_headers(message["headers"]),
                ]
            elif not message.get("more_body"):
                answered = True
            await send(message)

        declared = headers.get(b"content-length")
        limit = (
            self.max_upload_bytes
            if scope.get("method") == "POST"
            and scope.get("path", "").rstrip("/").endswith("/import")
            else self.max_body_bytes
        )
        try:
            too_large = declared is not None and int(declared) > limit
        except ValueError:
            too_large = True
        received = 0
        # The client went away (or its body timed out) before it had its answer.
        disconnected = False

        async def limited_receive() -> Message:
            nonlocal received, disconnected
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge
            elif message["type"] == "http.disconnect" and not answered:
                disconnected = True
            return message

        try:
            if too_large:
                raise _BodyTooLarge
            with acting_from(request_origin(scope, request_id)):
                await self.app(scope, limited_receive, send_logged)
        except _BodyTooLarge:
            await self._drain(receive, received)
            reason = f"the request body is larger than {limit} bytes"
            await self._send_error(
                scope, send_logged, 413, "request_too_large", "Request too large", "request", reason
            )
        except Exception:
            if disconnected:
                # Nobody to answer: the client left mid-request (ClientDisconnect, or what
                # FastAPI made of it). Logged once below, as the client's doing, not ours.
                return
            # Rendered here, inside the guard, so the 500 is logged once with its request id
            # and the connection stays usable.
            error_log.exception(
                "unexpected error: request_id=%s method=%s path=%s",
                request_id,
                scope.get("method"),
                loggable_path(scope.get("path", "")),
            )
            if not status_holder["status"]:
                await self._send_error(
                    scope, send_logged, 500, "internal_error", "Internal error", None, None
                )
        finally:
            duration_ms = (time.perf_counter() - started) * 1000
            path = loggable_path(scope.get("path", ""))
            if not disconnected:
                access_log.info(
                    "request_id=%s method=%s path=%s status=%s duration_ms=%.1f",
                    request_id,
                    scope.get("method"),
                    path,
                    status_holder["status"],
                    duration_ms,
                )
            elif BODY_TIMED_OUT in scope.get("state", {}):
                access_log.info(
                    "request body timed out: request_id=%s method=%s path=%s status=408 "
                    "received_bytes=%d duration_ms=%.1f (LEARNDIR_BODY_TIMEOUT_SECONDS=%g)",
                    request_id,
                    scope.get("method"),
                    path,
                    received,
                    duration_ms,
                    scope["state"][BODY_TIMED_OUT],
                )
            else:
                access_log.info(
                    "client disconnected: request_id=%s method=%s path=%s "
                    "received_bytes=%d duration_ms=%.1f",
                    request_id,
                    scope.get("method"),
                    path,
                    received,
                    duration_ms,
                )

    async def _drain(self, receive: Receive, already: int) -> None:
        """Reads and discards the rest of the body, so the client gets the 413 cleanly."""
        total = already
        while total < _DRAIN_LIMIT:
            message = await receive()
            if message["type"] != "http.request":
                return
            total += len(message.get("body", b""))
            if not message.get("more_body"):
                return

    async def _send_error(
        self,
        scope: Scope,
        send: Send,
        status: int,
        error: str,
        message: str,
        parameter: str | None,
        reason: str | None,
    ) -> None:
        """An error answered below the routers, in the format of the interface addressed."""
        headers = []
        if scope.get("path", "").startswith("/soap"):
            if status >= 500:
                response: Response = soap.internal_fault_response()
            else:
                body, media_type = soap.fault_bytes(None, message, parameter, reason)
                response = Response(body, status, media_type=media_type)
        elif scim.is_scim_path(scope.get("path", "")):
            # A SCIM client reads only SCIM errors (RFC 7644 §3.12).
            response = scim.error_response(status, f"{message}: {reason}" if reason else message)
        else:
            response = render(
                Request(scope), error_body(status, error, message, parameter, reason), status
            )
        if status == 413:
            headers.append((b"connection", b"close"))
        body = bytes(response.body)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", (response.media_type or "").encode()),
                    (b"content-length", str(len(body)).encode()),
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class ApiPrefixes:
    """Serves every route under the prefixes real clients put before the vendor's paths:
    `/api/v2` (the vendor's own) and `/index.php/api/v2` (clients built on the account URL),
    each alone or both. The prefix becomes the root path: routing sees the bare path, while
    the request's URL (and the links made from it) keep what the client called."""

    PREFIXES = ("/index.php", "/api/v2")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            root = scope.get("root_path", "")
            rest = path[len(root) :] if root and path.startswith(root) else path
            added = ""
            for prefix in self.PREFIXES:
                if rest.startswith(prefix + "/"):
                    added += prefix
                    rest = rest[len(prefix) :]
            if added:
                scope = {**scope, "root_path": root + added}
        await self.app(scope, receive, send)


def _tune_garbage_collector() -> None:
    """What start-up made (modules, the app, SQLAlchemy's statement caches) lives as long as the
    process: freeze it out of the collector's reach, or every full collection walks it again.
    A page of 1,000 users allocates tens of thousands of containers, which with the default
    threshold of 700 triggers collection after collection; none of them is a cycle. Measured on
    a 200,000-user page-through: about a third of the time went to the collector."""
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    database = Database(settings.database_url, pool_size=settings.threads)
    signin.configure(
        signin.SigninPolicy(
            login_threshold=settings.signin_login_threshold,
            address_threshold=settings.signin_address_threshold,
            first_lock_seconds=settings.signin_lock_seconds,
            max_lock_seconds=settings.signin_max_lock_seconds,
            window_seconds=settings.signin_window_seconds,
        )
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        _tune_garbage_collector()
        # Made now, so that the first sign-in of an unknown user costs no more than the next.
        dummy_hash()
        # One pooled connection per thread: no request waits for a connection, none is opened
        # and closed again under load.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        # Background work (outbox delivery, scheduled changes) in a thread of this process; on
        # SQLite only one of `serve --workers N`'s processes delivers (see delivery/worker.py).
        worker = None
        if settings.worker_enabled:
            worker = Worker.for_settings(database, settings)
            worker.start()
        yield
        if worker is not None:
            worker.stop()
        database.dispose()

    app = FastAPI(
        title="learndir", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.settings = settings
    app.state.db = database

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> Response:
        if console.is_console_path(request):
            return console.domain_error_page(request, exc)
        if scim.is_scim_path(request.url.path):
            return scim.domain_error_response(exc)
        return render_error(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if console.is_console_path(request):
            return console.http_error_page(request, exc.status_code, str(exc.detail))
        if scim.is_scim_path(request.url.path):
            detail = "Not found" if exc.status_code == 404 else str(exc.detail)
            return scim.error_response(
                exc.status_code, f"{detail}: {request.method} {request.url.path}"
            )
        message = "Not found" if exc.status_code == 404 else str(exc.detail)
        return render(
            request,
            error_body(
                exc.status_code, "http_error", message, None, f"{request.method} {request.url.path}"
            ),
            exc.status_code,
        )

    @app.get("/health")
    def health() -> Response:
        try:
            with app.state.db.read() as conn:
                conn.execute(text("SELECT 1"))
                queued = backlog(conn)
                events = webhook_backlog(conn)
        except SQLAlchemyError as exc:
            error_log.warning("health check failed: %s", type(exc).__name__)
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, 503)
        return JSONResponse(
            {
                "status": "ok",
                "database": "reachable",
                # Invitations not yet delivered (pending or being sent), and how long the
                # oldest pending one has waited (null: none).
                "outboxBacklog": queued.messages,
                "outboxOldestPendingSeconds": queued.oldest_pending_seconds,
                # The same for webhook deliveries.
                "webhookBacklog": events.messages,
                "webhookOldestPendingSeconds": events.oldest_pending_seconds,
            }
        )

    # Routes are tried in order, each included router's routes one by one (a router that does
    # not match still costs a few µs per route: 35 µs for SCIM's). SOAP's one path first (a
    # SOAP request would otherwise be matched against every REST route before its own), then
    # addUser's router, then SCIM and the token, whose paths no REST route matches, then the
    # rest of REST, whose fixed paths (/user/v2, /user/list) must come before /user/{userId}.
    app.include_router(soap.router)
    for router in (
        rest.router,
        scim.router,
        rest.token_router,
        users_read.router,
        users_write.router,
        directory.router,
        invitations.router,
        webhooks.router,
        audit.router,
        api_keys.router,
        signin_locks.router,
        exports.router,
        imports.router,
    ):
        app.include_router(router)
    app.include_router(invite.router)
    console.install(app)
    docs.install(app)
    app.add_middleware(ApiPrefixes)
    app.add_middleware(
        RequestGuard,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_import_bytes,
    )
    return app
