"""iSpring REST: departments and groups."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from lxml import etree

from learndir.api.ispring_rest import present
from learndir.api.ispring_rest.common import call, created, db_of, return_object, single, text_param
from learndir.api.ispring_rest.wire import is_xml_body, render, wants_json
from learndir.api.xml import XmlRejected, local_name, parse_xml
from learndir.core import departments, groups
from learndir.core.actor import Actor
from learndir.core.common import whole_number
from learndir.core.errors import invalid

router = APIRouter()

# XML names of list items: Department and Group schemas are <department> and <group>; the
# AND/OR nodes of smart group rules have no name in the OpenAPI, so they are <item>.
_DEPARTMENT_ITEMS = {"departments": "department"}
_GROUP_ITEMS = {"groups": "group"}
_RULE_ITEMS = {"and": "item", "or": "item"}


def _empty(status: int) -> Response:
    return Response(status_code=status)


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


def _page_params(request: Request) -> tuple[int | None, str | None]:
    raw_size = request.query_params.get("pageSize")
    size: int | None = None
    if raw_size is not None and raw_size.strip():
        size = whole_number(raw_size)
        if size is None:
            raise invalid("pageSize", "must be a whole number")
    token = request.query_params.get("pageToken") or None
    return size, token


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


def _optional_text(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise invalid(name, "must be a text value")
    return value


# ---- departments ----------------------------------------------------------------------------


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
            name=_optional_text(data, "name"),
            parent_id=_optional_text(data, "parentDepartmentId"),
            code=_optional_text(data, "code"),
        )

    await call(request, work)
    return _empty(204)


@router.delete("/department/{department_id}")
async def delete_department(request: Request, department_id: str) -> Response:
    db = db_of(request)
    await call(
        request,
        lambda actor, _: departments.delete_department(db, actor, department_id),
        with_body=False,
    )
    return _empty(204)


@router.post("/department/{department_id}/subordination")
async def department_subordination(request: Request, department_id: str) -> Response:
    db = db_of(request)

    def work(actor: Actor, data: dict[str, Any]) -> None:
        departments.set_subordination(
            db, actor, department_id, data.get("subordination"), data.get("coSubordination")
        )

    await call(request, work)
    return _empty(204)


@router.post("/department/{department_id}/user/move")
async def move_users(request: Request, department_id: str) -> Response:
    db = db_of(request)
    await call(
        request,
        lambda actor, data: departments.move_users(db, actor, department_id, _ids(data, "userIds")),
    )
    return _empty(204)


@router.post("/department/{parent_id}/department/move")
async def move_departments(request: Request, parent_id: str) -> Response:
    db = db_of(request)

    def work(actor: Actor, data: dict[str, Any]) -> None:
        # The OpenAPI requires "departmnetIds" (sic) but defines only departmentIds: take both.
        typo = "departmnetIds" in data and "departmentIds" not in data
        ids = _ids(data, "departmnetIds" if typo else "departmentIds")
        departments.move_departments(db, actor, parent_id, ids)

    await call(request, work)
    return _empty(204)


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


@router.post("/group")
async def post_group(request: Request) -> Response:
    db = db_of(request)
    want_object = return_object(request)

    def work(actor: Actor, data: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
        name = text_param(data, "name", request, "x-name")
        new_id = groups.create_group(db, actor, name, _ids(data, "userIds", required=False))
        obj = present.group(groups.Group(new_id, (name or "").strip()))
        return new_id, obj if want_object else None

    new_id, obj = await call(request, work)
    return created(request, new_id, obj)


def _rule_nodes(parent: etree._Element, name: str) -> list[etree._Element]:
    """The <and> (or <or>) nodes under `parent`: repeated elements, as the OpenAPI writes
    unwrapped arrays, or the <item>s of a single wrapping element, as this service writes."""
    found = [c for c in parent if local_name(c) == name]
    if len(found) == 1 and all(local_name(c) == "item" for c in found[0]):
        return list(found[0])  # also an empty <and/>: an empty list
    return found


async def _xml_rules(request: Request) -> dict[str, Any] | None:
    """Smart group rules of an XML body, read from the tree: the generic XML decoding cannot
    tell one AND node holding two OR nodes from two AND nodes. None when the body is not XML
    or has no <rules> (an unreadable body is reported by the usual decoding)."""
    if not is_xml_body(request, await request.body()):
        return None
    try:
        root = parse_xml(await request.body())
    except XmlRejected:
        return None
    holder = next((c for c in root if local_name(c) == "rules"), None)
    if holder is None:
        return None
    ands = []
    for and_node in _rule_nodes(holder, "and"):
        ors = []
        for or_node in _rule_nodes(and_node, "or"):
            rule = next((c for c in or_node if local_name(c) == "rule"), None)
            ors.append(
                {"rule": {local_name(c): c.text or "" for c in rule}} if rule is not None else {}
            )
        ands.append({"or": ors})
    return {"and": ands}


@router.post("/group/smart")
async def post_smart_group(request: Request) -> Response:
    db = db_of(request)
    want_object = return_object(request)

    xml_rules = await _xml_rules(request)

    def work(actor: Actor, data: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
        name = _optional_text(data, "name")
        rules = xml_rules if xml_rules is not None else data.get("rules")
        new_id = groups.create_smart_group(db, actor, name, rules)
        obj = present.group(groups.Group(new_id, (name or "").strip(), is_smart=True))
        return new_id, obj if want_object else None

    new_id, obj = await call(request, work)
    return created(request, new_id, obj)


@router.post("/group/smart/{group_id}")
async def update_smart_group(request: Request, group_id: str) -> Response:
    db = db_of(request)
    xml_rules = await _xml_rules(request)
    await call(
        request,
        lambda actor, data: groups.update_smart_group(
            db,
            actor,
            group_id,
            _optional_text(data, "name"),
            xml_rules if xml_rules is not None else data.get("rules"),
        ),
    )
    return _empty(200)


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
        lambda actor, data: groups.rename_group(db, actor, group_id, _optional_text(data, "name")),
    )
    return _empty(200)


@router.delete("/group/{group_id}")
async def delete_group(request: Request, group_id: str) -> Response:
    db = db_of(request)
    await call(request, lambda actor, _: groups.delete_group(db, actor, group_id), with_body=False)
    return _empty(204)


@router.post("/group/{group_id}/members")
async def group_members(request: Request, group_id: str) -> Response:
    db = db_of(request)
    await call(
        request,
        lambda actor, data: groups.set_members(db, actor, group_id, _ids(data, "userIds")),
    )
    return _empty(200)
