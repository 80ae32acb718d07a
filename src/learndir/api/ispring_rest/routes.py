"""iSpring REST endpoints of the addUser slice, served at the root and under /api/v2.

Each handler decodes its wire format, authenticates the caller into an Actor and calls one core
service in the thread pool (the core is synchronous); errors are rendered by the app's handler.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from learndir.api.execution import call_core
from learndir.api.ispring_rest import present
from learndir.api.ispring_rest.common import call, created, db_of, return_object
from learndir.api.ispring_rest.users_read import profile_response
from learndir.api.ispring_rest.wire import (
    check_request_line_and_headers,
    checked_body,
    decode_body,
    header_list,
    header_object,
    render,
    to_json,
    wants_json,
)
from learndir.core import profile_fields, roles
from learndir.core.actor import Actor
from learndir.core.auth import issue_token
from learndir.core.errors import invalid
from learndir.core.users.commands import AddUser, ApiGeneration, parse_command
from learndir.core.users.queries import get_user
from learndir.core.users.service import add_user

router = APIRouter()
token_router = APIRouter()
# ---- token ------------------------------------------------------------------------------


@token_router.post("/api/v3/token")
async def token(request: Request) -> Response:
    check_request_line_and_headers(request)
    data = checked_body(await decode_body(request))
    db = db_of(request)
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

    # A sign-in: on SQLite it takes no request-wide write transaction, so that a failure is
    # counted in a transaction of its own (see core.signin) that commits although it is refused.
    body = await call_core(db, lambda: db.run(run, writes=True, hashes=True), may_hash=False)
    accept = request.headers.get("accept", "").lower()
    if "xml" in accept and not wants_json(request):
        return render(request, body)
    return Response(content=to_json(body), media_type="application/json")


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
            merged[key] = header_list(headers[header], header)
    if "x-fields" in headers:
        merged["fields"] = header_object(headers["x-fields"], "x-fields")
    merged.update(data)
    # The user to change is the one the path names; clients syncing from another system send
    # their own id for the user as `userId` (an HR system's number), which is not ours.
    merged.pop("userId", None)
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
    db = db_of(request)
    want_object = return_object(request)

    def work(actor: Actor, data: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
        cmd = parse_command(AddUser, add_user_data(data, request))
        user_id = add_user(db, actor, cmd, ApiGeneration.REST)
        return user_id, present.user(get_user(db, actor, user_id)) if want_object else None

    def named_department(data: dict[str, Any]) -> list[Any]:
        return [data.get("departmentId", request.headers.get("x-department-id"))]

    user_id, obj = await call(request, work, departments=named_department)
    if obj is not None:
        return profile_response(request, obj, 201)
    return created(request, user_id)


@router.get("/user/profile/fields")
async def get_profile_fields(request: Request) -> Response:
    db = db_of(request)
    found = await call(
        request, lambda actor, _: profile_fields.list_fields(db, actor), with_body=False
    )
    return render(
        request,
        [present.profile_field(f) for f in found],
        items="userFieldInfo",
        item_names=present.ITEM_NAMES,
    )


# ---- roles ---------------------------------------------------------


@router.get("/role")
async def get_roles(request: Request) -> Response:
    db = db_of(request)
    found = await call(request, lambda actor, _: roles.list_roles(db, actor), with_body=False)
    return render(request, [present.role(r) for r in found], items="role")
