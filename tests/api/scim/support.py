"""SCIM test support: an account with a SCIM token, and an HTTP client on /scim/v2 of a real
running server, for each database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select

from learndir.core.scim_tokens import create_scim_token
from learndir.db.engine import Database
from learndir.db.schema import departments, profile_fields, user_field_values, users
from tests.support import ROOT, Server, World, make_world

SCIM_JSON = "application/scim+json"
# The RFC's URNs, as a provider writes them.
USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
LEARNDIR = "urn:learndir:params:scim:schemas:extension:learndir:2.0:User"
LIST_URN = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH_URN = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


def unique(prefix: str) -> str:
    """A userName or group name no other test uses."""
    return f"{prefix}.{uuid.uuid4().hex[:8]}"


def patch_body(*operations: dict[str, Any]) -> dict[str, Any]:
    """A PatchOp request of `operations`."""
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


def demo_spec(**overrides: Any) -> dict[str, Any]:
    """The demo account (examples/demo.yaml) under a unique URL: what `make run` serves."""
    data: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "demo.yaml").read_text())
    data["url"] = f"http://scim-{uuid.uuid4().hex[:10]}.learn.test"
    data.update(overrides)
    return data


@dataclass
class Scim:
    """A provider's view of one account: its token and a client on the server's /scim/v2."""

    world: World
    token: str
    client: httpx.Client

    def as_token(self, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=str(self.client.base_url),
            headers={"Authorization": f"Bearer {token}", "Content-Type": SCIM_JSON},
            timeout=30,
        )

    def user(self, user_name: str, **extra: Any) -> dict[str, Any]:
        """Creates a user as Okta would and returns the created resource."""
        body = {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": user_name,
            "name": {"givenName": "Test", "familyName": "User"},
            "emails": [{"value": f"{user_name}@example.com", "type": "work", "primary": True}],
            "active": True,
            **extra,
        }
        response = self.client.post("/Users", json=body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created


def open_scim(db: Database, server: Server, spec: dict[str, Any], login: str = "owner") -> Scim:
    world = make_world(db, spec)
    token = create_scim_token(db, world.account_url, login).token
    client = httpx.Client(
        base_url=f"{server.base_url}/scim/v2",
        headers={"Authorization": f"Bearer {token}", "Content-Type": SCIM_JSON},
        timeout=60,
    )
    return Scim(world, token, client)


@pytest.fixture(scope="module")
def shared_scim(db: Database, server: Server) -> Iterator[Scim]:
    """One demo account for a whole module whose tests use their own userNames and groups:
    setting up an account per test would cost more than the tests."""
    opened = open_scim(db, server, demo_spec(seatLimit=None))
    yield opened
    opened.client.close()


def user_row(scim: Scim, user_id: str) -> Any:
    """The learndir `users` row behind a SCIM User (None once deleted)."""
    with scim.world.db.read() as conn:
        return conn.execute(select(users).where(users.c.id == user_id)).first()


def field_value(scim: Scim, user_id: str, name: str) -> str | None:
    """A custom profile field's value as learndir holds it."""
    with scim.world.db.read() as conn:
        return conn.execute(
            select(user_field_values.c.value)
            .join(profile_fields, profile_fields.c.id == user_field_values.c.field_id)
            .where(user_field_values.c.user_id == user_id, profile_fields.c.name == name)
        ).scalar()


def department_of(scim: Scim, user_id: str) -> Any:
    """The department row a user is in."""
    with scim.world.db.read() as conn:
        return conn.execute(
            select(departments)
            .join(users, users.c.department_id == departments.c.id)
            .where(users.c.id == user_id)
        ).first()
