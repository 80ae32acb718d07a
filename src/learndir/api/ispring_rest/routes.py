"""iSpring REST endpoints of the addUser slice, served at the root and under /api/v2.

Each handler decodes its wire format, authenticates the caller into an Actor and calls one core
service in the thread pool (the core is synchronous); errors are rendered by the app's handler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import Response

from learndir.api.execution import body_may_carry_password, call_core
from learndir.api.ispring_rest import present
from learndir.api.ispring_rest.wire import (
    decode_body,
    header_list,
    header_object,
    render,
    wants_json,
)
from learndir.core import departments, groups, profile_fields, roles
from learndir.core.actor import Actor
from learndir.core.auth import authenticate_credentials, authenticate_token, issue_token
from learndir.core.errors import DomainError, ErrorCode, invalid
from learndir.core.users.commands import AddUser, ApiGeneration, parse_command
from learndir.core.users.queries import get_user
from learndir.core.users.service import add_user
from learndir.db.engine import Database

router = APIRouter()
token_router = APIRouter()
T = TypeVar("T")


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def authenticate(db: Database, request: Request) -> Actor:
    """Bearer token (with or without the `Bearer ` prefix) or the X-Auth-* headers."""
    headers = request.headers
    authorization = headers.get("authorization", "").strip()
    if authorization:
        if authorization.lower().startswith("bearer "):
            authorization = authorization[7:].strip()
        return authenticate_token(db, authorization)
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


async def _call(
    request: Request, work: Callable[[Actor, dict[str, Any]], T], *, with_body: bool = True
) -> T:
    """Decodes the body, then authenticates and runs `work` in the thread pool. A body that
    cannot be decoded is reported only once the caller has been authenticated."""
    data: dict[str, Any] = {}
    body_error: DomainError | None = None
    if with_body:
        try:
            data = await decode_body(request)
        except DomainError as exc:
            body_error = exc
    db = _db(request)

    def run() -> T:
        actor = authenticate(db, request)
        if body_error is not None:
            raise body_error
        return work(actor, data)

    may_hash = (
        "x-auth-password" in request.headers
        or "x-password" in request.headers
        or (with_body and body_may_carry_password(await request.body()))
    )
    return await call_core(request, run, may_hash=may_hash)


def _return_object(request: Request) -> bool:
    return request.headers.get("x-return-object", "").strip().lower() in ("true", "1", "yes")


def _created(
    request: Request,
    new_id: str,
    obj: dict[str, Any] | None = None,
    item_names: dict[str, str] | None = None,
) -> Response:
    if obj is not None:
        return render(request, obj, 201, item_names=item_names)
    return render(request, new_id, 201)


# ---- token ------------------------------------------------------------------------------


@token_router.post("/api/v3/token")
async def token(request: Request) -> Response:
    data = await decode_body(request)
    db = _db(request)
    lifetime = request.app.state.settings.token_lifetime_seconds

    def run() -> dict[str, Any]:
        def text(name: str) -> str | None:
            value = data.get(name)
            return value if isinstance(value, str) else None

        issued = issue_token(
            db, text("client_id"), text("client_secret"), text("grant_type"), lifetime
        )
        return {
            "access_token": issued.access_token,
            "expires_in": issued.expires_in,
            "token_type": "bearer",
        }

    body = await call_core(request, run, may_hash=False)
    accept = request.headers.get("accept", "").lower()
    if "xml" in accept and not wants_json(request):
        return render(request, body)
    return Response(content=_json(body), media_type="application/json")


def _json(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))


# ---- users ------------------------------------------------------------------------------

_HEADER_SCALARS = {
    "x-department-id": "departmentId",
    "x-password": "password",
    "x-role": "role",
    "x-role-id": "roleId",
    "x-send-login-email": "sendLoginEmail",
    "x-invitation-message": "invitationMessage",
    "x-send-login-sms": "sendLoginSMS",
    "x-invitation-sms-message": "invitationSMSMessage",
}
_HEADER_LISTS = {
    "x-manageable-department-ids": "manageableDepartmentIds",
    "x-group-ids": "groupIds",
    "x-roles": "roles",
}


def _scalar_text(name: str, value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if value is not None and not isinstance(value, str):
        raise invalid(f"fields.{name}", "must be a text value")
    return value


def _fields(value: Any) -> dict[str, Any]:
    """`fields` as a name -> value map, from any of the forms clients send."""
    if value in (None, ""):
        return {}
    if isinstance(value, dict) and set(value) == {"field"}:
        value = value["field"]
        value = value if isinstance(value, list) else [value]
    if isinstance(value, list):
        result: dict[str, Any] = {}
        for item in value:
            if not isinstance(item, dict) or "name" not in item:
                raise invalid("fields", "each field needs a name and a value")
            result[str(item["name"])] = _scalar_text(str(item["name"]), item.get("value"))
        return result
    if isinstance(value, dict):
        return {k: _scalar_text(k, v) for k, v in value.items()}
    raise invalid("fields", "must be a set of name/value pairs")


def _roles(value: Any) -> list[dict[str, Any]] | None:
    if value in (None, ""):
        return None
    if isinstance(value, dict) and len(value) == 1:
        value = next(iter(value.values()))
        value = value if isinstance(value, list) else [value]
    if not isinstance(value, list):
        raise invalid("roles", "must be a list of roles")
    result = []
    for item in value:
        if isinstance(item, str):
            result.append({"roleId": item})
        elif isinstance(item, dict):
            result.append(item)
        else:
            raise invalid("roles", "each role is a roleId or {roleId, manageableDepartmentIds}")
    return result


def add_user_data(data: dict[str, Any], request: Request) -> dict[str, Any]:
    """The NewUser body (OpenAPI) or the seed's names, plus X- headers, as AddUser data."""
    merged: dict[str, Any] = {}
    headers = request.headers
    for header, key in _HEADER_SCALARS.items():
        if header in headers:
            merged[key] = headers[header]
    for header, key in _HEADER_LISTS.items():
        if header in headers:
            merged[key] = header_list(headers[header])
    if "x-fields" in headers:
        merged["fields"] = header_object(headers["x-fields"])
    merged.update(data)
    merged["fields"] = _fields(merged.get("fields"))
    if "groupIds" in merged:
        group_ids = merged.pop("groupIds")
        if merged.get("groups") not in (None, "", []) and group_ids not in (None, "", []):
            raise invalid("groupIds", "give groupIds or groups, not both")
        merged["groups"] = group_ids if group_ids not in (None, "") else merged.get("groups")
    for key in ("groups", "manageableDepartmentIds"):
        if merged.get(key) == "":
            merged[key] = []
        elif isinstance(merged.get(key), str):
            merged[key] = [merged[key]]
    roles_value = _roles(merged.get("roles"))
    if roles_value is None:
        merged.pop("roles", None)
    else:
        merged["roles"] = roles_value
    return merged


@router.post("/user")
async def post_user(request: Request) -> Response:
    db = _db(request)
    want_object = _return_object(request)

    def work(actor: Actor, data: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
        cmd = parse_command(AddUser, add_user_data(data, request))
        user_id = add_user(db, actor, cmd, ApiGeneration.TOKEN)
        return user_id, present.user(get_user(db, actor, user_id)) if want_object else None

    user_id, obj = await _call(request, work)
    return _created(request, user_id, obj, present.ITEM_NAMES)


@router.get("/user/profile/fields")
async def get_profile_fields(request: Request) -> Response:
    db = _db(request)
    found = await _call(
        request, lambda actor, _: profile_fields.list_fields(db, actor), with_body=False
    )
    return render(request, [present.profile_field(f) for f in found], items="userFieldInfo")


@router.get("/user/{user_id}")
async def get_user_profile(request: Request, user_id: str) -> Response:
    db = _db(request)
    found = await _call(request, lambda actor, _: get_user(db, actor, user_id), with_body=False)
    return _single(request, present.user(found))


def _single(request: Request, obj: dict[str, Any]) -> Response:
    """GET of one object: `{"response": {...}}` in JSON, the object's fields under <response>."""
    if wants_json(request):
        return render(request, {"response": obj})
    return render(request, obj, item_names=present.ITEM_NAMES)


# ---- roles, departments, groups ---------------------------------------------------------


@router.get("/role")
async def get_roles(request: Request) -> Response:
    db = _db(request)
    found = await _call(request, lambda actor, _: roles.list_roles(db, actor), with_body=False)
    return render(request, [present.role(r) for r in found], items="role")


@router.get("/department")
async def get_departments(request: Request) -> Response:
    db = _db(request)
    code = request.query_params.get("code")
    found = await _call(
        request, lambda actor, _: departments.list_departments(db, actor, code), with_body=False
    )
    items = [present.department(d) for d in found]
    if wants_json(request):
        return render(request, {"departments": items})
    return render(request, items, items="department")


@router.get("/department/{department_id}")
async def get_department(request: Request, department_id: str) -> Response:
    db = _db(request)
    found = await _call(
        request,
        lambda actor, _: departments.get_department(db, actor, department_id),
        with_body=False,
    )
    return _single(request, present.department(found))


def _text(data: dict[str, Any], key: str, request: Request, header: str) -> str | None:
    value = data.get(key, request.headers.get(header))
    if value is not None and not isinstance(value, str):
        raise invalid(key, "must be a text value")
    return value


@router.post("/department")
async def post_department(request: Request) -> Response:
    db = _db(request)
    want_object = _return_object(request)

    def work(actor: Actor, data: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
        new_id = departments.create_department(
            db,
            actor,
            _text(data, "name", request, "x-name"),
            _text(data, "parentDepartmentId", request, "x-parent-department-id"),
            _text(data, "code", request, "x-code"),
        )
        obj = (
            present.department(departments.get_department(db, actor, new_id))
            if want_object
            else None
        )
        return new_id, obj

    new_id, obj = await _call(request, work)
    return _created(request, new_id, obj)


@router.get("/group")
async def get_groups(request: Request) -> Response:
    db = _db(request)
    found = await _call(request, lambda actor, _: groups.list_groups(db, actor), with_body=False)
    return render(request, [present.group(g) for g in found], items="group")


@router.post("/group")
async def post_group(request: Request) -> Response:
    db = _db(request)
    want_object = _return_object(request)

    def work(actor: Actor, data: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
        user_ids = data.get("userIds") or []
        if isinstance(user_ids, str):
            user_ids = [user_ids]
        if not isinstance(user_ids, list) or not all(isinstance(u, str) for u in user_ids):
            raise invalid("userIds", "must be a list of user ids")
        name = _text(data, "name", request, "x-name")
        new_id = groups.create_group(db, actor, name, user_ids)
        obj = {"groupId": new_id, "name": (name or "").strip(), "isSmart": False}
        return new_id, obj if want_object else None

    new_id, obj = await _call(request, work)
    return _created(request, new_id, obj)
