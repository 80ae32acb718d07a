"""The SOAP operations: each turns its validated request element into a core command, calls one
core service and builds its result element. Adding an operation is one row in OPERATIONS (and
its types in learndir.wsdl)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lxml import etree

from learndir.api.soap.envelope import service_tag
from learndir.api.xml import local_name
from learndir.core.actor import Actor
from learndir.core.auth import authenticate_credentials, authenticate_token
from learndir.core.errors import DomainError, ErrorCode, invalid
from learndir.core.users import service as users
from learndir.core.users.commands import AddUser, ApiGeneration, parse_command
from learndir.db.engine import Database

_CREDENTIALS = frozenset({"credentials", "token"})
_PROFILE_PARAMETERS = frozenset({"first_name", "last_name", "job_title", "phone"})
_ID_LISTS = frozenset({"groups", "manageableDepartmentIds"})
_BOOLEANS = frozenset({"sendLoginEmail", "sendLoginSMS"})


@dataclass(frozen=True)
class Operation:
    """One row of the operation table, keyed by the request element's name."""

    run: Callable[[Database, etree._Element], etree._Element]
    # Undeclared leaf parameters are profile field values (addUser's seed allows them).
    unknown_leaves_are_fields: bool = False


def _text(element: etree._Element | None) -> str | None:
    return element.text if element is not None else None


def authenticate(db: Database, request: etree._Element) -> tuple[Actor, ApiGeneration]:
    """The caller, from `<credentials>` or a top-level `<token>`; a token makes it the newer
    generation of the API."""
    credentials = request.find(service_tag("credentials"))
    token = _text(request.find(service_tag("token")))
    if credentials is not None:
        inner_token = _text(credentials.find(service_tag("token")))
        if inner_token and token and inner_token != token:
            raise invalid("token", "differs from credentials.token")
        token = inner_token or token
    if token:
        return authenticate_token(db, token), ApiGeneration.TOKEN
    if credentials is None:
        raise DomainError(
            ErrorCode.UNAUTHENTICATED,
            "send <credentials> with accountUrl, email and password, or a token",
        )
    actor = authenticate_credentials(
        db,
        _text(credentials.find(service_tag("accountUrl"))),
        _text(credentials.find(service_tag("email"))),
        _text(credentials.find(service_tag("password"))),
    )
    return actor, ApiGeneration.CREDENTIALS


def _ids(element: etree._Element | None) -> list[str] | None:
    return None if element is None else [id_.text or "" for id_ in element]


def _put_field(fields: dict[str, str | None], name: str, value: str | None) -> None:
    if name in fields:
        raise invalid(f"fields.{name}", "given more than once")
    fields[name] = value


def _roles(element: etree._Element) -> list[dict[str, Any]]:
    roles: list[dict[str, Any]] = []
    for item in element:
        if local_name(item) == "id":
            roles.append({"roleId": item.text})
            continue
        role: dict[str, Any] = {"roleId": _text(item.find(service_tag("roleId")))}
        departments = _ids(item.find(service_tag("manageableDepartmentIds")))
        if departments is not None:
            role["manageableDepartmentIds"] = departments
        roles.append(role)
    return roles


def add_user_command(request: etree._Element) -> AddUser:
    """addUser's parameters from a validated AddUserRequest, credentials left out."""
    data: dict[str, Any] = {}
    fields: dict[str, str | None] = {}
    for child in request:
        name = local_name(child)
        if name in _CREDENTIALS:
            continue
        if name == "fields":
            for field in child:
                _put_field(
                    fields,
                    _text(field.find(service_tag("name"))) or "",
                    _text(field.find(service_tag("value"))),
                )
        elif name in _PROFILE_PARAMETERS:
            _put_field(fields, name, child.text)
        elif name in _ID_LISTS:
            data[name] = _ids(child)
        elif name == "roles":
            data[name] = _roles(child)
        elif name in _BOOLEANS:
            data[name] = (child.text or "").strip() in ("true", "1")
        else:
            data[name] = child.text
    if fields:
        data["fields"] = fields
    return parse_command(AddUser, data)


def add_user(db: Database, request: etree._Element) -> etree._Element:
    actor, generation = authenticate(db, request)
    user_id = users.add_user(db, actor, add_user_command(request), generation)
    result = etree.Element(service_tag("AddUserResult"))
    etree.SubElement(result, service_tag("userId")).text = user_id
    return result


OPERATIONS: dict[str, Operation] = {
    "AddUserRequest": Operation(add_user, unknown_leaves_are_fields=True),
}
