"""python-scim's conformance checker (scim2-tester) against a real server, on SQLite and
PostgreSQL: discovery, then create, read, query, replace, PATCH add/replace/remove and delete
checks on every attribute the server publishes, with random values that must come back.

Run on the two example accounts: the demo (`make run`'s: a unique text field and a country
field, no seat limit) and acme (`learndir init`'s example in the README: required fields, a
birthdate and a phone field, a seat limit of 40)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

from learndir.db.engine import Database
from tests.api.scim.support import demo_spec, open_scim
from tests.support import Server, acme_spec

ACCOUNTS: dict[str, Callable[[], dict[str, Any]]] = {
    "demo": lambda: demo_spec(seatLimit=None),
    "acme": acme_spec,
}


@pytest.mark.parametrize("account", list(ACCOUNTS))
def test_every_check_of_scim2_tester_passes(db: Database, server: Server, account: str) -> None:
    scim = open_scim(db, server, ACCOUNTS[account]())
    http = httpx2.Client(
        base_url=str(scim.client.base_url),
        headers={"Authorization": f"Bearer {scim.token}"},
        timeout=60,
    )
    try:
        results = check_server(SyncSCIMClient(http))
    finally:
        http.close()
        scim.client.close()
    # Every check passes; none is skipped (a skip means something is not offered).
    failed = [
        f"{r.status.name} {r.resource_type or ''} {r.title}: {r.reason}"
        for r in results
        if r.status is not Status.SUCCESS
    ]
    assert not failed, "\n".join(failed)
    assert sum(r.status is Status.SUCCESS for r in results) > 100
