"""The worker as operators run it: `learndir worker` processes (killed mid-batch, two on one
PostgreSQL database) and `learndir serve` delivering on its own."""

from __future__ import annotations

import collections
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from learndir.db.engine import Database
from tests.delivery.conftest import (
    ScriptedSmtpServer,
    WorkerProcess,
    invite,
    rows,
    wait_until,
)
from tests.receivers import SmtpServer
from tests.support import World, start_server, stop_server
from tests.transports import Auth, RestJson, RestXml, Soap

MakeWorker = Callable[[str, dict[str, str]], WorkerProcess]


def worker_env(server: SmtpServer, **extra: str) -> dict[str, str]:
    return {**server.env(), "LEARNDIR_WORKER_POLL_SECONDS": "0.05", **extra}


def test_a_worker_killed_mid_batch_and_restarted_loses_nothing(
    ddb: Database, account: World, worker_processes: MakeWorker
) -> None:
    smtp = ScriptedSmtpServer(delay=0.02)
    smtp.start()
    try:
        addresses = invite(account, 200)
        env = worker_env(
            smtp,
            LEARNDIR_WORKER_BATCH_SIZE="40",
            LEARNDIR_WORKER_SENDERS="2",
            LEARNDIR_WORKER_LEASE_SECONDS="3",
        )
        first = worker_processes(ddb.url, env)
        wait_until(lambda: len(smtp.mails) >= 30, what="the first worker to be mid-way")
        first.kill()
        killed_at = len(smtp.mails)
        assert killed_at < 200
        worker_processes(ddb.url, env)
        wait_until(
            lambda: all(r.status == "sent" for r in rows(ddb)), timeout=60, what="every message"
        )
    finally:
        smtp.stop()
    received = collections.Counter(m.recipients[0] for m in smtp.mails)
    assert set(received) == set(addresses)
    repeated = [address for address, n in received.items() if n > 1]
    # Only the killed worker's batch in hand can be sent twice, and with one Message-ID.
    assert len(repeated) <= 40
    for address in repeated:
        assert len({m.message["Message-ID"] for m in smtp.to(address)}) == 1
    assert max(received.values()) <= 2


def test_two_workers_on_one_postgresql_database_send_each_message_once(
    ddb: Database, account: World, smtp_server: SmtpServer, worker_processes: MakeWorker
) -> None:
    if ddb.is_sqlite:
        pytest.skip("several delivering workers share a PostgreSQL database only")
    addresses = invite(account, 600)
    env = worker_env(smtp_server, LEARNDIR_WORKER_BATCH_SIZE="25")
    workers = [worker_processes(ddb.url, env) for _ in range(2)]
    wait_until(
        lambda: all(r.status == "sent" for r in rows(ddb)), timeout=120, what="every message"
    )
    received = collections.Counter(m.recipients[0] for m in smtp_server.mails)
    assert received == collections.Counter(addresses)
    # Both did part of the work.
    claimers = collections.Counter(r.claimed_by.split(":")[1] for r in rows(ddb))
    assert len(claimers) == 2, claimers
    for worker in workers:
        assert worker.terminate() == 0


def test_on_sqlite_one_of_two_workers_delivers_and_the_other_takes_over(
    ddb: Database, account: World, smtp_server: SmtpServer, worker_processes: MakeWorker
) -> None:
    if not ddb.is_sqlite:
        pytest.skip("on PostgreSQL every worker delivers")
    env = worker_env(smtp_server)
    first, second = worker_processes(ddb.url, env), worker_processes(ddb.url, env)
    invite(account, 20)
    wait_until(lambda: all(r.status == "sent" for r in rows(ddb)), what="the first messages")
    [holder] = {r.claimed_by.split(":")[1] for r in rows(ddb)}
    active, idle = (first, second) if str(first.process.pid) == holder else (second, first)
    assert active.terminate() == 0
    invite(account, 5)
    wait_until(lambda: all(r.status == "sent" for r in rows(ddb)), what="the later messages")
    assert {r.claimed_by.split(":")[1] for r in rows(ddb)} == {holder, str(idle.process.pid)}
    assert len(smtp_server.mails) == 25


def test_sigterm_stops_a_worker_cleanly(
    ddb: Database, smtp_server: SmtpServer, worker_processes: MakeWorker
) -> None:
    worker = worker_processes(ddb.url, worker_env(smtp_server))
    wait_until(lambda: "started" in worker.log_path.read_text(), what="the worker to start")
    assert worker.terminate() == 0
    assert "stopped" in worker.log_path.read_text()


def add_user_over_rest(base_url: str, world: World, **body: object) -> httpx.Response:
    login = f"r{uuid.uuid4().hex[:10]}"
    payload = {
        "departmentId": world.root_id,
        "fields": {"login": login, "email": f"{login}@example.com"},
        **body,
    }
    return httpx.post(
        f"{base_url}/user",
        json=payload,
        headers={
            "Authorization": f"Bearer {world.token('owner')}",
            "Accept": "application/json",
        },
        timeout=30,
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_delivers_invitations_on_its_own(
    ddb: Database, account: World, smtp_server: SmtpServer, tmp_path: Path, workers: int
) -> None:
    server = start_server(ddb.url, tmp_path, workers=workers, env=worker_env(smtp_server))
    try:
        created = [
            add_user_over_rest(server.base_url, account, sendLoginEmail=True) for _ in range(10)
        ]
        assert all(r.status_code == 201 for r in created), [r.text for r in created]
        wait_until(lambda: len(smtp_server.mails) == 10, what="ten invitations")
        wait_until(lambda: all(r.status == "sent" for r in rows(ddb)))
        health = httpx.get(f"{server.base_url}/health").json()
        assert health["status"] == "ok"
        assert health["outboxBacklog"] == 0
        assert health["outboxOldestPendingSeconds"] is None
    finally:
        stop_server(server)
    assert len({m.recipients[0] for m in smtp_server.mails}) == 10


def test_health_reports_the_backlog(ddb: Database, account: World, tmp_path: Path) -> None:
    server = start_server(ddb.url, tmp_path)  # no SMTP settings: messages wait
    try:
        invite(account, 3)
        health = httpx.get(f"{server.base_url}/health").json()
        assert health["outboxBacklog"] == 3
        assert 0 <= health["outboxOldestPendingSeconds"] < 60
    finally:
        stop_server(server)


def test_every_interface_s_invitation_arrives_once(
    ddb: Database, account: World, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """SOAP in both generations, REST XML and REST JSON through a running `learndir serve`."""
    server = start_server(ddb.url, tmp_path, env=worker_env(smtp_server))
    token = Auth(token=account.token("owner"))
    credentials = Auth(
        account_url=account.account_url, login="owner", password=account.passwords["owner"]
    )
    calls = [
        (Soap(server.base_url), credentials, {}),  # the older generation invites by default
        (Soap(server.base_url), token, {"sendLoginEmail": True}),
        (RestXml(server.base_url), token, {"sendLoginEmail": True}),
        (RestJson(server.base_url), credentials, {"sendLoginEmail": True}),
    ]
    expected = {}
    try:
        for transport, auth, extra in calls:
            login = f"{transport.name}{uuid.uuid4().hex[:8]}"
            text = f"Hello {login}, from {transport.name}"
            params = {
                "login": login,
                "email": f"{login}@example.com",
                "departmentId": account.root_id,
                "invitationMessage": text,
                **extra,
            }
            outcome = transport.add_user(params, auth)
            assert outcome.ok, outcome
            expected[f"{login}@example.com"] = (login, text)
        wait_until(lambda: len(smtp_server.mails) >= len(expected), what="every invitation")
        wait_until(lambda: all(r.status == "sent" for r in rows(ddb)))
    finally:
        stop_server(server)
    assert len(smtp_server.mails) == len(expected)
    for address, (login, text) in expected.items():
        [mail] = smtp_server.to(address)
        body = mail.message.get_body(("plain",)).get_content()
        assert text in body and f"Your login: {login}" in body and "/invite/" in body


def test_serve_wakes_its_worker_when_it_queues_a_message(
    ddb: Database, account: World, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """With a poll of an hour, only the wake-up after addUser's commit can send the message."""
    env = worker_env(smtp_server, LEARNDIR_WORKER_POLL_SECONDS="3600")
    server = start_server(ddb.url, tmp_path, env=env)
    try:
        # The worker's first round ran at start; from now on it sleeps unless woken.
        wait_until(lambda: "started" in server.log_path.read_text(), what="the worker")
        for expected in (1, 2):
            response = add_user_over_rest(server.base_url, account, sendLoginEmail=True)
            assert response.status_code == 201, response.text
            wait_until(lambda: len(smtp_server.mails) == expected, timeout=15)  # noqa: B023
    finally:
        stop_server(server)
