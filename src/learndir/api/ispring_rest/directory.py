"""iSpring REST: departments and groups."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from learndir.api.ispring_rest import present
from learndir.api.ispring_rest.common import call, created, db_of, return_object, single, text_param
from learndir.api.ispring_rest.wire import render, wants_json
from learndir.core import departments, groups
from learndir.core.actor import Actor
from learndir.core.errors import invalid

router = APIRouter()


@router.get("/department")
async def get_departments(request: Request) -> Response:
    db = db_of(request)
    code = request.query_params.get("code")
    found = await call(
        request, lambda actor, _: departments.list_departments(db, actor, code), with_body=False
    )
    items = [present.department(d) for d in found]
    if wants_json(request):
        return render(request, {"departments": items})
    return render(request, items, items="department")


@router.get("/department/{department_id}")
async def get_department(request: Request, department_id: str) -> Response:
    db = db_of(request)
    found = await call(
        request,
        lambda actor, _: departments.get_department(db, actor, department_id),
        with_body=False,
    )
    return single(request, present.department(found))


@router.post("/department")
async def post_department(request: Request) -> Response:
    db = db_of(request)
    want_object = return_object(request)

    def work(actor: Actor, data: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
        new_id = departments.create_department(
            db,
            actor,
            text_param(data, "name", request, "x-name"),
            text_param(data, "parentDepartmentId", request, "x-parent-department-id"),
            text_param(data, "code", request, "x-code"),
        )
        obj = (
            present.department(departments.get_department(db, actor, new_id))
            if want_object
            else None
        )
        return new_id, obj

    new_id, obj = await call(request, work)
    return created(request, new_id, obj)


@router.get("/group")
async def get_groups(request: Request) -> Response:
    db = db_of(request)
    found = await call(request, lambda actor, _: groups.list_groups(db, actor), with_body=False)
    return render(request, [present.group(g) for g in found], items="group")


@router.post("/group")
async def post_group(request: Request) -> Response:
    db = db_of(request)
    want_object = return_object(request)

    def work(actor: Actor, data: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
        user_ids = data.get("userIds") or []
        if isinstance(user_ids, str):
            user_ids = [user_ids]
        if not isinstance(user_ids, list) or not all(isinstance(u, str) for u in user_ids):
            raise invalid("userIds", "must be a list of user ids")
        name = text_param(data, "name", request, "x-name")
        new_id = groups.create_group(db, actor, name, user_ids)
        obj = {"groupId": new_id, "name": (name or "").strip(), "isSmart": False}
        return new_id, obj if want_object else None

    new_id, obj = await call(request, work)
    return created(request, new_id, obj)
