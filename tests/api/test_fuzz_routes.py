"""Property test: whatever text a client puts anywhere in a request, no route answers 5xx.

Every route of the application (read from `app.routes`, so a new route is fuzzed without
touching this file) gets arbitrary Unicode, NUL, other control characters and lone surrogates
in its path parameters, query string (also percent-encoded bytes that are not UTF-8), headers
(raw bytes), and JSON (surrogates as `\\udXXX` escapes), form, XML and SOAP bodies: against a
real server on SQLite and on PostgreSQL, unauthenticated, with a token and with X-Auth
credentials. Runs are derandomised, so CI replays the same examples.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_from_bytes

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Mount

from learndir.api.app import create_app
from learndir.api.docs import openapi_document
from learndir.api.soap.operations import OPERATIONS
from learndir.core import console_sessions
from learndir.core.scim_tokens import create_scim_token
from learndir.db.engine import Database
from learndir.settings import Settings
from tests.support import Server, World, acme_spec, make_world

# Enough for CI to stay well under a minute per database; set LEARNDIR_FUZZ_EXAMPLES for a
# longer hunt (still derandomised, so a failure found that way replays too).
EXAMPLES_PER_ROUTE = int(os.environ.get("LEARNDIR_FUZZ_EXAMPLES", "25"))
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_NS = "http://ispringlearn.com/go/services/api/soap"


def _routes() -> list[tuple[str, str]]:
    """(method, path) of every route the application serves, included routers and mounts too."""
    app = create_app(Settings(database_url="postgresql://fuzz@127.0.0.1/never-connected"))
    found: set[tuple[str, str]] = set()

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            included = getattr(route, "original_router", None)
            if included is not None:
                walk(included.routes, prefix + route.include_context.prefix)
            elif isinstance(route, Mount):
                found.add(("GET", f"{prefix}{route.path}/{{path}}"))
            else:
                for method in getattr(route, "methods", None) or ():
                    if method != "HEAD":
                        found.add((method, prefix + route.path))

    walk(list(app.routes), "")
    app.state.db.dispose()
    return sorted(found)


ROUTES = _routes()
SCIM_NOT_IMPLEMENTED = frozenset({"/scim/v2/Bulk", "/scim/v2/Me"})


@dataclass(frozen=True)
class Documented:
    """The parameters our OpenAPI document names for an operation: a fuzzed request carries
    every one of them, so that it gets past "unknown parameter" to where the values are used."""

    query: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()
    body: tuple[str, ...] = ()


def _documented() -> dict[tuple[str, str], Documented]:
    document = openapi_document()

    def resolve(node: Any) -> Any:
        while isinstance(node, dict) and "$ref" in node:
            node = functools.reduce(lambda n, k: n[k], node["$ref"][2:].split("/"), document)
        return node

    def properties(schema: Any, depth: int = 0) -> set[str]:
        schema = resolve(schema)
        if not isinstance(schema, dict) or depth > 3:
            return set()
        found = set(schema.get("properties", {}))
        for part in [*schema.get("allOf", []), *schema.get("oneOf", []), schema.get("items")]:
            if part is not None:
                found |= properties(part, depth + 1)
        return found

    result = {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            query: set[str] = set()
            headers: set[str] = set()
            for parameter in map(resolve, operation.get("parameters", [])):
                where = parameter.get("in")
                if where == "query":
                    query.add(parameter["name"].removesuffix("[]"))
                elif where == "header" and not parameter["name"].lower().startswith("x-auth"):
                    headers.add(parameter["name"])
            body: set[str] = set()
            for media in resolve(operation.get("requestBody", {})).get("content", {}).values():
                body |= properties(media.get("schema"))
            result[(method.upper(), _shape(path))] = Documented(
                tuple(sorted(query)), tuple(sorted(headers)), tuple(sorted(body))
            )
    return result


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


DOCUMENTED = _documented()

# ---- text ------------------------------------------------------------------------------------

# What no field may hold, and its neighbours that every field may.
NASTY = [
    "\x00", "\x01", "\x08", "\x0b", "\x1b", "\x1f", "\x7f", "\ud800", "\udbff", "\udc00",
    "\udfff", "\ufffe", "\uffff", "\u0085", "\u2028", "\ufeff", "\U0001f600", "\t", "\r\n",
    "%", "%00", "&", "<", "]]>", "'", '"', "\\", "/", "..", "[", "]", "=", " ",
]  # fmt: skip

# What PostgreSQL cannot store, drawn as often as all the rest.
UNSTORABLE = st.sampled_from(["\x00", "\ud800", "\udfff", "\x00\x00"])

# Text with something nasty in it, most of the time.
nasty_texts = st.tuples(
    st.text(max_size=3), st.one_of(UNSTORABLE, st.sampled_from(NASTY)), st.text(max_size=3)
).map("".join)
texts = st.one_of(
    nasty_texts,
    nasty_texts,
    st.text(max_size=10),
    st.sampled_from(["", "0", "-1", "1e999", "true", "9" * 40, "2024-02-30"]),
)

NAMES = [
    "name", "code", "parentDepartmentId", "departmentId", "departmentIds", "departmnetIds",
    "fields", "login", "email", "password", "userId", "userIds", "groupIds", "groups", "logins",
    "emails", "departments", "roles", "roleId", "manageableDepartmentIds", "status", "date",
    "subscriberName", "subscription", "url", "client_id", "client_secret", "grant_type",
    "pageSize", "pageToken", "pageNumber", "page", "rules", "workLeaveStatuses",
    "subordination", "coSubordination", "profileFields", "profileFieldsDateRange",
    "confirmation", "sendLoginEmail", "invitationMessage", "code", "wsdl", "isEnabled",
    # The console's form fields and query parameters.
    "q", "after", "sub", "department", "group", "role", "selected", "action", "parent",
    "mode", "match", "current", "repeat", "label", "type", "permissions", "members", "next",
]  # fmt: skip
FIELD_NAMES = ["login", "email", "first_name", "last_name", "employee_id", "phone", "job_title"]

names = st.one_of(st.sampled_from(NAMES), st.sampled_from(NAMES), texts)
scalars = st.one_of(
    texts, st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(names, inner, max_size=3),
        st.dictionaries(st.sampled_from(FIELD_NAMES), texts, max_size=3),
    ),
    max_leaves=8,
)


def _utf8(text: str) -> bytes:
    """A lone surrogate becomes the bytes a careless client would send: invalid UTF-8."""
    return text.encode("utf-8", "surrogatepass")


def _escaped(text: str) -> str:
    return quote_from_bytes(_utf8(text), safe="[]")


# Characters XML 1.0 cannot carry: written as character references, which the parser refuses.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(text: str) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _NOT_XML.sub(lambda m: f"&#{ord(m.group())};", text)


def _xml_name(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][\w.-]*", name) else "x"


def _xml_elements(value: Any, name: str) -> str:
    tag = _xml_name(name)
    if isinstance(value, dict):
        inner = "".join(_xml_elements(v, k) for k, v in value.items())
    elif isinstance(value, list):
        inner = "".join(_xml_elements(v, "id") for v in value)
    else:
        inner = _xml_text("" if value is None else str(value))
    return f"<{tag}>{inner}</{tag}>"


# ---- requests --------------------------------------------------------------------------------


@dataclass
class Fixtures:
    world: World
    client: httpx.Client
    # A SCIM token of the owner: /scim/v2 routes take it where the others take an API token.
    scim_token: str
    # The owner's console session (cookie value and CSRF token): /console routes take it.
    console_cookie: str = ""
    console_csrf: str = ""

    def ids(self) -> list[str]:
        w = self.world
        return [w.users["owner"], w.users["jane.doe"], w.root_id, *w.departments.values(),
                *w.groups.values()]  # fmt: skip


@st.composite
def requests(draw: st.DrawFn, method: str, path: str, fx: Fixtures) -> httpx.Request:
    """One request whose text `nasty` sits in many places at once (path parameters, query,
    headers, body parameters, profile fields), the other places holding real ids or other
    values, so that whichever parameter a route reads first, it may be the nasty one."""
    nasty = draw(texts)
    ids = fx.ids()
    values = st.one_of(st.just(nasty), st.sampled_from([*ids, *PLAUSIBLE]), texts)

    def value_of(name: str) -> st.SearchStrategy[Any]:
        """The nasty text, or a value the parameter `name` takes, so that the others get past
        their checks to where the nasty one is used."""
        if name in PLAUSIBLE_BY_NAME:
            return st.one_of(st.just(nasty), st.just(PLAUSIBLE_BY_NAME[name]))
        return values

    def fill(_: re.Match[str]) -> str:
        return quote_from_bytes(_utf8(draw(values)), safe="") or "x"

    url = re.sub(r"\{[^}]+\}", fill, path)
    documented = DOCUMENTED.get((method, _shape(path)), Documented())
    chosen = [*documented.query, *draw(st.lists(names, max_size=4, unique=True))]
    query = "&".join(
        f"{_escaped(k)}{draw(st.sampled_from(['', '[]']))}={_escaped(draw(value_of(k)))}"
        for k in chosen
    )
    if draw(st.booleans()):
        query += "&logins[]=%FF%FE"
    headers: dict[str, bytes] = {"Accept": draw(st.sampled_from([b"application/json", b"*/*"]))}
    auth = draw(st.sampled_from(["token", "token", "token", "credentials", "none", "garbage"]))
    world = fx.world
    if auth == "token" and path.startswith("/console"):
        headers["Cookie"] = f"learndir_console={fx.console_cookie}".encode()
    elif auth == "token":
        token = fx.scim_token if path.startswith("/scim/") else world.token("owner")
        headers["Authorization"] = f"Bearer {token}".encode()
    elif auth == "credentials":
        headers["X-Auth-Account-Url"] = world.account_url.encode()
        headers["X-Auth-Email"] = b"owner"
        headers["X-Auth-Password"] = world.passwords["owner"].encode()
    elif auth == "garbage":
        headers["Authorization"] = _header_bytes(nasty)
    extra = draw(st.lists(st.sampled_from(X_HEADERS), max_size=3, unique=True))
    for header in {*documented.headers, *extra}:
        value = draw(
            st.one_of(values, st.lists(values, max_size=2), st.just({"first_name": nasty}))
        )
        raw = json.dumps(value) if not isinstance(value, str) or draw(st.booleans()) else value
        headers[header] = _header_bytes(raw)
    body = None
    if method in ("POST", "PUT", "PATCH"):
        extra = draw(st.lists(names, max_size=3, unique=True))
        data = {
            name: draw(
                st.one_of(value_of(name), value_of(name), st.lists(values, max_size=2), json_values)
            )
            for name in [*documented.body, *extra]
        }
        if "fields" in data or draw(st.booleans()):
            data["fields"] = {name: draw(value_of(name)) for name in FIELD_NAMES}
        if path.startswith("/console") and auth == "token" and draw(st.booleans()):
            # Past the CSRF check, to where the form's values are used.
            data["csrf"] = fx.console_csrf
        content = draw(bodies(path, data, fx))
        if content is not None:
            headers["Content-Type"], body = content
    return fx.client.build_request(method, f"{url}?{query}", headers=headers, content=body)


# Values real clients send, beside the account's ids.
PLAUSIBLE = ["owner", "jane.doe", "true", "1", "2030-01-01", "client_credentials"]
PLAUSIBLE_BY_NAME = {
    "grant_type": "client_credentials",
    "status": "1",
    "date": "2030-01-01",
    "login": "fuzz.user",
    "email": "fuzz@example.com",
    "pageSize": "2",
}

X_HEADERS = [
    "X-Fields", "X-Group-Ids", "X-Roles", "X-User-Ids", "X-Manageable-Department-Ids",
    "X-Password", "X-Return-Object", "X-Name", "X-Code", "X-Department-Id", "X-Status",
    "X-Auth-Email", "X-Parent-Department-Id", "X-Role-Id", "X-Request-Id",
]  # fmt: skip


def _header_bytes(text: str) -> bytes:
    """What HTTP lets a header carry: printable ASCII, tab and bytes above 0x7F."""
    raw = _utf8(text)
    return bytes(b if b == 9 or 0x20 <= b <= 0x7E or b >= 0x80 else 0x3F for b in raw).strip()


def _form_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@st.composite
def bodies(
    draw: st.DrawFn, path: str, data: dict[str, Any], fx: Fixtures
) -> tuple[bytes, bytes] | None:
    if path.startswith("/soap"):
        kind = draw(st.sampled_from(["soap", "soap", "soap", "raw", "none"]))
    elif path.startswith("/console"):
        kind = draw(st.sampled_from(["form", "form", "form", "json", "raw", "none"]))
    else:
        kind = draw(st.sampled_from(["json", "json", "form", "form", "xml", "raw", "none"]))
    if kind == "json":
        return b"application/json", json.dumps(data).encode()
    if kind == "form":
        form = "&".join(f"{_escaped(k)}={_escaped(_form_value(v))}" for k, v in data.items())
        return b"application/x-www-form-urlencoded", form.encode()
    if kind == "xml":
        return b"application/xml", _xml_elements(data, "request").encode("utf-8", "surrogatepass")
    if kind == "raw":
        return draw(st.sampled_from([b"", b"text/plain", b"multipart/form-data"])), draw(
            st.binary(max_size=64)
        )
    if kind == "soap":
        operation = draw(st.sampled_from(sorted(OPERATIONS)))
        token = draw(st.one_of(st.just(fx.world.token("owner")), texts))
        inner = _xml_elements({"token": token, **data}, operation)
        envelope = (
            f'<e:Envelope xmlns:e="{SOAP_ENV}"><e:Body>'
            f"{inner.replace(f'<{operation}>', f'<{operation} xmlns={SOAP_NS!r}>', 1)}"
            f"</e:Body></e:Envelope>"
        )
        return b"text/xml; charset=utf-8", envelope.encode("utf-8", "surrogatepass")
    return None


@pytest.fixture(scope="module")
def fx(db: Database, server: Server) -> Iterator[Fixtures]:
    world = make_world(db, acme_spec(seatLimit=None))
    scim_token = create_scim_token(db, world.account_url, "owner").token
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        yield Fixtures(world, client, scim_token)


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_no_route_answers_5xx_whatever_text_it_gets(
    fx: Fixtures, server: Server, method: str, path: str
) -> None:
    @settings(
        max_examples=EXAMPLES_PER_ROUTE,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(request=requests(method, path, fx))
    def no_server_error(request: httpx.Request) -> None:
        try:
            response = fx.client.send(request)
        except httpx.TransportError as exc:
            pytest.fail(f"{request.method} {request.url}: the connection failed: {exc!r}")
        # SCIM's answer to what it does not offer (RFC 7644 §3.12) is 501 Not Implemented.
        limit = 502 if path in SCIM_NOT_IMPLEMENTED else 500
        assert response.status_code < limit, (
            f"{request.method} {request.url} {dict(request.headers)} {request.content[:500]!r}"
            f" -> {response.status_code} {response.text[:500]}"
        )

    if path.startswith("/console"):
        # A session of its own for each route: a fuzzed sign-out ends only this one.
        raw, session = console_sessions.sign_in(
            fx.world.db, fx.world.account_url, "owner", fx.world.passwords["owner"]
        )
        fx.console_cookie, fx.console_csrf = raw, session.csrf_token
    no_server_error()
    assert server.alive()
