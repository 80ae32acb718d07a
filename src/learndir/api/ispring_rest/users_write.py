"""iSpring REST: changing users (profile, status, schedules, password, groups, leave).

Each handler reads its parameters from the body (JSON, XML or form) or from the X- header the
OpenAPI document names, and calls one core function; answers without content have an empty
body (200, or 204 where the document says so)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from learndir.api.ispring_rest.common import call, db_of, empty, text_param
from learndir.api.ispring_rest.routes import add_user_data
from learndir.api.ispring_rest.wire import (
    LIST_KEYS,
    decode_body,
    header_list,
    is_xml_body,
    read_xml,
)
from learndir.api.xml import XmlRejected, element_to_data, local_name
from learndir.core.actor import Actor
from learndir.core.errors import invalid
from learndir.core.users.changes import (
    ACTIVE,
    INACTIVE,
    TERMINATED,
    change_password,
    change_status,
    change_subordination,
    clear_work_leaves,
    delete_user,
    remove_from_groups,
    set_work_leaves,
    update_user,
)
from learndir.core.users.commands import (
    ApiGeneration,
    ChangeSubordination,
    UpdateUser,
    UpdateWorkLeaves,
    parse_command,
)
from learndir.core.users.schedules import ScheduledChange, cancel_change, schedule_change

router = APIRouter()


def _ids(data: dict[str, Any], key: str, request: Request, header: str) -> list[str] | None:
    """An id list from the body (JSON array, XML <key><id>..</id></key>, form key[]) or from
    its X- header (JSON array or comma-separated)."""
    value = data.get(key)
    if value is None and header in request.headers:
        value = header_list(request.headers[header], header)
    if value is None:
        return None
    if value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict) and len(value) == 1:
        inner = next(iter(value.values()))
        value = inner if isinstance(inner, list) else [inner]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid(key, "must be a list of ids")
    return value


# ---- profile and deletion ---------------------------------------------------------------


@router.post("/user/{user_id}")
async def post_update_user(request: Request, user_id: str) -> Response:
    db = db_of(request)

    def work(actor: Actor, data: dict[str, Any]) -> None:
        cmd = parse_command(UpdateUser, add_user_data(data, request))
        update_user(db, actor, user_id, cmd, ApiGeneration.REST)

    await call(request, work)
    return empty()


@router.delete("/user/{user_id}")
async def remove_user(request: Request, user_id: str) -> Response:
    db = db_of(request)
    await call(request, lambda actor, _: delete_user(db, actor, user_id), with_body=False)
    return empty(204)


# ---- status -----------------------------------------------------------------------------


@router.post("/user/{user_id}/status")
async def post_status(request: Request, user_id: str) -> Response:
    db = db_of(request)

    def work(actor: Actor, data: dict[str, Any]) -> None:
        status = data.get("status", request.headers.get("x-status"))
        change_status(db, actor, [user_id], status, ApiGeneration.REST, parameter="userId")

    await call(request, work)
    return empty()


def _bulk_status(status: int) -> Callable[[Request], Any]:
    async def handler(request: Request) -> Response:
        db = db_of(request)

        def work(actor: Actor, data: dict[str, Any]) -> None:
            ids = _ids(data, "userIds", request, "x-user-ids")
            change_status(db, actor, ids, status, ApiGeneration.REST, parameter="userIds")

        await call(request, work)
        return empty()

    return handler


for _path, _status in (("activate", ACTIVE), ("deactivate", INACTIVE), ("terminate", TERMINATED)):
    router.add_api_route(f"/users/{_path}", _bulk_status(_status), methods=["POST"])


# ---- password ---------------------------------------------------------------------------


@router.post("/user/{user_id}/password")
async def post_password(request: Request, user_id: str) -> Response:
    db = db_of(request)

    def work(actor: Actor, data: dict[str, Any]) -> None:
        change_password(db, actor, user_id, text_param(data, "password", request, "x-password"))

    await call(request, work)
    return empty()


# ---- scheduled deactivation and termination ---------------------------------------------


def _schedule_routes(change: ScheduledChange) -> None:
    path = f"/user/{{user_id}}/scheduled_{change.value}"

    async def post(request: Request, user_id: str) -> Response:
        db = db_of(request)

        def work(actor: Actor, data: dict[str, Any]) -> None:
            date = data.get("date")
            if date is not None and not isinstance(date, str):
                raise invalid("date", "must be a date in the form YYYY-MM-DD")
            schedule_change(db, actor, user_id, change, date)

        await call(request, work)
        return empty()

    async def remove(request: Request, user_id: str) -> Response:
        db = db_of(request)
        await call(
            request,
            lambda actor, _: cancel_change(db, actor, user_id, change),
            with_body=False,
        )
        return empty()

    router.add_api_route(path, post, methods=["POST"])
    router.add_api_route(path, remove, methods=["DELETE"])


for _change in ScheduledChange:
    _schedule_routes(_change)


# ---- groups and subordination -----------------------------------------------------------


@router.post("/user/{user_id}/groups/remove")
async def post_remove_groups(request: Request, user_id: str) -> Response:
    db = db_of(request)

    def work(actor: Actor, data: dict[str, Any]) -> None:
        ids = _ids(data, "groupIds", request, "x-group-ids")
        remove_from_groups(db, actor, user_id, ids)

    await call(request, work)
    return empty()


@router.post("/user/{user_id}/subordination")
async def post_subordination(request: Request, user_id: str) -> Response:
    db = db_of(request)

    def work(actor: Actor, data: dict[str, Any]) -> None:
        change_subordination(db, actor, user_id, parse_command(ChangeSubordination, data))

    await call(request, work)
    return empty(204)


# ---- work leave -------------------------------------------------------------------------

_ENTRY_NAMES = frozenset({"workLeaveStatus", "workLeaveStatusData", "item"})


def _entries(value: Any) -> list[Any]:
    """The entries of workLeaveStatuses, however wrapped (a list, repeated elements, one
    entry, or <workLeaveStatus> items)."""
    if value in (None, ""):
        return []
    if isinstance(value, list):
        return [entry for item in value for entry in _entries(item)]
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)) in _ENTRY_NAMES:
            return _entries(next(iter(value.values())))
        return [value]
    raise invalid(
        "workLeaveStatuses", "must be a list of {userId, workLeaveReason, startDate, endDate}"
    )


async def _work_leave_data(request: Request) -> dict[str, Any]:
    """The body; in XML the unwrapped entries repeat <workLeaveStatuses> under <request>."""
    body = await request.body()
    if not is_xml_body(request, body):
        return await decode_body(request)
    entries = []
    for child in read_xml(body):
        name = local_name(child)
        if name != "workLeaveStatuses":
            raise invalid(name, "unknown parameter")
        try:
            entries.append(element_to_data(child, LIST_KEYS))
        except XmlRejected as exc:
            raise invalid("request", str(exc)) from None
    return {"workLeaveStatuses": entries}


@router.post("/users/work-leave-status")
async def post_work_leave(request: Request) -> Response:
    db = db_of(request)

    def work(actor: Actor, data: dict[str, Any]) -> None:
        if "workLeaveStatuses" in data:
            data["workLeaveStatuses"] = _entries(data["workLeaveStatuses"])
        cmd = parse_command(UpdateWorkLeaves, data)
        set_work_leaves(db, actor, cmd.work_leave_statuses)

    await call(request, work, decode=_work_leave_data)
    return empty()


@router.post("/users/work-leave-status/delete")
async def post_work_leave_delete(request: Request) -> Response:
    db = db_of(request)

    def work(actor: Actor, data: dict[str, Any]) -> None:
        clear_work_leaves(db, actor, _ids(data, "userIds", request, "x-user-ids"))

    await call(request, work)
    return empty()
