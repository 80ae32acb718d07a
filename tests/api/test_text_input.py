"""The one input rule for text (core.text) through every interface: a NUL, another control
character or a lone surrogate anywhere a client can put text is Wrong parameters naming the
parameter, with the same answer on SQLite and PostgreSQL, and the request changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from lxml import etree

from learndir.db.engine import Database
from tests.invitations import invite_new_user, send_latest
from tests.support import Server, World, acme_spec, make_world

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_NS = "http://ispringlearn.com/go/services/api/soap"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
def text_world(db: Database) -> World:
    return make_world(db, acme_spec(seatLimit=None))


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as shared:
        yield shared


@dataclass(frozen=True)
class Bad:
    """One request carrying a forbidden character, and the parameter the refusal must name."""

    name: str
    method: str
    path: str
    parameter: str
    body: str | bytes | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    authenticated: bool = True
    reason: str = "U+0000"


def _json(value: object) -> str:
    return json.dumps(value)


# `{root}` is the account's root department, `{owner}` the owner's user id.
CASES = [
    # The attacks of issue 10, each a 500 on PostgreSQL before.
    Bad("token_client_id", "POST", "/api/v3/token", "client_id",
        "client_id=a%00b&client_secret=x&grant_type=client_credentials", FORM,
        authenticated=False),
    Bad("user_logins_query", "GET", "/user?logins[]=a%00b", "logins"),
    Bad("user_emails_query", "GET", "/user?emails[]=a%00b%40example.com", "emails"),
    Bad("users_v2_logins_query", "GET", "/users/v2?logins[]=a%00b", "logins"),
    Bad("users_v2_post_logins", "POST", "/users/v2", "logins", _json({"logins": ["a\0b"]})),
    Bad("user_list_logins", "POST", "/user/list", "logins", _json({"logins": ["a\0b"]})),
    Bad("department_name", "POST", "/department", "name",
        _json({"name": "a\0b", "parentDepartmentId": "{root}"})),
    Bad("department_code", "POST", "/department", "code",
        _json({"name": "Ok", "code": "c\0d", "parentDepartmentId": "{root}"})),
    Bad("group_name", "POST", "/group", "name", _json({"name": "a\0b"})),
    # The same rule in the other places text comes from.
    Bad("group_name_form", "POST", "/group", "name", "name=a%00b", FORM),
    Bad("group_name_multipart", "POST", "/group", "name",
        b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\na\x00b\r\n--b--\r\n',
        "multipart/form-data; boundary=b"),
    Bad("department_name_xml_del", "POST", "/department", "name",
        "<request><name>a&#127;b</name><parentDepartmentId>{root}</parentDepartmentId>"
        "</request>", "application/xml", reason="U+007F"),
    Bad("profile_field_surrogate", "POST", "/user", "fields.login",
        '{"departmentId": "{root}", "fields": {"login": "x\\ud800"}}', reason="U+D800"),
    Bad("profile_field_in_header", "POST", "/user", "X-Fields.first_name",
        _json({"departmentId": "{root}", "fields": {"login": "header.nul"}}),
        headers={"X-Fields": '{"first_name": "a\\u0000"}'}),
    Bad("group_ids_in_header", "POST", "/user/{owner}/groups/remove", "X-Group-Ids",
        "", headers={"X-Group-Ids": '["a\\u0001"]'}, reason="U+0001"),
    Bad("role_in_a_list", "POST", "/user", "roles[0].roleId",
        _json({"departmentId": "{root}", "fields": {"login": "role.nul"},
               "roles": [{"roleId": "r\x1b"}]}), reason="U+001B"),
    Bad("parameter_name", "POST", "/group", "na\0me", _json({"na\0me": "x"})),
    Bad("path_parameter", "DELETE", "/group/a%00b", "groupId"),
    Bad("query_not_utf8", "GET", "/users/v2?logins[]=a%FFb", "logins", reason="UTF-8"),
    Bad("form_not_utf8", "POST", "/group", "request", b"name=a\xffb", FORM, reason="UTF-8"),
    Bad("form_escape_not_utf8", "POST", "/group", "request", "name=a%FFb", FORM, reason="UTF-8"),
    Bad("form_key_nests_too_deeply", "POST", "/group", "name", "name" + "[]" * 100_000 + "=x",
        FORM, reason="deeper than 64"),
    Bad("json_not_utf8", "POST", "/group", "request", b'{"name": "a\xffb"}', reason="UTF-8"),
]  # fmt: skip


def _send(client: httpx.Client, world: World, case: Bad) -> httpx.Response:
    def fill(text: str) -> str:
        return text.replace("{root}", world.root_id).replace("{owner}", world.users["owner"])

    headers = {"Accept": "application/json", **case.headers}
    if case.body is not None:
        headers["Content-Type"] = case.content_type
    if case.authenticated:
        headers["Authorization"] = f"Bearer {world.token('owner')}"
    body = case.body.encode() if isinstance(case.body, str) else case.body
    if body is not None:
        body = body.replace(b"{root}", world.root_id.encode())
    # Header values go out as latin-1, as httpx sends them.
    return client.request(case.method, fill(case.path), content=body, headers=headers)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_forbidden_text_is_wrong_parameters_and_changes_nothing(
    client: httpx.Client, text_world: World, case: Bad
) -> None:
    before = text_world.snapshot()

    response = _send(client, text_world, case)

    assert response.status_code == 400, response.text
    body = response.json()
    assert body["message"] == "Wrong parameters", body
    assert body["error"] == "invalid_parameters", body
    assert body["parameter"] == case.parameter, body
    assert case.reason in body["reason"], body
    assert text_world.snapshot() == before


def test_a_control_character_in_a_header_never_reaches_the_api(
    client: httpx.Client, text_world: World
) -> None:
    """The HTTP parser refuses it (the API would too: Authorization and X- headers are checked
    with the query string)."""
    before = text_world.snapshot()
    response = client.post(
        f"/user/{text_world.users['owner']}/password",
        headers={
            "Authorization": f"Bearer {text_world.token('owner')}",
            "X-Password": "secret\x7fsecret",
        },
    )
    assert response.status_code == 400, response.text
    assert text_world.snapshot() == before


def test_the_reason_names_the_character_and_its_position(
    client: httpx.Client, text_world: World
) -> None:
    response = _send(client, text_world, CASES[0])
    assert response.json()["reason"] == (
        "must not contain control characters (U+0000 at position 2)"
    )


def test_tab_newline_and_carriage_return_are_text(client: httpx.Client, text_world: World) -> None:
    response = client.post(
        "/group",
        json={"name": "two\tlines\r\nof name"},
        headers={"Authorization": f"Bearer {text_world.token('owner')}"},
    )
    assert response.status_code == 201, response.text


def test_the_answer_is_rendered_in_xml_too(client: httpx.Client, text_world: World) -> None:
    before = text_world.snapshot()
    response = client.post(
        "/group",
        json={"name": "a\0b"},
        headers={"Authorization": f"Bearer {text_world.token('owner')}"},
    )
    assert response.status_code == 400
    root = etree.fromstring(response.content)
    assert root.findtext("parameter") == "name"
    assert "U+0000" in (root.findtext("reason") or "")
    assert text_world.snapshot() == before


# ---- SOAP ------------------------------------------------------------------------------------


def _soap(request: str) -> bytes:
    return (
        f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV}" xmlns="{SOAP_NS}"><SOAP-ENV:Body>'
        f"{request}</SOAP-ENV:Body></SOAP-ENV:Envelope>"
    ).encode()


def _fault(response: httpx.Response) -> tuple[str, str, str]:
    root = etree.fromstring(response.content)
    error = f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault/detail/{{{SOAP_NS}}}error/{{{SOAP_NS}}}"
    return (
        root.findtext(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault/faultstring") or "",
        root.findtext(f"{error}parameter") or "",
        root.findtext(f"{error}reason") or "",
    )


SOAP_CASES = {
    "profile_value": (
        "<AddUserRequest><token>{token}</token><departmentId>{root}</departmentId>"
        "<login>a&#127;b</login></AddUserRequest>",
        "login",
        2,
    ),
    "field_value": (
        "<AddUserRequest><token>{token}</token><departmentId>{root}</departmentId>"
        "<fields><field><name>first_name</name><value>&#127;</value></field></fields>"
        "<login>soap.del</login></AddUserRequest>",
        "fields.first_name",
        1,
    ),
    "credentials": (
        "<GetDepartmentsRequest><credentials><accountUrl>{url}</accountUrl>"
        "<email>owner&#127;</email><password>x</password></credentials>"
        "</GetDepartmentsRequest>",
        "credentials.email",
        6,
    ),
}


@pytest.mark.parametrize("name", SOAP_CASES)
def test_soap_refuses_forbidden_text_naming_the_parameter(
    client: httpx.Client, text_world: World, name: str
) -> None:
    request_xml, parameter, position = SOAP_CASES[name]
    before = text_world.snapshot()
    request_xml = (
        request_xml.replace("{token}", text_world.token("owner"))
        .replace("{root}", text_world.root_id)
        .replace("{url}", text_world.account_url)
    )
    response = client.post(
        "/soap", content=_soap(request_xml), headers={"Content-Type": "text/xml; charset=utf-8"}
    )
    assert response.status_code == 400, response.text
    assert _fault(response) == (
        "Wrong parameters",
        parameter,
        f"must not contain control characters (U+007F at position {position})",
    )
    assert text_world.snapshot() == before


def test_soap_nul_is_refused_by_the_parser(client: httpx.Client, text_world: World) -> None:
    before = text_world.snapshot()
    request_xml = (
        f"<AddUserRequest><token>{text_world.token('owner')}</token>"
        f"<departmentId>{text_world.root_id}</departmentId><login>a&#0;b</login>"
        "</AddUserRequest>"
    )
    response = client.post("/soap", content=_soap(request_xml))
    assert response.status_code == 400, response.text
    assert _fault(response)[0] == "Wrong parameters"
    assert text_world.snapshot() == before


# ---- the set-password page ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "error"),
    [
        (b"password=Brand-New%00Pass-1&confirmation=Brand-New%00Pass-1", "U+0000 at position 10"),
        (b"password=Brand-New-Pass-1%FF&confirmation=Brand-New-Pass-1%FF", "not valid UTF-8"),
    ],
)
def test_set_password_form_refuses_forbidden_text_and_the_link_stays_usable(
    client: httpx.Client, text_world: World, form: bytes, error: str
) -> None:
    raw = send_latest(text_world.db, invite_new_user(text_world))
    response = client.post(f"/invite/{raw}", content=form, headers={"Content-Type": FORM})
    assert response.status_code == 400, response.text
    assert error in response.text
    response = client.post(
        f"/invite/{raw}", data={"password": "Brand-New-Pass-1", "confirmation": "Brand-New-Pass-1"}
    )
    assert response.status_code == 200, response.text


def test_set_password_form_of_an_unknown_link(client: httpx.Client) -> None:
    response = client.post(
        "/invite/no-such-token",
        content=b"password=a%00bcdefgh&confirmation=a%00bcdefgh",
        headers={"Content-Type": FORM},
    )
    # An unknown link is an unknown link, whatever was typed into the form.
    assert response.status_code == 404
    response = client.get("/invite/a%00b")
    assert response.status_code == 404
