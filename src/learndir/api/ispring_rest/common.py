"""What every iSpring REST handler shares: the caller's identity, running the core, and the
shapes of created and single-object answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import Response

from learndir.api.execution import body_may_carry_password, call_core
from learndir.api.ispring_rest import present
from learndir.api.ispring_rest.wire import (
    check_request_line_and_headers,
    checked_body,
    decode_body,
    render,
)
from learndir.core.actor import Actor
from learndir.core.auth import authenticate_credentials, authenticate_token
from learndir.core.errors import DomainError, ErrorCode, invalid
from learndir.db.engine import Database

T = TypeVar("T")


def db_of(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def authenticate(db: Database, request: Request, departments: Sequence[Any] = ()) -> Actor:
    """Bearer token (with or without the `Bearer ` prefix) or the X-Auth-* headers.
    `departments`: ids the request's work will look up, read with the token where that saves
    a round trip (see core.auth.authenticate_token)."""
    headers = request.headers
    authorization = headers.get("authorization", "").strip()
    if authorization:
        if authorization.lower().startswith("bearer "):
            authorization = authorization[7:].strip()
        return authenticate_token(db, authorization, departments=departments)
    url = headers.get("x-auth-account-url")
    login = headers.get("x-auth-email")
    password = headers.get("x-auth-password")
    if url or login or password:
        return authenticate_credentials(db, url, login, password)
    raise DomainError(
        ErrorCode.UNAUTHENTICATED,
        "send Authorization: Bearer <token>, or the X-Auth-Account-Url, "
        "X-Auth-Email and X-Auth-Password headers",
    )


async def call(
    request: Request,
    work: Callable[[Actor, dict[str, Any]], T],
    *,
    with_body: bool = True,
    decode: Callable[[Request], Awaitable[dict[str, Any]]] = decode_body,
    reads_only: bool = False,
    departments: Callable[[dict[str, Any]], Sequence[Any]] | None = None,
) -> T:
    """Decodes the body (with `decode`, for operations whose XML needs more than the generic
    reading), then authenticates and runs `work` as one unit of work (see Database.run). Every
    text of the request is checked by the input rule here, whichever decoder ran: the path,
    query and headers before anything reads them, the body with its decoding. A body that
    cannot be decoded is reported only once the caller has been authenticated.
    A GET, or a POST that only reads (`reads_only`), takes no write transaction.
    `departments`: the department ids `work` will look up, from the decoded body (see
    authenticate); it must not raise."""
    check_request_line_and_headers(request)
    data: dict[str, Any] = {}
    body_error: DomainError | None = None
    if with_body:
        try:
            data = checked_body(await decode(request))
        except DomainError as exc:
            body_error = exc
    db = db_of(request)

    def run() -> T:
        named = departments(data) if departments is not None and body_error is None else ()
        actor = authenticate(db, request, named)
        if body_error is not None:
            raise body_error
        return work(actor, data)

    writes = request.method != "GET" and not reads_only
    may_hash = (
        "x-auth-password" in request.headers
        or "x-password" in request.headers
        or (with_body and body_may_carry_password(await request.body()))
    )
    return await call_core(
        db, lambda: db.run(run, writes=writes, hashes=may_hash), may_hash=may_hash
    )


def return_object(request: Request) -> bool:
    return request.headers.get("x-return-object", "").strip().lower() in ("true", "1", "yes")


def created(request: Request, new_id: str, obj: dict[str, Any] | None = None) -> Response:
    """201 with the new id (`<response>id</response>`, a JSON string), or with the object."""
    if obj is not None:
        return single(request, obj, 201)
    return render(request, new_id, 201)


def single(request: Request, obj: dict[str, Any], status: int = 200) -> Response:
    """One object: its fields directly under <response>, the bare object in JSON (the OpenAPI
    wraps it in `response`, but the published clients read the object itself)."""
    return render(request, obj, status, item_names=present.ITEM_NAMES)


def empty(status: int = 200) -> Response:
    """An answer without a body, for calls whose OpenAPI response has no content."""
    return Response(status_code=status)


def text_param(
    data: dict[str, Any], key: str, request: Request, header: str | None = None
) -> str | None:
    """A text parameter from the body, else from its X- header when it has one."""
    value = data.get(key, request.headers.get(header) if header else None)
    if value is not None and not isinstance(value, str):
        raise invalid(key, "must be a text value")
    return value
