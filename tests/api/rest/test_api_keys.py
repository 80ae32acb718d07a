"""learndir's /api-keys against a real `learndir serve`, on SQLite and PostgreSQL: who may list,
create and revoke keys, bad parameters, JSON and XML, and that a revoked key and its tokens stop
working at once (and are recorded in the audit trail)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from lxml import etree
from sqlalchemy import func, select

from learndir.core.auth import create_api_key
from learndir.db.engine import Database
from learndir.db.schema import access_tokens, api_keys, audit_log, users
from tests.support import Server, World, acme_spec, make_world

JSON = "application/json"


@pytest.fixture(scope="module")
def world(db: Database) -> World:
    return make_world(db, acme_spec())


def keys_call(
    server: Server,
    method: str,
    path: str = "",
    *,
    token: str | None = None,
    body: Any = None,
    accept: str = JSON,
    content: bytes | None = None,
    content_type: str | None = None,
) -> httpx.Response:
    headers = {"Accept": accept}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if content_type is not None:
        headers["Content-Type"] = content_type
    return httpx.request(
        method,
        f"{server.base_url}/api-keys{path}",
        headers=headers,
        json=body,
        content=content,
        timeout=30,
    )


def buy_token(server: Server, client_id: str, secret: str) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/api/v3/token",
        data={"client_id": client_id, "client_secret": secret, "grant_type": "client_credentials"},
        timeout=30,
    )


def works(server: Server, token: str) -> bool:
    answer = httpx.get(
        f"{server.base_url}/department",
        headers={"Authorization": f"Bearer {token}", "Accept": JSON},
        timeout=30,
    )
    assert answer.status_code in (200, 401), answer.text
    return answer.status_code == 200


def key_rows(db: Database, account_id: str) -> list[Any]:
    """The account's keys as a rejected call must leave them (last use aside)."""
    with db.read() as conn:
        return list(
            conn.execute(
                select(api_keys.c.client_id, api_keys.c.user_id, api_keys.c.revoked_at)
                .join(users, users.c.id == api_keys.c.user_id)
                .where(users.c.account_id == account_id)
                .order_by(api_keys.c.client_id)
            ).all()
        )


def audit_of(db: Database, client_id: str) -> list[Any]:
    with db.read() as conn:
        return list(
            conn.execute(
                select(audit_log).where(audit_log.c.target_id == client_id).order_by(audit_log.c.id)
            ).all()
        )


def test_owner_and_admin_list_the_accounts_keys_never_a_secret(
    server: Server, world: World
) -> None:
    for login in ("jane.doe", "owner", "admin"):
        world.token(login)  # a key of each, used once
    for login in ("owner", "admin"):
        answer = keys_call(server, "GET", token=world.token(login))
        assert answer.status_code == 200, answer.text
        listed = answer.json()
        by_login = {k["login"]: k for k in listed}
        assert {"owner", "admin", "jane.doe"} <= set(by_login)
        jane = by_login["jane.doe"]
        assert jane["userId"] == world.users["jane.doe"]
        assert jane["createdAt"].endswith("Z") and jane["lastUsedAt"].endswith("Z")
        assert "revokedAt" not in jane
        for key in listed:
            assert set(key) <= {
                "clientId",
                "userId",
                "login",
                "createdAt",
                "lastUsedAt",
                "revokedAt",
            }
        assert "secret" not in answer.text.lower()

    xml = keys_call(server, "GET", token=world.token("owner"), accept="application/xml")
    assert xml.status_code == 200
    root = etree.fromstring(xml.content)
    assert root.tag == "response"
    assert {e.findtext("login") for e in root.findall("apiKey")} >= {"owner", "jane.doe"}


@pytest.mark.parametrize("login", ["jane.doe", "sales.admin", "hr.partner"])
def test_others_get_permission_denied_and_change_nothing(
    server: Server, world: World, db: Database, login: str
) -> None:
    victim = create_api_key(db, world.account_url, "jane.doe")
    token = world.token(login)
    before = key_rows(db, world.account_id)
    for method, path, body in (
        ("GET", "", None),
        ("POST", "", {}),
        ("POST", "", {"userId": world.users["jane.doe"]}),
        ("DELETE", f"/{victim.client_id}", None),
    ):
        answer = keys_call(server, method, path, token=token, body=body)
        assert answer.status_code == 403, (method, answer.text)
        assert answer.json()["message"] == "Permission Denied"
    assert key_rows(db, world.account_id) == before


def test_unauthenticated(server: Server, world: World) -> None:
    for method, path in (("GET", ""), ("POST", ""), ("DELETE", "/0123456789abcdef")):
        answer = keys_call(server, method, path)
        assert answer.status_code == 401, answer.text
        assert answer.headers["WWW-Authenticate"] == "Bearer"


def test_create_for_yourself_shows_the_secret_once(server: Server, world: World) -> None:
    answer = keys_call(server, "POST", token=world.token("owner"))
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert set(created) == {"clientId", "clientSecret", "userId"}
    assert created["userId"] == world.users["owner"]
    issued = buy_token(server, created["clientId"], created["clientSecret"])
    assert issued.status_code == 200, issued.text
    assert works(server, issued.json()["access_token"])
    listed = keys_call(server, "GET", token=world.token("owner"))
    assert created["clientSecret"] not in listed.text
    assert created["clientId"] in listed.text


def test_admin_creates_for_a_user_in_xml(server: Server, world: World, db: Database) -> None:
    jane = world.users["jane.doe"]
    answer = keys_call(
        server,
        "POST",
        token=world.token("admin"),
        content=f"<request><userId>{jane}</userId></request>".encode(),
        content_type="application/xml",
        accept="application/xml",
    )
    assert answer.status_code == 201, answer.text
    root = etree.fromstring(answer.content)
    assert root.tag == "response" and root.findtext("userId") == jane
    client_id, secret = root.findtext("clientId"), root.findtext("clientSecret")
    assert client_id and secret
    token = buy_token(server, client_id, secret).json()["access_token"]
    me = httpx.get(
        f"{server.base_url}/user/{jane}",
        headers={"Authorization": f"Bearer {token}", "Accept": JSON},
        timeout=30,
    )
    assert me.status_code in (200, 403)  # acting as jane, with jane's rights
    created = audit_of(db, client_id)
    assert [r.operation for r in created] == ["API_KEY_CREATED"]
    assert created[0].actor_user_id == world.users["admin"]
    assert created[0].interface == "rest"
    assert secret not in created[0].changes
    fields = {c["field"]: c["after"] for c in json.loads(created[0].changes)}
    assert fields["clientId"] == client_id and fields["userId"] == jane


@pytest.mark.parametrize(
    ("login", "body", "status", "parameter"),
    [
        ("admin", {"userId": "owner"}, 404, "userId"),
        ("owner", {"userId": "5f0e3d36-0000-4000-8000-000000000000"}, 404, "userId"),
        ("owner", {"userId": "not-an-id"}, 404, "userId"),
        ("owner", {"userId": 42}, 400, "userId"),
        ("owner", {"userId": {"nested": "x"}}, 400, "userId"),
    ],
)
def test_create_bad_parameters_create_nothing(
    server: Server,
    world: World,
    db: Database,
    login: str,
    body: dict[str, Any],
    status: int,
    parameter: str,
) -> None:
    token = world.token(login)
    before = key_rows(db, world.account_id)
    answer = keys_call(server, "POST", token=token, body=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["parameter"] == parameter
    assert key_rows(db, world.account_id) == before


def test_admin_may_not_create_or_revoke_keys_of_the_owner(
    server: Server, world: World, db: Database
) -> None:
    owner_key = create_api_key(db, world.account_url, "owner")
    admin = world.token("admin")
    before = key_rows(db, world.account_id)
    made = keys_call(server, "POST", token=admin, body={"userId": world.users["owner"]})
    assert made.status_code == 403, made.text
    revoked = keys_call(server, "DELETE", f"/{owner_key.client_id}", token=admin)
    assert revoked.status_code == 403, revoked.text
    assert revoked.json()["message"] == "Permission Denied"
    assert key_rows(db, world.account_id) == before
    # The owner may do both.
    assert (
        keys_call(
            server, "DELETE", f"/{owner_key.client_id}", token=world.token("owner")
        ).status_code
        == 204
    )


def test_inactive_user_gets_no_key(server: Server, db: Database) -> None:
    other = make_world(db, acme_spec())
    owner = other.token("owner")
    jane = other.users["jane.doe"]
    status = httpx.post(
        f"{server.base_url}/user/{jane}/status",
        json={"status": 3},
        headers={"Authorization": f"Bearer {owner}", "Accept": JSON},
        timeout=30,
    )
    assert status.status_code == 200, status.text
    before = key_rows(db, other.account_id)
    answer = keys_call(server, "POST", token=owner, body={"userId": jane})
    assert answer.status_code == 400, answer.text
    assert answer.json()["parameter"] == "userId"
    assert key_rows(db, other.account_id) == before


def test_revoke_ends_the_key_and_its_tokens_at_once(
    server: Server, world: World, db: Database
) -> None:
    key = create_api_key(db, world.account_url, "sales.admin")
    tokens = [
        buy_token(server, key.client_id, key.client_secret).json()["access_token"] for _ in range(2)
    ]
    assert all(works(server, t) for t in tokens)
    owner = world.token("owner")

    answer = keys_call(server, "DELETE", f"/{key.client_id}", token=owner)
    assert answer.status_code == 204 and answer.content == b""
    assert not any(works(server, t) for t in tokens)
    with db.read() as conn:
        left = conn.execute(
            select(func.count())
            .select_from(access_tokens)
            .where(access_tokens.c.client_id == key.client_id)
        ).scalar_one()
    assert left == 0

    # A revoked key buys no token, with the same answer as an unknown key.
    refused = buy_token(server, key.client_id, key.client_secret)
    unknown = buy_token(server, "f" * 32, key.client_secret)
    assert refused.status_code == unknown.status_code == 401
    assert refused.content == unknown.content

    listed = {k["clientId"]: k for k in keys_call(server, "GET", token=owner).json()}
    assert listed[key.client_id]["revokedAt"].endswith("Z")

    # Revoking again changes nothing.
    again = keys_call(server, "DELETE", f"/{key.client_id}", token=owner)
    assert again.status_code == 204
    trail = audit_of(db, key.client_id)
    assert [r.operation for r in trail] == ["API_KEY_CREATED", "API_KEY_REVOKED"]
    revoked = trail[1]
    assert revoked.actor_user_id == world.users["owner"]
    assert revoked.actor_login == "owner"
    assert revoked.credential.startswith("key:") and " token:" in revoked.credential
    assert revoked.target_kind == "api_key"
    change = json.loads(revoked.changes)
    assert [c["field"] for c in change] == ["revokedAt"]
    assert change[0]["before"] is None and change[0]["after"].endswith("Z")


def test_revoke_unknown_or_other_accounts_key_is_404(
    server: Server, world: World, db: Database
) -> None:
    other = make_world(db, acme_spec())
    foreign = create_api_key(db, other.account_url, "owner")
    owner = world.token("owner")
    for client_id in (foreign.client_id, "0" * 32, "x" * 300, "caf%C3%A9"):
        answer = keys_call(server, "DELETE", f"/{client_id}", token=owner)
        assert answer.status_code == 404, (client_id, answer.text)
        assert answer.json()["parameter"] == "clientId"
    # A control character is refused by the one input rule before any lookup.
    answer = keys_call(server, "DELETE", "/%00", token=owner)
    assert answer.status_code == 400, answer.text
    assert answer.json()["parameter"] == "clientId"
    token = buy_token(server, foreign.client_id, foreign.client_secret)
    assert token.status_code == 200  # untouched


def test_admin_revokes_a_users_key(server: Server, world: World, db: Database) -> None:
    key = create_api_key(db, world.account_url, "jane.doe")
    answer = keys_call(server, "DELETE", f"/{key.client_id}", token=world.token("admin"))
    assert answer.status_code == 204, answer.text
    assert buy_token(server, key.client_id, key.client_secret).status_code == 401
