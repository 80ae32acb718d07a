"""Conformance with the published OpenAPI document (tags user, department, departments, group,
role, token), checked by schemathesis against a real `learndir serve` with a real account and a
real bearer token, on SQLite and PostgreSQL.

Two parts:
- `test_generated`: for every operation a fixed, small number of requests generated from the
  document (valid and invalid ones, deterministic), each sent asking for JSON and again asking
  for XML. Path parameters (and ids in bodies) are mostly real ids of this account, so the
  success paths run, not only 404s. Checked: no 5xx, a documented status has a body that
  conforms to its schema (XML read into data by `tests/api/conformance.py`), the content type
  is documented, and every answer keeps the wire rules (the format asked for, `<response>`
  root, empty bodies where the document has none, `code` and `message` on every error).
  Undocumented statuses (404 for an unknown id, 409 for a duplicate) are allowed.
- `test_success_path`: one valid request per operation that must succeed, in JSON and in XML,
  with the same checks; it proves that the success shape itself conforms.

The run uses an account of its own (examples/acme.yaml under a fresh URL) and its owner's token;
destructive operations get ids of users, departments and groups made for them.

Run alone: .venv/bin/pytest -q -n 2 tests/api/test_conformance.py
"""

from __future__ import annotations

import datetime
import json
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)
from sqlalchemy import update

from learndir.core.auth import create_api_key
from learndir.core.common import utcnow
from learndir.core.webhooks import code_hash
from learndir.db.engine import Database
from learndir.db.schema import webhook_subscribers
from tests.api.conformance import (
    RAW,
    SPEC_PATH,
    TAGS,
    VENDOR_SPEC_PATH,
    schema_problems,
    wire_problems,
    xml_to_data,
)
from tests.support import Server, acme_spec, make_world

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
EXAMPLES = 6
CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {"max-examples": EXAMPLES, "deterministic": True, "mode": "all"},
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
    }
)
SCHEMA = schemathesis.openapi.from_path(SPEC_PATH, config=CONFIG).include(tag=TAGS)
JSON = "application/json"
XML = "application/xml"


@dataclass
class Api:
    """The running server, the dedicated account and ids to put into requests."""

    base_url: str
    token: str
    client: httpx.Client
    root: str
    users: list[str]
    departments: list[str]
    groups: list[str]
    smart_groups: list[str] = field(default_factory=list)
    victim_users: list[str] = field(default_factory=list)
    victim_departments: list[str] = field(default_factory=list)
    victim_groups: list[str] = field(default_factory=list)
    victim_keys: list[str] = field(default_factory=list)
    client_id: str = ""
    client_secret: str = ""
    db: Database | None = None
    account_url: str = ""

    def headers(self, accept: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": accept}

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = self.client.post(path, json=body, headers=self.headers(JSON))
        assert response.status_code in (200, 201), (path, response.status_code, response.text)
        return response.json() if response.content else None

    def new_user(self, department: str | None = None) -> str:
        u = uuid.uuid4().hex[:10]
        fields = {"login": f"c{u}", "email": f"c{u}@conf.test", "employee_id": f"C{u}"}
        return str(self.post("/user", {"departmentId": department or self.root, "fields": fields}))

    def new_department(self, parent: str | None = None) -> str:
        u = uuid.uuid4().hex[:8]
        body = {"name": f"Dept {u}", "parentDepartmentId": parent or self.root, "code": f"d{u}"}
        return str(self.post("/department", body))

    def new_group(self, members: list[str] | None = None) -> str:
        return str(
            self.post("/group", {"name": f"Group {uuid.uuid4().hex[:8]}", "userIds": members or []})
        )

    def new_subscriber(self, *, code: str | None = None, failed: bool = False) -> str:
        """A webhook subscriber (nothing is ever delivered in this module); with `code`, that
        confirmation code is waiting as if the worker had sent it."""
        name = f"hook-{uuid.uuid4().hex[:8]}"
        self.post(
            "/webhook/register", {"subscriberName": name, "callbackUrl": "http://127.0.0.1:9/"}
        )
        if code is not None:
            assert self.db is not None
            with self.db.write() as conn:
                conn.execute(
                    update(webhook_subscribers)
                    .where(webhook_subscribers.c.name == name)
                    .values(
                        code_hash=code_hash(code),
                        code_expires_at=utcnow() + datetime.timedelta(hours=1),
                    )
                )
        return name

    def new_key(self) -> str:
        """A key of a user other than the owner, whose token the run uses."""
        response = self.client.post(
            "/api-keys", json={"userId": self.users[1]}, headers=self.headers(JSON)
        )
        assert response.status_code == 201, response.text
        return str(response.json()["clientId"])

    def new_smart_group(self) -> str:
        body = {"name": f"Smart {uuid.uuid4().hex[:8]}", "rules": _smart_rules(self.departments[1])}
        return str(self.post("/group/smart", body))


def _smart_rules(department_id: str) -> dict[str, Any]:
    rule = {"attributeType": 1, "operator": 2, "value": department_id}
    return {"and": [{"or": [{"rule": rule}]}]}


@pytest.fixture(scope="module")
def api(server: Server, db: Database) -> Iterator[Api]:
    spec = acme_spec()
    spec.pop("seatLimit", None)
    world = make_world(db, spec)
    key = create_api_key(db, world.account_url, "owner")
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        depts = [world.root_id] + [d for name, d in world.departments.items() if name != "root"]
        api = Api(
            base_url=server.base_url,
            token=world.token("owner"),
            client=client,
            root=world.root_id,
            users=list(world.users.values()),
            departments=depts,
            groups=list(world.groups.values()),
            client_id=key.client_id,
            client_secret=key.client_secret,
            db=db,
            account_url=world.account_url,
        )
        api.users += [api.new_user(world.departments["sales"]) for _ in range(3)]
        api.victim_users = [api.new_user() for _ in range(2 * EXAMPLES)]
        api.victim_departments = [api.new_department() for _ in range(EXAMPLES)]
        api.victim_groups = [api.new_group() for _ in range(EXAMPLES)]
        api.smart_groups = [api.new_smart_group() for _ in range(2)]
        api.victim_keys = [api.new_key() for _ in range(EXAMPLES)]
        yield api


# ---- generated requests --------------------------------------------------------------------

# Operations that destroy what their path names get ids made for that; the others get the
# account's lasting users, departments and groups.
DESTRUCTIVE = {
    ("DELETE", "/user/{userId}"),
    ("DELETE", "/department/{departmentId}"),
    ("DELETE", "/group/{groupId}"),
    ("DELETE", "/api-keys/{clientId}"),
}


def _pick(pool: list[str], generated: Any) -> Any:
    """A real id for three generated values in four (deterministically), else the generated
    value itself, so unknown ids are exercised too."""
    if not pool:
        return generated
    h = zlib.crc32(repr(generated).encode())
    return generated if h % 4 == 3 else pool[h % len(pool)]


def _pools(api: Api, method: str, path: str) -> dict[str, list[str]]:
    destructive = (method, path) in DESTRUCTIVE
    smart = path.startswith("/group/smart/")
    return {
        "userId": api.victim_users if destructive else api.users,
        "departmentId": api.victim_departments if destructive else api.departments,
        "parentId": api.departments,
        "clientId": api.victim_keys,
        "groupId": api.victim_groups
        if destructive
        else (api.smart_groups if smart else api.groups + api.smart_groups),
    }


def _body_pools(api: Api) -> dict[str, list[str]]:
    return {
        "userIds": api.users[1:] + api.victim_users,
        "departmentId": api.departments,
        "parentDepartmentId": api.departments,
        "departmentIds": api.victim_departments,
        "groupIds": api.groups,
        "userId": api.users[1:],
    }


def _with_real_ids(value: Any, pools: dict[str, list[str]]) -> Any:
    if not isinstance(value, dict):
        return value
    out = {}
    for key, inner in value.items():
        pool = pools.get(key)
        if pool and isinstance(inner, list):
            out[key] = [_pick(pool, item) for item in inner]
        elif pool and isinstance(inner, str):
            out[key] = _pick(pool, inner)
        elif isinstance(inner, list):
            out[key] = [_with_real_ids(item, pools) for item in inner]
        else:
            out[key] = _with_real_ids(inner, pools)
    return out


# X-Return-Object: true makes a creating call answer with the object instead of its id (the
# document names the header but shows only the id): that answer is checked against the object's
# schema.
CREATED_OBJECT = {
    "/user": "User",
    "/department": "Department",
    "/group": "Group",
    "/group/smart": "Group",
}


def _returns_object(case: Any) -> bool:
    headers = {k.lower(): v for k, v in (case.headers or {}).items()}
    return str(headers.get("x-return-object", "")).strip().lower() in ("true", "1", "yes")


def _validate(case: Any, response: Any, accept: str) -> None:
    path = case.operation.path
    if response.status_code == 201 and path in CREATED_OBJECT and _returns_object(case):
        case.validate_response(response, checks=[not_a_server_error, content_type_conformance])
        content = response.content
        schema = {"$ref": f"#/components/schemas/{CREATED_OBJECT[path]}"}
        if accept == JSON:
            data = json.loads(content)
        elif path == "/user":  # <response><userProfile>, as GET /user/{userId} answers
            data = xml_to_data(content, {"properties": {"userProfile": schema}})["userProfile"]
        else:
            data = xml_to_data(content, schema)
        problems = schema_problems(data, CREATED_OBJECT[path])
        assert not problems, (case.method, path, accept, response.text[:800], problems)
        return
    case.validate_response(response, checks=CHECKS)


def _send(case: Any, api: Api, accept: str) -> None:
    response = case.call(base_url=api.base_url, headers=api.headers(accept), timeout=15)
    _validate(case, response, accept)
    problems = wire_problems(
        case.operation.path,
        case.method,
        response.status_code,
        response.headers,
        response.content,
        accept == JSON,
    )
    assert not problems, (
        case.method,
        case.formatted_path,
        case.body,
        response.text[:500],
        problems,
    )


@SCHEMA.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_generated(case: Any, api: Api) -> None:
    pools = _pools(api, case.method, case.operation.path)
    if case.path_parameters:
        for name, value in list(case.path_parameters.items()):
            case.path_parameters[name] = _pick(pools.get(name, []), value)
    if isinstance(case.body, dict):
        case.body = _with_real_ids(case.body, _body_pools(api))
    _send(case, api, JSON)
    _send(case, api, XML)


# ---- one request per operation that must succeed ------------------------------------------


@dataclass
class Request:
    path_parameters: dict[str, str] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    status: int = 200


def _date(days: int) -> str:
    return (datetime.date.today() + datetime.timedelta(days=days)).isoformat()


def _login_of(api: Api, user_id: str) -> str:
    response = api.client.get(f"/user/{user_id}", headers=api.headers(JSON))
    fields = response.json()["fields"]
    return str(next(f["value"] for f in fields if f["name"] == "LOGIN"))


def _invited(api: Api) -> str:
    """A new user with an invitation queued."""
    user_id = api.new_user()
    response = api.client.post(f"/user/{user_id}/invitation/resend", headers=api.headers(JSON))
    assert response.status_code == 200, response.text
    return user_id


def _failed_signin(api: Api) -> str:
    """The login of a new user with a failed sign-in on record."""
    login = _login_of(api, api.new_user())
    headers = {
        "X-Auth-Account-Url": api.account_url,
        "X-Auth-Email": login,
        "X-Auth-Password": "not-the-password",
    }
    assert api.client.get("/role", headers=headers).status_code == 401
    return login


SUCCESS: dict[tuple[str, str], Callable[[Api], Request]] = {
    ("GET", "/signin/locks"): lambda a: Request(),
    ("DELETE", "/signin/locks"): lambda a: Request(query={"login": _failed_signin(a)}, status=204),
    ("POST", "/api/v3/token"): lambda a: Request(
        body={
            "client_id": a.client_id,
            "client_secret": a.client_secret,
            "grant_type": "client_credentials",
        }
    ),
    ("GET", "/department"): lambda a: Request(),
    ("POST", "/department"): lambda a: Request(
        body={"name": f"New {uuid.uuid4().hex[:6]}", "parentDepartmentId": a.root}, status=201
    ),
    ("GET", "/department/{departmentId}"): lambda a: Request({"departmentId": a.departments[1]}),
    ("POST", "/department/{departmentId}"): lambda a: Request(
        {"departmentId": a.new_department()}, body={"name": "Renamed"}, status=204
    ),
    ("DELETE", "/department/{departmentId}"): lambda a: Request(
        {"departmentId": a.new_department()}, status=204
    ),
    ("GET", "/departments"): lambda a: Request(query={"pageSize": 2}),
    ("POST", "/department/{departmentId}/subordination"): lambda a: Request(
        {"departmentId": a.new_department()},
        body={
            "subordination": {"subordinationType": "manual", "supervisorId": a.users[0]},
            "coSubordination": {"subordinationType": "no_supervisor"},
        },
        status=204,
    ),
    ("POST", "/department/{departmentId}/user/move"): lambda a: Request(
        {"departmentId": a.departments[2]}, body={"userIds": [a.new_user()]}, status=204
    ),
    ("POST", "/department/{parentId}/department/move"): lambda a: Request(
        {"parentId": a.departments[2]}, body={"departmentIds": [a.new_department()]}, status=204
    ),
    ("GET", "/group"): lambda a: Request(),
    ("POST", "/group"): lambda a: Request(
        body={"name": f"G {uuid.uuid4().hex[:6]}", "userIds": [a.users[1]]}, status=201
    ),
    ("POST", "/group/smart"): lambda a: Request(
        body={"name": f"S {uuid.uuid4().hex[:6]}", "rules": _smart_rules(a.departments[1])},
        status=201,
    ),
    ("POST", "/group/smart/{groupId}"): lambda a: Request(
        {"groupId": a.new_smart_group()},
        body={"name": "Smart renamed", "rules": _smart_rules(a.departments[2])},
    ),
    ("GET", "/group/smart/{groupId}/rules"): lambda a: Request({"groupId": a.smart_groups[0]}),
    ("GET", "/group/{groupId}"): lambda a: Request({"groupId": a.new_group([a.users[1]])}),
    ("POST", "/group/{groupId}"): lambda a: Request(
        {"groupId": a.new_group()}, body={"name": f"Renamed {uuid.uuid4().hex[:6]}"}
    ),
    ("DELETE", "/group/{groupId}"): lambda a: Request({"groupId": a.new_group()}, status=204),
    ("POST", "/group/{groupId}/members"): lambda a: Request(
        {"groupId": a.new_group()}, body={"userIds": [a.users[1], a.users[2]]}
    ),
    ("GET", "/groups"): lambda a: Request(query={"pageSize": 1}),
    ("GET", "/user"): lambda a: Request(query={"departments[]": [a.departments[1]]}),
    ("POST", "/user"): lambda a: Request(
        body={
            "departmentId": a.departments[1],
            "fields": {
                "login": f"n{uuid.uuid4().hex[:8]}",
                "email": f"n{uuid.uuid4().hex[:8]}@conf.test",
                "employee_id": f"N{uuid.uuid4().hex[:8]}",
                "first_name": "Nina",
            },
            "groupIds": [a.groups[0]],
        },
        status=201,
    ),
    ("GET", "/user/{userId}"): lambda a: Request({"userId": a.users[-1]}),
    ("POST", "/user/{userId}"): lambda a: Request(
        {"userId": a.new_user()},
        body={"departmentId": a.departments[2], "fields": {"job_title": "Engineer"}},
    ),
    ("DELETE", "/user/{userId}"): lambda a: Request({"userId": a.new_user()}, status=204),
    ("POST", "/users/find_existing"): lambda a: Request(
        body={"userIds": [a.users[1], str(uuid.uuid4())]}
    ),
    ("GET", "/user/{userId}/v2"): lambda a: Request({"userId": a.users[-1]}),
    ("GET", "/user/v2"): lambda a: Request(query={"logins[]": [_login_of(a, a.users[-1])]}),
    ("GET", "/users"): lambda a: Request(query={"pageSize": 3}),
    ("GET", "/users/v2"): lambda a: Request(query={"pageSize": 3}),
    ("POST", "/users/v2"): lambda a: Request(body={"departments": [a.departments[1]]}),
    ("GET", "/user/profile/fields"): lambda a: Request(),
    ("POST", "/user/{userId}/password"): lambda a: Request(
        {"userId": a.new_user()}, body={"password": "Conformance-Pass-1"}
    ),
    ("POST", "/user/{userId}/status"): lambda a: Request(
        {"userId": a.new_user()}, body={"status": 3}
    ),
    ("POST", "/user/{userId}/subordination"): lambda a: Request(
        {"userId": a.new_user()},
        body={"subordination": {"subordinationType": "manual", "supervisorId": a.users[0]}},
        status=204,
    ),
    ("POST", "/user/{userId}/scheduled_deactivation"): lambda a: Request(
        {"userId": a.new_user()}, body={"date": _date(30)}
    ),
    ("DELETE", "/user/{userId}/scheduled_deactivation"): lambda a: Request(
        {"userId": a.new_user()}
    ),
    ("POST", "/user/{userId}/scheduled_termination"): lambda a: Request(
        {"userId": a.new_user()}, body={"date": _date(60)}
    ),
    ("DELETE", "/user/{userId}/scheduled_termination"): lambda a: Request({"userId": a.new_user()}),
    ("POST", "/user/{userId}/groups/remove"): lambda a: Request(
        {"userId": a.users[1]}, body={"groupIds": [a.new_group([a.users[1]])]}
    ),
    ("GET", "/user/{userId}/invitations"): lambda a: Request({"userId": _invited(a)}),
    ("POST", "/user/{userId}/invitation/resend"): lambda a: Request(
        {"userId": _invited(a)}, body={"channel": "email"}
    ),
    ("POST", "/user/{userId}/invitation/revoke"): lambda a: Request(
        {"userId": _invited(a)}, status=204
    ),
    ("GET", "/role"): lambda a: Request(),
    ("POST", "/users/activate"): lambda a: Request(body={"userIds": [a.new_user()]}),
    ("POST", "/users/deactivate"): lambda a: Request(body={"userIds": [a.new_user()]}),
    ("POST", "/users/terminate"): lambda a: Request(body={"userIds": [a.new_user()]}),
    ("POST", "/user/list"): lambda a: Request(body={"departments": [a.departments[1]]}),
    ("POST", "/users/work-leave-status"): lambda a: Request(
        body={
            "workLeaveStatuses": [
                {
                    "userId": a.new_user(),
                    "workLeaveReason": "OnVacation",
                    "startDate": _date(1),
                    "endDate": _date(10),
                }
            ]
        }
    ),
    ("POST", "/users/work-leave-status/delete"): lambda a: Request(
        body={"userIds": [a.new_user()]}
    ),
    ("POST", "/webhook/register"): lambda a: Request(
        body={
            "subscriberName": f"hook-{uuid.uuid4().hex[:8]}",
            "callbackUrl": "https://hooks.example.com/learndir",
            "secret": "s3cret",
        }
    ),
    ("POST", "/webhook/code/send"): lambda a: Request(body={"subscriberName": a.new_subscriber()}),
    ("POST", "/webhook/confirm"): lambda a: Request(
        body={"subscriberName": a.new_subscriber(code="123456"), "code": "123456"}
    ),
    ("POST", "/webhook/enable"): lambda a: Request(body={"subscriberName": a.new_subscriber()}),
    ("POST", "/webhook/disable"): lambda a: Request(body={"subscriberName": a.new_subscriber()}),
    ("POST", "/webhook/remove"): lambda a: Request(body={"subscriberName": a.new_subscriber()}),
    ("POST", "/webhook/settings/change"): lambda a: Request(
        body={"subscriberName": a.new_subscriber(), "callbackUrl": "https://other.example.com/"}
    ),
    ("POST", "/webhook/subscribe"): lambda a: Request(
        body={
            "subscriberName": a.new_subscriber(),
            "subscription": {
                "subscriptionType": "USER_UPDATED",
                "params": [{"name": "userIds", "value": [a.users[0]]}],
            },
        }
    ),
    ("POST", "/webhook/unsubscribe"): lambda a: Request(
        body={"subscriberName": a.new_subscriber(), "subscriptionType": "USER_UPDATED"}
    ),
    ("GET", "/webhook/subscription/list"): lambda a: Request(
        query={"subscriberName": _subscribed(a)}
    ),
    ("GET", "/webhook/subscriber/info"): lambda a: Request(
        query={"subscriberName": a.new_subscriber()}
    ),
    ("POST", "/webhook/replay"): lambda a: Request(
        body={"subscriberName": a.new_subscriber(), "since": "2026-01-01T00:00:00Z"}
    ),
    ("GET", "/api-keys"): lambda a: Request(),
    ("POST", "/api-keys"): lambda a: Request(body={"userId": a.users[1]}, status=201),
    ("DELETE", "/api-keys/{clientId}"): lambda a: Request({"clientId": a.new_key()}, status=204),
}


def _subscribed(api: Api) -> str:
    name = api.new_subscriber()
    subscription = {
        "subscriptionType": "USER_DELETED",
        "params": [{"name": "userIds", "value": api.users[:2]}],
    }
    api.post("/webhook/subscribe", {"subscriberName": name, "subscription": subscription})
    return name


def _operations() -> list[Any]:
    params = []
    for method, path in SUCCESS:
        variants = [False, True] if method == "POST" and path in CREATED_OBJECT else [False]
        for accept in (JSON, XML):
            for as_object in variants:
                label = f"{method} {path} {accept}" + (" X-Return-Object" if as_object else "")
                params.append(pytest.param(method, path, accept, as_object, id=label))
    return params


def _operations_of(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method != "parameters" and set(operation.get("tags", ())) & set(TAGS)
    }


def test_every_operation_has_a_success_request() -> None:
    assert _operations_of(RAW) == set(SUCCESS)


def test_every_vendor_operation_is_described() -> None:
    """learndir's document corrects the vendor's and adds to it, never drops an operation."""
    vendor = yaml.safe_load(VENDOR_SPEC_PATH.read_text())
    assert _operations_of(vendor) <= _operations_of(RAW)


def test_the_served_document_is_this_one(api: Api) -> None:
    served = api.client.get("/openapi.json")
    assert served.status_code == 200
    assert served.headers["content-type"] == "application/json"
    document = served.json()
    assert document["paths"] == json.loads(json.dumps(RAW["paths"]))
    assert [s["url"] for s in document["servers"]] == ["/", "/api/v2", "/index.php/api/v2"]


@pytest.mark.parametrize(("method", "path", "accept", "as_object"), _operations())
def test_success_path(api: Api, method: str, path: str, accept: str, as_object: bool) -> None:
    request = SUCCESS[(method, path)](api)
    if as_object:
        request.headers["X-Return-Object"] = "true"
    operation = SCHEMA[path][method]
    body = request.body
    media = "application/x-www-form-urlencoded" if path == "/api/v3/token" else accept
    if path == "/users/v2":
        media = XML
    case = operation.Case(
        path_parameters=request.path_parameters or None,
        query=request.query or None,
        headers=request.headers or None,
        body=body if body is not None else schemathesis.core.NOT_SET,
        media_type=media if body is not None else None,
    )
    headers = api.headers(accept) if path != "/api/v3/token" else {"Accept": accept}
    response = case.call(base_url=api.base_url, headers=headers, timeout=15)
    assert response.status_code == request.status, (
        method,
        path,
        response.status_code,
        response.text,
    )
    _validate(case, response, accept)
    problems = wire_problems(
        path, method, response.status_code, response.headers, response.content, accept == JSON
    )
    assert not problems, (method, path, response.text[:500], problems)


def test_errors_echoing_control_characters_stay_well_formed(api: Api) -> None:
    """A parameter name or path with characters XML cannot carry is echoed in the error; the
    XML answer replaces them instead of failing with a 500."""
    body = {"departmentId": api.root, "fields": {"bad\x01name": {"nested": 1}}}
    response = api.client.post("/user", json=body, headers=api.headers(XML))
    assert response.status_code == 400, response.text
    assert not wire_problems("/user", "POST", 400, response.headers, response.content, False)
    assert "bad\ufffdname" in response.text
    response = api.client.post("/user/%15/status", json={"status": 3}, headers=api.headers(XML))
    assert response.status_code in (400, 404), response.text
    assert not wire_problems(
        "/user/{userId}/status",
        "POST",
        response.status_code,
        response.headers,
        response.content,
        False,
    )
