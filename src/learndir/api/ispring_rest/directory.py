"""iSpring REST: departments and groups."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from lxml import etree

from learndir.api.ispring_rest import present
from learndir.api.ispring_rest.common import (
    call,
    created,
    db_of,
    empty,
    return_object,
    single,
    text_param,
)
from learndir.api.ispring_rest.wire import (
    decode_body,
    is_xml_body,
    read_xml,
    render,
    xml_parameters,
)
from learndir.api.xml import local_name
from learndir.core import departments, groups
from learndir.core.actor import Actor
from learndir.core.common import whole_number
from learndir.core.errors import invalid
from learndir.db.engine import Database

router = APIRouter()

# XML names of list items: Department and Group schemas are <department> and <group>; the
# AND/OR nodes of smart group rules have no name in the OpenAPI, so they are <item>.
_DEPARTMENT_ITEMS = {"departments": "department"}
_GROUP_ITEMS = {"groups": "group"}
_RULE_ITEMS = {"and": "item", "or": "item"}


def _ids(data: dict[str, Any], name: str, *, required: bool = True) -> list[str]:
    """An ArrayOfIds parameter: a list of strings, or one string."""
    value = data.get(name)
    if value is None:
        if required:
            raise invalid(name, "is required")
        return []
    if isinstance(value, str):
        value = [value] if value.strip() else []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid(name, "must be a list of ids")
    return value


def page_size_param(request: Request) -> int | None:
    raw_size = request.query_params.get("pageSize")
    size: int | None = None
    if raw_size is not None and raw_size.strip():
        size = whole_number(raw_size)
        if size is None:
            raise invalid("pageSize", "must be a whole number")
    return size


def _page_params(request: Request) -> tuple[int | None, str | None]:
    return page_size_param(request), request.query_params.get("pageToken") or None


PageFetch = Callable[[Actor, int | None, str | None], tuple[list[Any], str | None]]


async def _paged(
    request: Request, key: str, fetch: PageFetch, item_names: dict[str, str]
) -> Response:
    """A keyset-paged list: `{key: [...], nextPageToken}` (the token only when more follow)."""
    items, next_token = await call(
        request, lambda actor, _: fetch(actor, *_page_params(request)), with_body=False
    )
    body: dict[str, Any] = {key: items}
    if next_token:
        body["nextPageToken"] = next_token
    return render(request, body, item_names=item_names)


# ---- departments ----------------------------------------------------------------------------


@router.get("/department")
async def get_departments(request: Request) -> Response:
    db = db_of(request)
    code = request.query_params.get("code")
    found = await call(
        request, lambda actor, _: departments.list_departments(db, actor, code), with_body=False
    )
    # A bare list, in JSON too (the OpenAPI wraps it in `departments`, but the published
    # clients read the list itself, as GET /group answers).
    return render(request, [present.department(d) for d in found], items="department")


@router.get("/departments")
async def list_departments(request: Request) -> Response:
    db = db_of(request)

    def fetch(actor: Actor, size: int | None, token: str | None) -> tuple[list[Any], str | None]:
        page = departments.page_departments(db, actor, size, token)
        return [present.department(d) for d in page.departments], page.next_page_token

    return await _paged(request, "departments", fetch, _DEPARTMENT_ITEMS)


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
            data.get("subordination"),
            data.get("coSubordination"),
        )
        obj = (
            present.department(departments.get_department(db, actor, new_id))
            if want_object
            else None
        )
        return new_id, obj

    new_id, obj = await call(request, work)
    return created(request, new_id, obj)


@router.post("/department/{department_id}")
async def update_department(request: Request, department_id: str) -> Response:
    db = db_of(request)

    def work(actor: Actor, data: dict[str, Any]) -> None:
        departments.update_department(
            db,
            actor,
            department_id,
            name=text_param(data, "name", request),
            parent_id=text_param(data, "parentDepartmentId", request),
            code=text_param(data, "code", request),
            subordination=data.get("subordination"),
            co_subordination=data.get("coSubordination"),
        )

    await call(request, work)
    return empty(204)


@router.delete("/department/{department_id}")
async def delete_department(request: Request, department_id: str) -> Response:
    db = db_of(request)
    await call(
        request,
        lambda actor, _: departments.delete_department(db, actor, department_id),
        with_body=False,
    )
    return empty(204)


@router.post("/department/{department_id}/subordination")
async def department_subordination(request: Request, department_id: str) -> Response:
    db = db_of(request)

    def work(actor: Actor, data: dict[str, Any]) -> None:
        departments.set_subordination(
            db, actor, department_id, data.get("subordination"), data.get("coSubordination")
        )

    await call(request, work)
    return empty(204)


@router.post("/department/{department_id}/user/move")
async def move_users(request: Request, department_id: str) -> Response:
    db = db_of(request)
    await call(
        request,
        lambda actor, data: departments.move_users(db, actor, department_id, _ids(data, "userIds")),
    )
    return empty(204)


@router.post("/department/{parent_id}/department/move")
async def move_departments(request: Request, parent_id: str) -> Response:
    db = db_of(request)

    def work(actor: Actor, data: dict[str, Any]) -> None:
        # The OpenAPI requires "departmnetIds" (sic) but defines only departmentIds: take both.
        typo = "departmnetIds" in data and "departmentIds" not in data
        ids = _ids(data, "departmnetIds" if typo else "departmentIds")
        departments.move_departments(db, actor, parent_id, ids)

    await call(request, work)
    return empty(204)


# ---- groups ---------------------------------------------------------------------------------


@router.get("/group")
async def get_groups(request: Request) -> Response:
    db = db_of(request)
    found = await call(request, lambda actor, _: groups.list_groups(db, actor), with_body=False)
    return render(request, [present.group(g) for g in found], items="group")


@router.get("/groups")
async def list_groups(request: Request) -> Response:
    db = db_of(request)

    def fetch(actor: Actor, size: int | None, token: str | None) -> tuple[list[Any], str | None]:
        page = groups.page_groups(db, actor, size, token)
        return [present.group(g) for g in page.groups], page.next_page_token

    return await _paged(request, "groups", fetch, _GROUP_ITEMS)


def _stored_group(db: Database, actor: Actor, group_id: str) -> dict[str, Any]:
    """A created group as stored (X-Return-Object), read back like any other group."""
    found = groups.get_group(db, actor, group_id)
    return present.group(groups.Group(found.id, found.name, is_smart=found.is_smart))


@router.post("/group")
async def post_group(request: Request) -> Response:
    db = db_of(request)
    want_object = return_object(request)

    def work(actor: Actor, data: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
        name = text_param(data, "name", request, "x-name")
        new_id = groups.create_group(db, actor, name, _ids(data, "userIds", required=False))
        obj = _stored_group(db, actor, new_id) if want_object else None
        return new_id, obj

    new_id, obj = await call(request, work)
    return created(request, new_id, obj)


def _rule_nodes(parent: etree._Element, name: str) -> list[etree._Element]:
    """The <and> (or <or>) nodes under `parent`: repeated elements, as the OpenAPI writes
    unwrapped arrays, or the <item>s of a single wrapping element, as this service writes."""
    found = [c for c in parent if local_name(c) == name]
    if len(found) == 1 and all(local_name(c) == "item" for c in found[0]):
        return list(found[0])  # also an empty <and/>: an empty list
    return found


async def _smart_group_data(request: Request) -> dict[str, Any]:
    """The body; in XML the rules are read from the tree, because the generic reading cannot
    tell one AND node holding two OR nodes from two AND nodes."""
    body = await request.body()
    if not is_xml_body(request, body):
        return await decode_body(request)
    root = read_xml(body)
    data = xml_parameters(root)
    holder = next((c for c in root if local_name(c) == "rules"), None)
    if holder is not None:
        data["rules"] = {
            "and": [
                {"or": [_rule(or_node) for or_node in _rule_nodes(and_node, "or")]}
                for and_node in _rule_nodes(holder, "and")
            ]
        }
    return data


def _rule(or_node: etree._Element) -> dict[str, Any]:
    rule = next((c for c in or_node if local_name(c) == "rule"), None)
    return {"rule": {local_name(c): c.text or "" for c in rule}} if rule is not None else {}


@router.post("/group/smart")
async def post_smart_group(request: Request) -> Response:
    db = db_of(request)
    want_object = return_object(request)

    def work(actor: Actor, data: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
        name = text_param(data, "name", request)
        new_id = groups.create_smart_group(db, actor, name, data.get("rules"))
        obj = _stored_group(db, actor, new_id) if want_object else None
        return new_id, obj

    new_id, obj = await call(request, work, decode=_smart_group_data)
    return created(request, new_id, obj)


@router.post("/group/smart/{group_id}")
async def update_smart_group(request: Request, group_id: str) -> Response:
    db = db_of(request)
    await call(
        request,
        lambda actor, data: groups.update_smart_group(
            db, actor, group_id, text_param(data, "name", request), data.get("rules")
        ),
        decode=_smart_group_data,
    )
    return empty(200)


@router.get("/group/smart/{group_id}/rules")
async def smart_group_rules(request: Request, group_id: str) -> Response:
    db = db_of(request)
    found = await call(
        request,
        lambda actor, _: groups.get_smart_group_rules(db, actor, group_id),
        with_body=False,
    )
    return render(request, present.smart_group_rules(found), item_names=_RULE_ITEMS)


@router.get("/group/{group_id}")
async def get_group(request: Request, group_id: str) -> Response:
    db = db_of(request)
    found = await call(
        request, lambda actor, _: groups.get_group(db, actor, group_id), with_body=False
    )
    # The OpenAPI: in JSON the DetailedGroup itself; in XML its fields directly under
    # <response>, like every single object this service answers.
    return render(request, present.detailed_group(found), item_names={"userIds": "id"})


@router.post("/group/{group_id}")
async def update_group(request: Request, group_id: str) -> Response:
    db = db_of(request)
    await call(
        request,
        lambda actor, data: groups.rename_group(
            db, actor, group_id, text_param(data, "name", request)
        ),
    )
    return empty(200)


@router.delete("/group/{group_id}")
async def delete_group(request: Request, group_id: str) -> Response:
    db = db_of(request)
    await call(request, lambda actor, _: groups.delete_group(db, actor, group_id), with_body=False)
    return empty(204)


@router.post("/group/{group_id}/members")
async def group_members(request: Request, group_id: str) -> Response:
    db = db_of(request)
    await call(
        request,
        lambda actor, data: groups.set_members(db, actor, group_id, _ids(data, "userIds")),
    )
    return empty(200)
