"""python-scim's conformance checker (scim2-tester) against a real server, on SQLite and
PostgreSQL: discovery, then create, read, query, replace, PATCH add/replace/remove and delete
checks on every attribute the server publishes, with random values that must come back."""

from __future__ import annotations

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

from tests.api.scim.support import Scim, scim  # noqa: F401


def test_every_check_of_scim2_tester_passes(scim: Scim) -> None:  # noqa: F811
    http = httpx2.Client(
        base_url=str(scim.client.base_url),
        headers={"Authorization": f"Bearer {scim.token}"},
        timeout=60,
    )
    client = SyncSCIMClient(http)
    results = check_server(client)
    failed = [
        f"{r.resource_type or ''} {r.title}: {r.reason}"
        for r in results
        if r.status not in (Status.SUCCESS, Status.SKIPPED)
    ]
    assert not failed, "\n".join(failed)
    assert sum(r.status is Status.SUCCESS for r in results) > 100
