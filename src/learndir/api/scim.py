"""SCIM 2.0 (RFC 7644) under /scim/v2: the HTTP face of core.scim. It reads the request
(JSON, as application/scim+json or plain), authenticates the SCIM token, runs one core call as
one unit of work and renders the answer or the error in SCIM's own format."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from learndir.api.execution import body_may_carry_password, call_core
from learndir.api.ispring_rest.wire import check_request_line_and_headers, checked_body
from learndir.core.actor import Actor
from learndir.core.errors import DomainError, ErrorCode, invalid
from learndir.core.scim import groups as scim_groups
from learndir.core.scim import users as scim_users
from learndir.core.scim.attributes import ResourceSchema, project
from learndir.core.scim.resources import Page, Query, parse_query
from learndir.core.scim.schemas import (
    ERROR_URN,
    LIST_URN,
    SEARCH_URN,
    UserSchemas,
    group_schema,
    resource_types,
    schema_documents,
    service_provider_config,
)
from learndir.core.scim.search import search_all
from learndir.core.scim_tokens import authenticate_scim
from learndir.db.engine import Database

PREFIX = "/scim/v2"
MEDIA_TYPE = "application/scim+json"
router = APIRouter(prefix=PREFIX)
T = TypeVar("T")

# The one table from domain errors to SCIM (RFC 7644 §3.12): HTTP status and scimType. A seat
# limit reached is 403: the provider's request is valid, the subscription forbids it.
_ERRORS: dict[ErrorCode, tuple[int, str | None]] = {
    ErrorCode.INVALID_PARAMETERS: (400, "invalidValue"),
    ErrorCode.INVALID_VALUE: (400, "invalidValue"),
    ErrorCode.INVALID_FILTER: (400, "invalidFilter"),
    ErrorCode.INVALID_PATH: (400, "invalidPath"),
    ErrorCode.NO_TARGET: (400, "noTarget"),
    ErrorCode.READ_ONLY: (400, "mutability"),
    ErrorCode.LOGIN_TAKEN: (409, "uniqueness"),
    ErrorCode.EMAIL_TAKEN: (409, "uniqueness"),
    ErrorCode.FIELD_VALUE_TAKEN: (409, "uniqueness"),
    ErrorCode.SEAT_LIMIT_EXCEEDED: (403, None),
    ErrorCode.PERMISSION_DENIED: (403, None),
    ErrorCode.UNAUTHENTICATED: (401, None),
    ErrorCode.NOT_FOUND: (404, None),
    ErrorCode.VERSION_MISMATCH: (412, None),
    ErrorCode.TOO_MANY_ATTEMPTS: (429, None),
    ErrorCode.DEPARTMENT_NOT_EMPTY: (409, None),
}
# Parameters whose fault is the request's syntax rather than a value.
_SYNTAX_PARAMETERS = frozenset({"body", "startIndex", "count", "sortOrder", "sortBy"})


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status, headers=headers, media_type=MEDIA_TYPE)


def error_response(status: int, detail: str, scim_type: str | None = None) -> Response:
    body: dict[str, Any] = {"schemas": [ERROR_URN], "status": str(status), "detail": detail}
    if scim_type:
        body["scimType"] = scim_type
    headers = {"WWW-Authenticate": 'Bearer realm="scim"'} if status == 401 else None
    return _json(body, status, headers)


def domain_error_response(error: DomainError) -> Response:
    status, scim_type = _ERRORS.get(error.code, (400, "invalidValue"))
    if scim_type == "invalidValue" and error.parameter in _SYNTAX_PARAMETERS:
        scim_type = "invalidSyntax"
    headers = None
    response = error_response(status, error.describe(), scim_type)
    if error.retry_after:
        headers = {"Retry-After": str(error.retry_after)}
        response.headers.update(headers)
    return response


def is_scim_path(path: str) -> bool:
    return PREFIX in path


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + PREFIX


def _bearer(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "").strip()
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


@dataclass(frozen=True)
class _Call:
    """What a SCIM request's unit of work gets: the database, who acts (and whether their
    token invites the users it creates), the decoded body and the hash of a password it sets."""

    db: Database
    actor: Actor
    invite: bool
    body: Any
    password_hash: str | None


async def _run(
    request: Request,
    work: Callable[[_Call], T],
    *,
    writes: bool = False,
    with_body: bool = False,
) -> T | Response:
    """Checks the request's text, decodes its JSON body, authenticates the token and runs
    `work` as one unit of work; a domain error becomes a SCIM
    Error."""
    try:
        check_request_line_and_headers(request)
        body: Any = None
        raw = b""
        if with_body:
            raw = await request.body()
            try:
                body = orjson.loads(raw) if raw.strip() else None
            except orjson.JSONDecodeError as exc:
                raise invalid("body", f"is not valid JSON: {exc}") from None
            if not isinstance(body, dict):
                raise invalid("body", "must be a JSON object")
            checked_body(body)
        db: Database = request.app.state.db
        token = _bearer(request)
        may_hash = writes and body_may_carry_password(raw)

        def unit() -> T:
            caller = authenticate_scim(db, token)
            password_hash = (
                scim_users.hash_requested_password(caller.actor, body) if may_hash else None
            )
            return work(_Call(db, caller.actor, caller.invite, body, password_hash))

        return await call_core(
            db, lambda: db.run(unit, writes=writes, hashes=may_hash), may_hash=may_hash
        )
    except DomainError as exc:
        return domain_error_response(exc)


def _resource(
    request: Request, doc: dict[str, Any], schema: ResourceSchema | None, status: int = 200
) -> Response:
    version = doc["meta"]["version"]
    if request.method == "GET" and _none_match(request.headers.get("if-none-match"), version):
        return Response(status_code=304, headers={"ETag": version})
    headers = {"ETag": version}
    if status == 201:
        headers["Location"] = doc["meta"]["location"]
    query = _query_of(request)
    if schema is not None and (query.attributes or query.excluded):
        doc = project(doc, schema, query.attributes or None, query.excluded or None)
    return _json(doc, status, headers)


def _none_match(header: str | None, version: str) -> bool:
    """If-None-Match compares weakly (RFC 7232 §3.2): `"x"` matches `W/"x"`, `*` any."""
    tags = {t.strip().removeprefix("W/") for t in (header or "").split(",") if t.strip()}
    return "*" in tags or version.removeprefix("W/") in tags


def _query_of(request: Request) -> Query:
    return parse_query(dict(request.query_params))


def _list(page: Page) -> Response:
    return _json(
        {
            "schemas": [LIST_URN],
            "totalResults": page.total,
            "startIndex": page.start_index,
            "itemsPerPage": len(page.resources),
            "Resources": page.resources,
        }
    )


# ---- discovery --------------------------------------------------------------------------------


@router.get("/ServiceProviderConfig")
async def get_service_provider_config(request: Request) -> Response:
    return _json(service_provider_config(_base_url(request)))


Describe = Callable[[UserSchemas, str], list[dict[str, Any]]]


async def _described(request: Request, describe: Describe, wanted: str | None) -> Response:
    """The account's resource types or schemas (its custom profile fields are an extension
    of its own): all of them as a list, or the one whose id is `wanted`."""
    found = await _run(request, lambda c: scim_users.user_schemas_of(c.db, c.actor))
    if isinstance(found, Response):
        return found
    listed = describe(found, _base_url(request))
    if wanted is None:
        return _list(Page(listed, len(listed), 1))
    for item in listed:
        if item["id"].casefold() == wanted.casefold():
            return _json(item)
    return error_response(404, f"Unknown {listed[0]['meta']['resourceType']} {wanted!r}")


@router.get("/ResourceTypes")
async def get_resource_types(request: Request) -> Response:
    return await _described(request, resource_types, None)


@router.get("/ResourceTypes/{name}")
async def get_resource_type(request: Request, name: str) -> Response:
    return await _described(request, resource_types, name)


@router.get("/Schemas")
async def get_schemas(request: Request) -> Response:
    return await _described(request, schema_documents, None)


@router.get("/Schemas/{urn}")
async def get_schema(request: Request, urn: str) -> Response:
    return await _described(request, schema_documents, urn)


# ---- users ----------------------------------------------------------------------------------


UserWork = Callable[[_Call], dict[str, Any]]


def _with_schema(
    request: Request, work: UserWork
) -> Callable[[_Call], tuple[dict[str, Any], ResourceSchema | None]]:
    """`work`, then, when the answer is to be cut to some attributes, the account's User schema
    (its custom fields are an extension of its own), in the same unit of work."""

    def run(c: _Call) -> tuple[dict[str, Any], ResourceSchema | None]:
        query = _query_of(request)
        doc = work(c)
        if not (query.attributes or query.excluded):
            return doc, None
        return doc, scim_users.user_schemas_of(c.db, c.actor).tree

    return run


def _user_answer(request: Request, result: Any, status: int = 200) -> Response:
    if isinstance(result, Response):
        return result
    doc, schema = result
    return _resource(request, doc, schema, status)


Lister = Callable[[Database, Actor, Query, str], Page]


async def _listing(request: Request, lister: Lister, *, search: bool = False) -> Response:
    """A list: GET with the query string, or POST /.search with a SearchRequest body."""
    base = _base_url(request)
    result = await _run(
        request,
        lambda c: lister(c.db, c.actor, _search(c.body) if search else _query_of(request), base),
        with_body=search,
    )
    return result if isinstance(result, Response) else _list(result)


@router.get("/Users")
async def list_users(request: Request) -> Response:
    return await _listing(request, scim_users.list_users)


@router.post("/Users/.search")
async def search_users(request: Request) -> Response:
    return await _listing(request, scim_users.list_users, search=True)


def _search(body: Any) -> Query:
    schemas = body.get("schemas") if isinstance(body, dict) else None
    if isinstance(schemas, list) and schemas and SEARCH_URN not in schemas:
        raise invalid("body", f"a search request's schemas must be [{SEARCH_URN!r}]")
    return parse_query({k: v for k, v in body.items() if k != "schemas"})


@router.post("/Users")
async def create_user(request: Request) -> Response:
    base = _base_url(request)
    result = await _run(
        request,
        _with_schema(
            request,
            lambda c: scim_users.create_user(
                c.db, c.actor, c.body, base, c.password_hash, invite=c.invite
            ),
        ),
        writes=True,
        with_body=True,
    )
    return _user_answer(request, result, 201)


@router.get("/Users/{user_id}")
async def get_user(request: Request, user_id: str) -> Response:
    base = _base_url(request)
    result = await _run(
        request,
        _with_schema(request, lambda c: scim_users.get_user(c.db, c.actor, user_id, base)),
    )
    return _user_answer(request, result)


@router.api_route("/Users/{user_id}", methods=["PUT", "PATCH"])
async def change_user(request: Request, user_id: str) -> Response:
    base = _base_url(request)
    if_match = request.headers.get("if-match")
    patch = request.method == "PATCH"
    result = await _run(
        request,
        _with_schema(
            request,
            lambda c: scim_users.change_user(
                c.db, c.actor, user_id, c.body, base, c.password_hash, if_match, patch=patch
            ),
        ),
        writes=True,
        with_body=True,
    )
    return _user_answer(request, result)


@router.delete("/Users/{user_id}")
async def delete_user(request: Request, user_id: str) -> Response:
    base = _base_url(request)
    if_match = request.headers.get("if-match")
    result = await _run(
        request,
        lambda c: scim_users.remove_user(c.db, c.actor, user_id, base, if_match),
        writes=True,
    )
    return result if isinstance(result, Response) else Response(status_code=204)


# ---- groups ---------------------------------------------------------------------------------


def _group_answer(request: Request, result: Any, status: int = 200) -> Response:
    if isinstance(result, Response):
        return result
    return _resource(request, result, group_schema(), status)


@router.get("/Groups")
async def list_groups(request: Request) -> Response:
    return await _listing(request, scim_groups.list_groups)


@router.post("/Groups/.search")
async def search_groups(request: Request) -> Response:
    return await _listing(request, scim_groups.list_groups, search=True)


@router.post("/Groups")
async def create_group(request: Request) -> Response:
    base = _base_url(request)
    result = await _run(
        request,
        lambda c: scim_groups.create_group(c.db, c.actor, c.body, base),
        writes=True,
        with_body=True,
    )
    return _group_answer(request, result, 201)


@router.get("/Groups/{group_id}")
async def get_group(request: Request, group_id: str) -> Response:
    base = _base_url(request)
    result = await _run(request, lambda c: scim_groups.get_group(c.db, c.actor, group_id, base))
    return _group_answer(request, result)


@router.api_route("/Groups/{group_id}", methods=["PUT", "PATCH"])
async def change_group(request: Request, group_id: str) -> Response:
    base = _base_url(request)
    if_match = request.headers.get("if-match")
    patch = request.method == "PATCH"
    result = await _run(
        request,
        lambda c: scim_groups.change_group(
            c.db, c.actor, group_id, c.body, base, if_match, patch=patch
        ),
        writes=True,
        with_body=True,
    )
    return _group_answer(request, result)


@router.delete("/Groups/{group_id}")
async def delete_group(request: Request, group_id: str) -> Response:
    base = _base_url(request)
    if_match = request.headers.get("if-match")
    result = await _run(
        request,
        lambda c: scim_groups.remove_group(c.db, c.actor, group_id, base, if_match),
        writes=True,
    )
    return result if isinstance(result, Response) else Response(status_code=204)


# ---- what this server does not do -----------------------------------------------------------


@router.post("/.search")
async def search_everything(request: Request) -> Response:
    return await _listing(request, search_all, search=True)


@router.post("/Bulk")
async def not_implemented(request: Request) -> Response:
    """Bulk requests are not offered (the service provider configuration says so)."""
    return error_response(501, f"{request.url.path.rsplit('/', 1)[-1]} is not supported")


@router.api_route("/Me", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
async def me(_request: Request) -> Response:
    return error_response(501, "/Me is not supported: a SCIM token acts for a provider")
