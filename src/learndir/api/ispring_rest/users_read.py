"""iSpring REST: reading users (profiles, lists, keyset pages, numbered pages, id lookups).

Fixed paths (/user/v2, /user/list) are declared before /user/{userId}. Filters arrive PHP-style
in the query string (`logins[]=a`), or in a JSON, XML or form body for the POST forms. Pages of a
thousand profiles are rendered to XML by a string writer instead of an element tree: the output
is the same bytes as `wire.to_xml`, five times faster.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from learndir.api.ispring_rest import present
from learndir.api.ispring_rest.common import call, db_of
from learndir.api.ispring_rest.wire import header_list, php_nest, render, wants_json
from learndir.core.actor import Actor
from learndir.core.common import whole_number
from learndir.core.errors import invalid
from learndir.core.users.queries import (
    UserFilter,
    UserView,
    find_existing,
    get_user,
    list_users,
    numbered_page,
    page_users,
)

router = APIRouter()

_ITEM_NAMES = {**present.ITEM_NAMES, "userProfiles": "userProfile"}
_XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'
_XML_MEDIA = "application/xml; charset=utf-8"


# ---- parameters -------------------------------------------------------------------------


def _query(request: Request) -> dict[str, Any]:
    return php_nest(list(request.query_params.multi_items()))


def _texts(value: Any, name: str) -> tuple[str, ...]:
    """A list of text values from any form a client sends: `a`, `[a, b]`, PHP `name[]`, or the
    XML `<logins><login>a</login></logins>`. Blank entries are dropped."""
    if value is None:
        return ()
    if isinstance(value, bool):
        raise invalid(name, "must be a list of text values")
    if isinstance(value, str | int | float):
        text = str(value).strip()
        return (text,) if text else ()
    if isinstance(value, dict):
        if len(value) == 1:
            return _texts(next(iter(value.values())), name)
        raise invalid(name, "must be a list of text values")
    if isinstance(value, list):
        return tuple(text for item in value for text in _texts(item, name))
    raise invalid(name, "must be a list of text values")


def _whole(value: Any, name: str) -> int | None:
    if value is None or value == "":
        return None
    number = whole_number(value)
    if number is None:
        raise invalid(name, "must be a whole number")
    return number


def _token(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise invalid("pageToken", "must be a text value")
    return value


def _items(value: Any, name: str) -> list[dict[str, Any]]:
    """A list of objects: a JSON array, one object, or XML items under a wrapper element."""
    if value in (None, ""):
        return []
    if isinstance(value, dict):
        if len(value) == 1 and not ({"name", "values", "from", "to"} & set(value)):
            return _items(next(iter(value.values())), name)
        return [value]
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return value
    raise invalid(name, "must be a list of objects")


def _date(value: Any, name: str) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise invalid(name, "must be a date in the form YYYY-MM-DD")


def _filter(data: dict[str, Any], *, extended: bool = False) -> UserFilter:
    profile_fields: list[tuple[str, tuple[str, ...]]] = []
    date_ranges: list[tuple[str, date | None, date | None]] = []
    if extended:
        for i, item in enumerate(_items(data.get("profileFields"), "profileFields")):
            field_name = item.get("name")
            if not isinstance(field_name, str) or not field_name.strip():
                raise invalid(f"profileFields[{i}].name", "is required")
            profile_fields.append(
                (field_name, _texts(item.get("values"), f"profileFields[{i}].values"))
            )
        ranges = _items(data.get("profileFieldsDateRange"), "profileFieldsDateRange")
        for i, item in enumerate(ranges):
            parameter = f"profileFieldsDateRange[{i}]"
            field_name = item.get("name")
            if not isinstance(field_name, str) or not field_name.strip():
                raise invalid(f"{parameter}.name", "is required")
            date_ranges.append(
                (
                    field_name,
                    _date(item.get("from"), f"{parameter}.from"),
                    _date(item.get("to"), f"{parameter}.to"),
                )
            )
    return UserFilter(
        departments=_texts(data.get("departments"), "departments"),
        groups=_texts(data.get("groups"), "groups"),
        logins=_texts(data.get("logins"), "logins"),
        emails=_texts(data.get("emails"), "emails"),
        user_ids=_texts(data.get("userIds"), "userIds"),
        profile_fields=tuple(profile_fields),
        date_ranges=tuple(date_ranges),
    )


# ---- rendering --------------------------------------------------------------------------


def _escape(text: str) -> str:
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    if "\r" in text:
        text = text.replace("\r", "&#13;")
    return text


def _xml(out: list[str], name: str, value: Any) -> None:
    """Appends `value` as element `name`, exactly as `wire.to_xml` would write it."""
    kind = type(value)
    if kind is str:
        out.append(f"<{name}>{_escape(value)}</{name}>")
    elif kind is dict:
        if not value:
            out.append(f"<{name}/>")
            return
        out.append(f"<{name}>")
        for key, inner in value.items():
            if type(inner) is str:
                out.append(f"<{key}>{_escape(inner)}</{key}>")
            else:
                _xml(out, key, inner)
        out.append(f"</{name}>")
    elif kind is list:
        if not value:
            out.append(f"<{name}/>")
            return
        item = _ITEM_NAMES.get(name, "id")
        out.append(f"<{name}>")
        for entry in value:
            if type(entry) is str:
                out.append(f"<{item}>{_escape(entry)}</{item}>")
            else:
                _xml(out, item, entry)
        out.append(f"</{name}>")
    elif value is None:
        out.append(f"<{name}/>")
    elif kind is bool:
        out.append(f"<{name}>{'true' if value else 'false'}</{name}>")
    elif isinstance(value, dict):
        _xml(out, name, dict(value))
    elif isinstance(value, list):
        _xml(out, name, list(value))
    else:
        out.append(f"<{name}>{_escape(str(value))}</{name}>")


def xml_document(value: dict[str, Any] | list[Any], items: str = "item") -> bytes:
    out = [_XML_DECL, "<response>"]
    if isinstance(value, list):
        for entry in value:
            _xml(out, items, entry)
    else:
        for key, inner in value.items():
            _xml(out, key, inner)
    if len(out) == 2:
        return (_XML_DECL + "<response/>").encode("utf-8")
    out.append("</response>")
    return "".join(out).encode("utf-8")


def _respond(request: Request, value: dict[str, Any] | list[Any], items: str = "item") -> Response:
    if wants_json(request):
        return render(request, value)
    return Response(xml_document(value, items), media_type=_XML_MEDIA)


def _profiles(found: list[UserView], v2: bool) -> list[dict[str, Any]]:
    return [present.user(u, v2=v2) for u in found]


def profile_response(request: Request, obj: dict[str, Any], status: int = 200) -> Response:
    """One user: in XML `<response><userProfile>...</userProfile></response>` (the User schema's
    XML name, as the lists write it), in JSON the bare object (the OpenAPI wraps it in
    `response`, but the published clients read the object itself)."""
    if wants_json(request):
        return render(request, obj, status)
    return Response(xml_document({"userProfile": obj}), status, media_type=_XML_MEDIA)


def _profile(request: Request, found: UserView, v2: bool) -> Response:
    return profile_response(request, present.user(found, v2=v2))


# ---- lists ------------------------------------------------------------------------------


async def _list(request: Request, v2: bool) -> Response:
    db = db_of(request)
    found = await call(
        request,
        lambda actor, _: list_users(db, actor, _filter(_query(request))),
        with_body=False,
    )
    return _respond(request, _profiles(found, v2), items="userProfile")


@router.get("/user")
async def get_users(request: Request) -> Response:
    return await _list(request, v2=False)


@router.get("/user/v2")
async def get_users_v2(request: Request) -> Response:
    return await _list(request, v2=True)


async def _page(request: Request, v2: bool, filters_in_body: bool) -> Response:
    db = db_of(request)

    def work(actor: Actor, data: dict[str, Any]) -> tuple[list[UserView], str | None]:
        params = _query(request)
        source = data if filters_in_body else params
        page = page_users(
            db,
            actor,
            _filter(source),
            _whole(params.get("pageSize", data.get("pageSize")), "pageSize"),
            _token(params.get("pageToken", data.get("pageToken"))),
        )
        return page.users, page.next_page_token

    found, token = await call(request, work, with_body=filters_in_body, reads_only=True)
    body: dict[str, Any] = {"userProfiles": _profiles(found, v2)}
    if token is not None:
        body["nextPageToken"] = token
    return _respond(request, body)


@router.get("/users")
async def list_users_v1(request: Request) -> Response:
    """Deprecated in the OpenAPI document, still used by older sync scripts."""
    return await _page(request, v2=False, filters_in_body=False)


@router.get("/users/v2")
async def list_users_v2(request: Request) -> Response:
    return await _page(request, v2=True, filters_in_body=False)


@router.post("/users/v2")
async def list_users_v2_by_post(request: Request) -> Response:
    """Filters in the body (too many logins for a query string); paging in the query."""
    return await _page(request, v2=True, filters_in_body=True)


@router.post("/user/list")
async def paged_users_list(request: Request) -> Response:
    db = db_of(request)

    def work(actor: Actor, data: dict[str, Any]) -> tuple[list[UserView], int, int]:
        params = _query(request)
        # `page` is what the published sync scripts send; the OpenAPI calls it pageNumber.
        number = next(
            (
                source[key]
                for source in (data, params)
                for key in ("pageNumber", "page")
                if source.get(key) not in (None, "")
            ),
            None,
        )
        page = numbered_page(
            db,
            actor,
            _filter(data, extended=True),
            _whole(number, "pageNumber"),
            _whole(data.get("pageSize", params.get("pageSize")), "pageSize"),
        )
        return page.users, page.page_number, page.total

    found, number, total = await call(request, work, reads_only=True)
    return _respond(
        request,
        {"pageNumber": number, "totalUsersNumber": total, "userProfiles": _profiles(found, False)},
    )


@router.post("/users/find_existing")
async def find_existing_users(request: Request) -> Response:
    db = db_of(request)

    def work(actor: Actor, data: dict[str, Any]) -> list[str]:
        raw: Any = None
        if "userIds" in data:
            raw = data["userIds"]
        elif "x-user-ids" in request.headers:
            raw = header_list(request.headers["x-user-ids"], "x-user-ids")
        return find_existing(db, actor, None if raw is None else list(_texts(raw, "userIds")))

    found = await call(request, work, reads_only=True)
    return _respond(request, found, items="id")


# ---- one profile ------------------------------------------------------------------------


@router.get("/user/{user_id}")
async def get_user_profile(request: Request, user_id: str) -> Response:
    db = db_of(request)
    found = await call(request, lambda actor, _: get_user(db, actor, user_id), with_body=False)
    return _profile(request, found, v2=False)


@router.get("/user/{user_id}/v2")
async def get_user_profile_v2(request: Request, user_id: str) -> Response:
    db = db_of(request)
    found = await call(request, lambda actor, _: get_user(db, actor, user_id), with_body=False)
    return _profile(request, found, v2=True)
