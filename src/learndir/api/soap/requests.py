"""Reading a validated, normalised request element: who calls, and the parameters in the
names and shapes the core's commands take."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lxml import etree

from learndir.api.soap.envelope import service_tag
from learndir.api.xml import local_name
from learndir.core.actor import Actor
from learndir.core.auth import authenticate_credentials, authenticate_token
from learndir.core.errors import DomainError, ErrorCode, invalid
from learndir.core.text import check_text
from learndir.core.users.commands import ApiGeneration
from learndir.db.engine import Database

CREDENTIALS = frozenset({"credentials", "token"})
# Profile values a request may carry as top-level elements, besides `<fields>`.
PROFILE_PARAMETERS = frozenset({"first_name", "last_name", "job_title", "phone"})
_ID_LISTS = frozenset({"groups", "manageableDepartmentIds"})
_BOOLEANS = frozenset({"sendLoginEmail", "sendLoginSMS"})


def text(element: etree._Element | None) -> str | None:
    return element.text if element is not None else None


def parameter(request: etree._Element, name: str) -> str | None:
    return text(request.find(service_tag(name)))


def required(request: etree._Element, name: str) -> str:
    value = parameter(request, name)
    if value is None or not value.strip():
        raise invalid(name, "is required")
    return value.strip()


def authenticate(
    db: Database, request: etree._Element, departments: Sequence[str | None] = ()
) -> tuple[Actor, ApiGeneration]:
    """The caller, from `<credentials>` or a top-level `<token>`; a token makes it the newer
    generation of the API. `departments`: ids the operation will look up, read with the token
    where that saves a round trip (see core.auth.authenticate_token)."""
    credentials = request.find(service_tag("credentials"))
    token = parameter(request, "token")
    if credentials is not None:
        inner_token = parameter(credentials, "token")
        if inner_token and token and inner_token != token:
            raise invalid("token", "differs from credentials.token")
        token = inner_token or token
    if token:
        return authenticate_token(db, token, departments=departments), ApiGeneration.TOKEN
    if credentials is None:
        raise DomainError(
            ErrorCode.UNAUTHENTICATED,
            "send <credentials> with accountUrl, email and password, or a token",
        )
    actor = authenticate_credentials(
        db,
        parameter(credentials, "accountUrl"),
        parameter(credentials, "email"),
        parameter(credentials, "password"),
    )
    return actor, ApiGeneration.CREDENTIALS


def items(element: etree._Element | None) -> list[str] | None:
    """The texts of a list parameter's items (`<id>`, `<login>`, ...); None when absent."""
    return None if element is None else [item.text or "" for item in element]


def list_parameter(request: etree._Element, name: str) -> tuple[str, ...]:
    return tuple(items(request.find(service_tag(name))) or ())


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
        role: dict[str, Any] = {"roleId": parameter(item, "roleId")}
        departments = items(item.find(service_tag("manageableDepartmentIds")))
        if departments is not None:
            role["manageableDepartmentIds"] = departments
        roles.append(role)
    return roles


def user_parameters(
    request: etree._Element, *, profile: frozenset[str], skip: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """A user's parameters under the OpenAPI's names, for a command model: `<fields>` items and
    the top-level `profile` elements merged into one `fields` mapping, id lists as lists,
    `<roles>` as role items. The caller's credentials and `skip` are left out."""
    data: dict[str, Any] = {}
    fields: dict[str, str | None] = {}
    for child in request:
        name = local_name(child)
        if name in CREDENTIALS or name in skip:
            continue
        if name == "fields":
            for field in child:
                _put_field(fields, parameter(field, "name") or "", parameter(field, "value"))
        elif name in profile:
            _put_field(fields, name, child.text)
        elif name in _ID_LISTS:
            data[name] = items(child)
        elif name == "roles":
            data[name] = _roles(child)
        elif name in _BOOLEANS:
            data[name] = (child.text or "").strip() in ("true", "1")
        else:
            data[name] = child.text
    if fields:
        data["fields"] = fields
    return data


def check_texts(request: etree._Element) -> None:
    """Every text of a normalised request (the credentials and token included) by the input
    rule (core.text), before anything reads it. A parameter is named by its path below the
    request element, as schema errors name it; a profile value as `fields.<name>`."""
    for element in request.iterdescendants():
        if element.text is None:
            continue
        holder = element.getparent()
        if holder is not None and [local_name(holder), local_name(element)] == ["field", "value"]:
            name = f"fields.{parameter(holder, 'name')}"
        else:
            below_request = list(element.iterancestors())[-2::-1]
            name = ".".join([*map(local_name, below_request), local_name(element)])
        check_text(element.text, name)
