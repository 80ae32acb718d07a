"""Hostile request bodies are refused quickly with a client error, and the server stays up.

Every hostile XML document is otherwise a valid addUser call (a good token, a real department,
a fresh employee id), so a parser that let the attack through would create a user: after each
refusal the account must be unchanged, `/health` must answer and a normal add must still work.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree

from learndir.db.engine import Database
from tests.support import Server, World, acme_spec, make_world

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_NS = "http://ispringlearn.com/go/services/api/soap"
QUICK_SECONDS = 2.0
MAX_BODY = 1_048_576
PASSWD_LINE = Path("/etc/passwd").read_text().splitlines()[0]


class Trap:
    """A TCP listener that counts connections: an external DTD or entity pointing here must
    never be fetched."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self.hits = 0
        self._closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._closed:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self.hits += 1
            connection.close()

    def close(self) -> None:
        self._closed = True
        self._socket.close()


@pytest.fixture(scope="module")
def trap() -> Iterator[Trap]:
    listener = Trap()
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    # Plain HTTP: verify=False only skips loading the CA bundle for every request.
    with httpx.Client(timeout=30, verify=False) as shared:
        yield shared


@pytest.fixture(scope="module")
def target_world(db: Database) -> World:
    """The acme account without a seat limit: every case ends with a normal add."""
    return make_world(db, acme_spec(seatLimit=None))


@dataclass
class Refusal:
    status: int
    message: str
    reason: str


@dataclass
class Target:
    server: Server
    world: World
    trap: Trap
    client: httpx.Client

    @property
    def token(self) -> str:
        return self.world.token("owner")

    @property
    def department_id(self) -> str:
        return self.world.departments["sales"]

    def post(self, transport: str, content: Any) -> tuple[httpx.Response, float]:
        """One hostile request and how long the server took to answer it."""
        if transport == "soap":
            path, base = "/soap", {"Content-Type": "text/xml; charset=utf-8"}
        elif transport == "json":
            path = "/user"
            base = {
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            }
        else:
            path = "/user"
            base = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/xml"}
        # A connection of its own, so that a server which drops it cannot fail the checks after.
        with httpx.Client(timeout=30, verify=False) as client:
            started = time.monotonic()
            response = client.post(self.server.base_url + path, content=content, headers=base)
            return response, time.monotonic() - started

    def add_normally(self, transport: str) -> None:
        tag = uuid.uuid4().hex[:8]
        login, employee_id = f"calm.{tag}", f"C-{tag}"
        if transport == "soap":
            response, _ = self.post("soap", soap_document(self, "", login, employee_id).encode())
            assert response.status_code == 200, response.text
            assert etree.fromstring(response.content).findtext(f".//{{{SOAP_NS}}}userId")
            return
        if transport == "json":
            fields = {"login": login, "employee_id": employee_id}
            body = {"departmentId": self.department_id, "fields": fields}
            response, _ = self.post("json", json.dumps(body).encode())
        else:
            response, _ = self.post("rest", rest_document(self, "", login, employee_id).encode())
        assert response.status_code == 201, response.text


@pytest.fixture
def target(server: Server, target_world: World, trap: Trap, client: httpx.Client) -> Target:
    return Target(server, target_world, trap, client)


def read_refusal(transport: str, response: httpx.Response) -> Refusal:
    """The refusal's status, message and reason in the transport's own error format."""
    if transport == "json":
        assert response.headers["content-type"].startswith("application/json"), response.text
        body = response.json()
        return Refusal(response.status_code, body["message"], body.get("reason", ""))
    root = etree.fromstring(response.content)
    if transport == "rest":
        assert response.headers["content-type"].startswith("application/xml"), response.text
        assert root.tag == "response", response.text
        return Refusal(
            response.status_code, root.findtext("message") or "", root.findtext("reason") or ""
        )
    assert response.headers["content-type"].startswith("text/xml"), response.text
    fault = root.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    assert fault is not None, response.text
    assert fault.findtext("faultcode") == "SOAP-ENV:Client", response.text
    return Refusal(
        response.status_code,
        fault.findtext("faultstring") or "",
        fault.findtext(f"detail/{{{SOAP_NS}}}error/{{{SOAP_NS}}}reason") or "",
    )


def assert_refused_and_unharmed(
    target: Target,
    transport: str,
    before: dict[str, int],
    response: httpx.Response,
    seconds: float,
    status: int,
    message: str,
    reason: str | None,
) -> None:
    assert seconds < QUICK_SECONDS, f"answered after {seconds:.2f}s: {response.status_code}"
    assert PASSWD_LINE not in response.text
    assert response.status_code == status, response.text[:2000]
    refusal = read_refusal(transport, response)
    assert refusal.message == message, response.text[:2000]
    assert refusal.reason.strip(), response.text[:2000]
    if reason is not None:
        assert reason.lower() in refusal.reason.lower(), response.text[:2000]
    assert target.trap.hits == 0, "the server fetched an external resource"
    assert target.server.alive()
    assert target.world.snapshot() == before
    assert target.client.get(f"{target.server.base_url}/health").status_code == 200
    target.add_normally(transport)


# ---- documents --------------------------------------------------------------------------


def rest_document(target: Target, prolog: str, login: str, employee_id: str) -> str:
    return (
        f"{prolog}<request><departmentId>{target.department_id}</departmentId><fields>"
        f"<login>{login}</login><employee_id>{employee_id}</employee_id></fields></request>"
    )


def soap_document(target: Target, prolog: str, login: str, employee_id: str) -> str:
    return (
        f'{prolog}<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV}" xmlns="{SOAP_NS}">'
        f"<SOAP-ENV:Body><AddUserRequest><token>{target.token}</token><login>{login}</login>"
        f"<departmentId>{target.department_id}</departmentId><fields><field>"
        f"<name>employee_id</name><value>{employee_id}</value></field></fields>"
        f"</AddUserRequest></SOAP-ENV:Body></SOAP-ENV:Envelope>"
    )


def document(target: Target, transport: str, prolog: str, login: str) -> str:
    """A valid addUser call in the transport's XML, with `prolog` before the root element and
    `login` (raw XML) as the login."""
    build = soap_document if transport == "soap" else rest_document
    return build(target, prolog, login, f"H-{uuid.uuid4().hex[:8]}")


def billion_laughs() -> str:
    entities = ['<!ENTITY lol0 "lol">']
    entities += [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)]
    return f"<!DOCTYPE lolz [{''.join(entities)}]>"


QUADRATIC_REFERENCES = 10_000


def quadratic_blowup() -> str:
    return f'<!DOCTYPE r [<!ENTITY big "{"x" * 50_000}">]>'


def encoded(encoding: str, codec: str, declare: bool = True) -> Callable[[Target, str], bytes]:
    """An XXE document written in another encoding, so a byte-level DOCTYPE check on UTF-8
    does not see it."""

    def build(target: Target, transport: str) -> bytes:
        declaration = f'<?xml version="1.0" encoding="{encoding}"?>' if declare else ""
        prolog = f'{declaration}<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        return document(target, transport, prolog, "&x;").encode(codec)

    return build


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Target, str], bytes]
    reason: str | None = None


def _utf8(prolog: Callable[[Target], str], login: str) -> Callable[[Target, str], bytes]:
    return lambda target, transport: document(target, transport, prolog(target), login).encode()


XML_CASES = [
    Case(
        "xxe_file",
        _utf8(lambda t: '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>', "&x;"),
        "DOCTYPE",
    ),
    Case(
        "xxe_network",
        _utf8(lambda t: f'<!DOCTYPE r [<!ENTITY x SYSTEM "{t.trap.url}/x">]>', "&x;"),
        "DOCTYPE",
    ),
    Case(
        "external_dtd",
        _utf8(lambda t: f'<!DOCTYPE r SYSTEM "{t.trap.url}/evil.dtd">', "a.login"),
        "DOCTYPE",
    ),
    Case(
        "external_parameter_entity",
        _utf8(lambda t: f'<!DOCTYPE r [<!ENTITY % p SYSTEM "{t.trap.url}/p.dtd"> %p;]>', "x"),
        "DOCTYPE",
    ),
    Case("billion_laughs", _utf8(lambda t: billion_laughs(), "&lol9;"), "DOCTYPE"),
    Case(
        "quadratic_blowup",
        _utf8(lambda t: quadratic_blowup(), "&big;" * QUADRATIC_REFERENCES),
        "DOCTYPE",
    ),
    Case(
        "xxe_lowercase_doctype_after_comment",
        _utf8(lambda t: '<!-- hi --><!doctype r [<!ENTITY x SYSTEM "file:///etc/passwd">]>', "&x;"),
        None,
    ),
    Case("xxe_utf16", encoded("UTF-16", "utf-16"), "DOCTYPE"),
    Case("xxe_utf16_be_undeclared", encoded("", "utf-16-be", declare=False), None),
    Case("xxe_utf32", encoded("UTF-32", "utf-32"), None),
    Case("xxe_utf7", encoded("UTF-7", "utf-7"), None),
    Case("xxe_ebcdic", encoded("IBM037", "cp037"), None),
    Case("xxe_latin1", encoded("ISO-8859-1", "latin-1"), "DOCTYPE"),
    Case(
        "xinclude",
        _utf8(
            lambda t: "",
            '<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" '
            'href="file:///etc/passwd" parse="text"/>',
        ),
        None,
    ),
    Case("nesting_100_levels", _utf8(lambda t: "", "<a>" * 100 + "x" + "</a>" * 100), "deep"),
    Case(
        "nesting_100000_levels",
        _utf8(lambda t: "", "<a>" * 100_000 + "x" + "</a>" * 100_000),
        "depth",
    ),
    Case("malformed_truncated", lambda t, tr: document(t, tr, "", "x").encode()[:-20], None),
    Case("malformed_mismatched", _utf8(lambda t: "", "<a>x</b>"), "malformed"),
    Case("malformed_binary", lambda t, tr: b"\x00\xff\xfe<\x00\x01garbage", None),
    Case("malformed_two_roots", lambda t, tr: document(t, tr, "", "x").encode() * 2, None),
]


@pytest.mark.parametrize("transport", ["rest", "soap"])
@pytest.mark.parametrize("case", XML_CASES, ids=[c.name for c in XML_CASES])
def test_hostile_xml_is_refused(target: Target, transport: str, case: Case) -> None:
    before = target.world.snapshot()
    body = case.build(target, transport)
    assert len(body) < MAX_BODY

    response, seconds = target.post(transport, body)

    assert_refused_and_unharmed(
        target, transport, before, response, seconds, 400, "Wrong parameters", case.reason
    )


# ---- oversized bodies -------------------------------------------------------------------

TWENTY_MB = 20 * 1024 * 1024
CHUNK = 64 * 1024


def _chunks() -> Iterator[bytes]:
    for _ in range(TWENTY_MB // CHUNK):
        yield b"<" + b"a" * (CHUNK - 1)


@pytest.mark.parametrize("transport", ["rest", "json", "soap"])
@pytest.mark.parametrize("upload", ["content_length", "chunked"])
def test_twenty_megabytes_get_413_quickly(target: Target, transport: str, upload: str) -> None:
    before = target.world.snapshot()
    content: Any = b"<" + b"a" * (TWENTY_MB - 1) if upload == "content_length" else _chunks()

    response, seconds = target.post(transport, content)

    if upload == "chunked":
        assert response.request.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in response.request.headers
    assert_refused_and_unharmed(
        target, transport, before, response, seconds, 413, "Request too large", str(MAX_BODY)
    )


# ---- JSON bombs -------------------------------------------------------------------------


def _add_json(target: Target, login: str, employee_id: str) -> str:
    return (
        f'{{"departmentId":"{target.department_id}",'
        f'"fields":{{"login":{login},"employee_id":{employee_id}}}}}'
    )


def _fresh_id() -> str:
    return f'"J-{uuid.uuid4().hex[:8]}"'


JSON_CASES: list[tuple[str, Callable[[Target], bytes]]] = [
    ("nested_arrays_top_level", lambda t: b"[" * 100_000),
    ("nested_arrays_closed", lambda t: b"[" * 100_000 + b"]" * 100_000),
    ("nested_objects_top_level", lambda t: b'{"a":' * 100_000),
    (
        "nested_arrays_in_a_field",
        lambda t: _add_json(t, "[" * 100_000 + "]" * 100_000, _fresh_id()).encode(),
    ),
    (
        "nested_arrays_500_in_a_field",
        lambda t: _add_json(t, "[" * 500 + '"x"' + "]" * 500, _fresh_id()).encode(),
    ),
    ("huge_integer", lambda t: _add_json(t, '"json.big"', "9" * 500_000).encode()),
    (
        "huge_integer_department",
        lambda t: f'{{"departmentId":{"9" * 500_000},"fields":{{"login":"x"}}}}'.encode(),
    ),
    ("huge_exponent", lambda t: _add_json(t, '"json.exp"', "1e999999").encode()),
    ("nan_literal", lambda t: _add_json(t, '"json.nan"', "NaN").encode()),
    ("infinity_literal", lambda t: _add_json(t, '"json.inf"', "-Infinity").encode()),
    ("malformed", lambda t: _add_json(t, '"json.bad"', _fresh_id()).encode()[:-3]),
    ("not_utf8", lambda t: _add_json(t, '"json.\xff"', _fresh_id()).encode("latin-1")),
    # A lone surrogate in a parameter name: echoed in the error, which must still be valid JSON.
    (
        "lone_surrogate_name",
        lambda t: f'{{"departmentId":"{t.department_id}","x\\ud800":"1"}}'.encode(),
    ),
]


@pytest.mark.parametrize(("name", "build"), JSON_CASES, ids=[name for name, _ in JSON_CASES])
def test_json_bombs_are_refused(
    target: Target, name: str, build: Callable[[Target], bytes]
) -> None:
    before = target.world.snapshot()
    body = build(target)
    assert len(body) < MAX_BODY

    response, seconds = target.post("json", body)

    assert_refused_and_unharmed(
        target, "json", before, response, seconds, 400, "Wrong parameters", None
    )


# ---- odd but small inputs that once reached an unguarded int() or a recursion ---------------


def _deep(levels: int) -> str:
    return "[" * levels + '"x"' + "]" * levels


@dataclass(frozen=True)
class Odd:
    name: str
    method: str
    path: str
    body: str | None = None
    content_type: str = "application/json"
    authenticated: bool = True


ODD_INPUTS = [
    Odd("form_value_then_keys", "POST", "/user", "login=1&login[b]=2",
        "application/x-www-form-urlencoded", authenticated=False),
    Odd("form_keys_then_value", "POST", "/user", "login[b]=2&login=1",
        "application/x-www-form-urlencoded"),
    Odd("form_superscript_index", "POST", "/user", "roles[\u00b2][roleId]=x",
        "application/x-www-form-urlencoded"),
    Odd("query_value_then_keys", "GET", "/users/v2?logins=a&logins[x]=b"),
    Odd("page_size_superscript", "GET", "/users/v2?pageSize=\u00b2"),
    Odd("page_size_two_signs", "GET", "/users/v2?pageSize=%2B-5"),
    Odd("departments_page_size_superscript", "GET", "/departments?pageSize=\u00b2"),
    Odd("groups_page_size_two_signs", "GET", "/groups?pageSize=-%2B3"),
    Odd("page_number_superscript", "POST", "/user/list", '{"pageNumber": "\u00b2"}'),
    Odd("status_superscript", "POST", "/user/{owner}/status", '{"status": "\u00b2"}'),
    Odd("smart_rule_superscript", "POST", "/group/smart",
        '{"name": "S", "rules": {"and": [{"or": [{"rule": {"attributeType": "\u00b2",'
        ' "operator": 1, "value": "x"}}]}]}}'),
    Odd("work_leave_deep", "POST", "/users/work-leave-status",
        f'{{"workLeaveStatuses": {_deep(500)}}}'),
    Odd("find_existing_deep", "POST", "/users/find_existing", f'{{"userIds": {_deep(500)}}}'),
]  # fmt: skip


@pytest.mark.parametrize("odd", ODD_INPUTS, ids=[o.name for o in ODD_INPUTS])
def test_odd_inputs_are_wrong_parameters_not_server_errors(target: Target, odd: Odd) -> None:
    before = target.world.snapshot()
    headers = {"Content-Type": odd.content_type, "Accept": "application/json"}
    if odd.authenticated:
        headers["Authorization"] = f"Bearer {target.token}"
    path = odd.path.replace("{owner}", target.world.users["owner"])
    response = target.client.request(
        odd.method,
        target.server.base_url + path,
        content=odd.body.encode() if odd.body is not None else None,
        headers=headers,
    )
    expected = 400 if odd.authenticated else 401
    assert response.status_code == expected, response.text
    assert response.json()["code"] == expected
    assert target.world.snapshot() == before


def test_soap_status_in_other_digits_is_a_fault_not_a_server_error(target: Target) -> None:
    envelope = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"'
        f' xmlns="{SOAP_NS}"><e:Body><ChangeUserStatusRequest>'
        f"<token>{target.token}</token><userId>{target.world.users['jane.doe']}</userId>"
        "<status>\u00b2</status></ChangeUserStatusRequest></e:Body></e:Envelope>"
    )
    response, _ = target.post("soap", envelope.encode())
    assert response.status_code == 400, response.text
    assert "User status must be 1, 3 or 5" in response.text
