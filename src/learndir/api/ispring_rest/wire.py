"""The iSpring REST wire format: XML unless JSON is asked for, PHP-style form keys, X- headers,
and the one table that maps domain errors to HTTP."""

from __future__ import annotations

import json
import math
import re
from typing import Any, cast
from urllib.parse import parse_qsl, unquote_to_bytes

import orjson
from fastapi import Request
from fastapi.responses import Response
from lxml import etree
from starlette.exceptions import HTTPException

from learndir.api.xml import XmlRejected, element_to_data, parse_xml
from learndir.core.errors import DomainError, ErrorCode, invalid
from learndir.core.text import check_name, check_text, check_texts

# Domain error -> HTTP status. HTTP statuses appear nowhere else.
STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_PARAMETERS: 400,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.SEAT_LIMIT_EXCEEDED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.LOGIN_TAKEN: 409,
    ErrorCode.EMAIL_TAKEN: 409,
    ErrorCode.FIELD_VALUE_TAKEN: 409,
    ErrorCode.ACCOUNT_EXISTS: 409,
    ErrorCode.DEPARTMENT_NOT_EMPTY: 409,
    ErrorCode.INVITATION_USED: 410,
    ErrorCode.INVITATION_EXPIRED: 410,
    ErrorCode.INVITATION_REVOKED: 410,
    ErrorCode.TOO_MANY_ATTEMPTS: 429,
}

# Element names whose content is a list even with a single child.
LIST_KEYS = frozenset(
    {
        "groupIds",
        "groups",
        "manageableDepartmentIds",
        "roles",
        "userIds",
        "departmentIds",
        "departmnetIds",
        # Webhook subscriptions: <params><param><name>userIds</name>...
        "params",
        # Smart group rules: <rules><and><item><or><item><rule>...
        "and",
        "or",
    }
)

_XML_DECL = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "").lower()
    if "json" not in accept:
        return False
    if "xml" not in accept:
        return True
    return accept.index("json") < accept.index("xml")


def _append(parent: etree._Element, name: str, value: Any, item_names: dict[str, str]) -> None:
    if isinstance(value, list):
        holder = etree.SubElement(parent, name)
        item = item_names.get(name, "id")
        for entry in value:
            _append(holder, item, entry, item_names)
        return
    element = etree.SubElement(parent, name)
    _fill(element, value, item_names)


def _fill(element: etree._Element, value: Any, item_names: dict[str, str]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _append(element, key, inner, item_names)
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    elif value is not None:
        element.text = xml_text(str(value))


# Characters XML 1.0 cannot carry (C0 controls but tab/CR/LF, lone surrogates, U+FFFE/U+FFFF).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str) -> str:
    """`text` with every character XML cannot carry replaced by U+FFFD, so a stored value or an
    echoed parameter never makes an answer unrenderable."""
    return _NOT_XML.sub("\ufffd", text)


def to_xml(
    value: Any, *, items: str | None = None, item_names: dict[str, str] | None = None
) -> bytes:
    """Renders `value` under a compact <response> root. A top-level list becomes repeated
    `items` elements; nested lists are wrapped, their items named by `item_names` (default id)."""
    root = etree.Element("response")
    names = item_names or {}
    if isinstance(value, list):
        for entry in value:
            _append(root, items or "item", entry, names)
    else:
        _fill(root, value, names)
    return _XML_DECL + etree.tostring(root, encoding="UTF-8")


def to_json(value: Any) -> bytes:
    """Compact UTF-8 JSON. Text that UTF-8 cannot carry (a lone surrogate a client sent as
    "\\ud800" and that is echoed in an error) is written as a \\u escape instead."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode("ascii")


def render(
    request: Request,
    value: Any,
    status: int = 200,
    *,
    items: str | None = None,
    item_names: dict[str, str] | None = None,
) -> Response:
    if wants_json(request):
        return Response(
            to_json(value),
            status_code=status,
            media_type="application/json",
        )
    return Response(
        to_xml(value, items=items, item_names=item_names),
        status_code=status,
        media_type="application/xml; charset=utf-8",
    )


def error_body(
    status: int, error: str, message: str, parameter: str | None, reason: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"code": status, "message": message, "error": error}
    if parameter:
        body["parameter"] = parameter
    if reason:
        body["reason"] = reason
    if parameter or reason:
        body["detail"] = ": ".join(p for p in (parameter, reason) if p)
    return body


def render_error(request: Request, exc: DomainError) -> Response:
    status = STATUS[exc.code]
    response = render(
        request, error_body(status, exc.code.value, exc.message, exc.parameter, exc.reason), status
    )
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


# ---- request decoding -------------------------------------------------------------------

_PHP_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def php_nest(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """`fields[login]=a&groupIds[]=b&roles[0][roleId]=c` -> nested dicts and lists."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        match = _PHP_KEY.match(key)
        if match is None:
            raise invalid(key, "malformed form key")
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        if len(parts) > MAX_JSON_DEPTH:
            raise invalid(parts[0], f"the form key nests deeper than {MAX_JSON_DEPTH} levels")
        node: Any = result
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if part == "":
                    if last:
                        node.append(value)
                        break
                    node.append({})
                    node = node[-1]
                    continue
                raise invalid(key, "mixes list and keyed form entries")
            if not isinstance(node, dict) or (last and isinstance(node.get(part), dict | list)):
                raise invalid(key, "mixes a value and keyed form entries")
            nxt = parts[i + 1] if not last else None
            if last:
                node[part] = value
            else:
                if part not in node:
                    node[part] = [] if nxt == "" else {}
                node = node[part]
    return cast(dict[str, Any], _lists_from_numeric_keys(result))


def _lists_from_numeric_keys(value: Any) -> Any:
    if isinstance(value, dict):
        converted = {k: _lists_from_numeric_keys(v) for k, v in value.items()}
        if converted and all(k.isascii() and k.isdigit() for k in converted):
            return [converted[k] for k in sorted(converted, key=int)]
        return converted
    if isinstance(value, list):
        return [_lists_from_numeric_keys(v) for v in value]
    return value


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _JsonRefused("a number is out of range")
    return value


def _no_constants(name: str) -> Any:
    raise _JsonRefused(f"{name} is not a JSON value")


class _JsonRefused(ValueError):
    pass


def parse_json(raw: bytes | str, parameter: str) -> Any:
    """JSON inside a parameter or a header, its texts checked by the input rule (core.text)
    and named under `parameter`."""
    data = load_json(raw, parameter)
    check_texts(data, parameter)
    return data


def load_json(raw: bytes | str, parameter: str) -> Any:
    """Strict JSON: no NaN or Infinity, no numbers out of range, bounded nesting."""
    try:
        data = json.loads(raw, parse_float=_finite, parse_constant=_no_constants)
    except _JsonRefused as exc:
        raise invalid(parameter, str(exc)) from None
    except RecursionError:
        raise invalid(parameter, "the JSON nests too deeply") from None
    except UnicodeDecodeError:
        raise invalid(parameter, "the JSON is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise invalid(parameter, f"malformed JSON: {exc.msg} at position {exc.pos}") from None
    except ValueError:  # e.g. an integer with thousands of digits
        raise invalid(parameter, "a number is out of range") from None
    if _depth(data) > MAX_JSON_DEPTH:
        raise invalid(parameter, f"the JSON nests deeper than {MAX_JSON_DEPTH} levels")
    return data


# As deep as XML may nest (api/xml.py): whatever reads the decoded data may then recurse freely.
MAX_JSON_DEPTH = 64


def _depth(data: Any) -> int:
    """How deeply lists and objects nest (without recursion: the input may be deep)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            deepest = max(deepest, level)
            if level <= MAX_JSON_DEPTH:
                stack.extend((item, level + 1) for item in value)
    return deepest


def read_xml(body: bytes) -> etree._Element:
    """A request body parsed by the hardened parser; a refused document is Wrong parameters."""
    try:
        return parse_xml(body)
    except XmlRejected as exc:
        raise invalid("request", str(exc)) from None


def xml_parameters(root: etree._Element) -> dict[str, Any]:
    """The parameters under a request's root element, as plain data."""
    try:
        data = element_to_data(root, LIST_KEYS)
    except XmlRejected as exc:
        raise invalid("request", str(exc)) from None
    if isinstance(data, str) and not data.strip():
        return {}
    if not isinstance(data, dict):
        raise invalid("request", "the XML body must hold named parameters")
    return data


def is_xml_body(request: Request, body: bytes) -> bool:
    """Whether decode_body reads this body as XML."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if "json" in ctype or ctype == "multipart/form-data":
        return False
    return "xml" in ctype or (not ctype and body.lstrip()[:1] == b"<")


async def decode_body(request: Request) -> dict[str, Any]:
    """The request body as plain data, whatever its encoding; errors are Wrong parameters.
    Its texts are checked by `checked_body`, once, whichever decoder an operation uses."""
    body = await request.body()
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        try:
            form = await request.form()
        except HTTPException as exc:
            raise invalid("request", str(exc.detail)) from None
        return php_nest([(k, v) for k, v in form.multi_items() if isinstance(v, str)])
    if not body.strip():
        return {}
    stripped = body.lstrip()
    if "json" in ctype or (not ctype and stripped[:1] in (b"{", b"[")):
        data = load_json(body, "request")
        if not isinstance(data, dict):
            raise invalid("request", "the JSON body must be an object")
        return cast(dict[str, Any], data)
    if is_xml_body(request, body):
        return xml_parameters(read_xml(body))
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=True, errors="strict"
        )
    except UnicodeDecodeError:
        raise invalid("request", "the form is not valid UTF-8") from None
    except ValueError:
        raise invalid("request", "the body is neither JSON, XML nor a form") from None
    return php_nest(pairs)


def header_list(raw: str, header: str) -> list[Any]:
    """An array in the header named `header`: JSON, or comma-separated."""
    raw = raw.strip()
    if raw.startswith("["):
        value = parse_json(raw, header_name(header))
        if not isinstance(value, list):
            raise invalid(header_name(header), "expected a JSON array")
        return value
    return [part.strip() for part in raw.split(",") if part.strip()]


def header_object(raw: str, header: str) -> dict[str, Any]:
    """An object in the header named `header`: JSON, or `name=value&name=value` (whose
    percent-escapes are decoded, so its texts are checked again)."""
    raw = raw.strip()
    if raw.startswith("{"):
        value = parse_json(raw, header_name(header))
        if not isinstance(value, dict):
            raise invalid(header_name(header), "expected a JSON object")
        return value
    pairs = dict(parse_qsl(raw, keep_blank_values=True))
    check_texts(pairs, header_name(header))
    return pairs


def header_name(header: str) -> str:
    """`x-auth-email` as clients write it: X-Auth-Email."""
    return "-".join(part.capitalize() for part in header.split("-"))


# ---- the input rule for text (core.text), applied once per request -------------------------

# Bytes that are not UTF-8, as `errors="surrogateescape"` decodes them.
_NOT_UTF8 = re.compile("[\udc80-\udcff]")


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


def check_request_line_and_headers(request: Request) -> None:
    """The path (its parameters named as the API names them: userId), the query string
    (strictly UTF-8, `logins[]` named logins), Authorization and every X- header. These are
    read before the body, authentication among the first."""
    try:
        unquote_to_bytes(request.scope.get("raw_path") or b"").decode("utf-8")
    except UnicodeDecodeError:
        raise invalid("path", "is not valid UTF-8") from None
    for name, value in request.path_params.items():
        if isinstance(value, str):
            check_text(value, _camel(name))
    query = request.scope.get("query_string", b"").decode("latin-1")
    for key, value in parse_qsl(query, keep_blank_values=True, errors="surrogateescape"):
        parameter = key.split("[", 1)[0] or key
        if _NOT_UTF8.search(key) or _NOT_UTF8.search(value):
            raise invalid(_NOT_UTF8.sub("\ufffd", parameter), "is not valid UTF-8")
        check_name(key, parameter)
        check_text(value, parameter)
    for header, value in request.headers.items():
        if header == "authorization" or header.startswith("x-"):
            check_text(value, header_name(header))


def checked_body(data: dict[str, Any]) -> dict[str, Any]:
    """A decoded body whose every text keeps the input rule; its top-level keys are the
    parameters' names."""
    check_texts(data)
    return data
