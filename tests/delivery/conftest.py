"""Delivery tests run the worker against a database of their own (per module and backend):
the worker delivers every due message in its database, so no other test's rows may be there."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from sqlalchemy import delete, select, update

from learndir.core.auth import authenticate_token
from learndir.core.common import utcnow
from learndir.core.users.commands import AddUser, parse_command
from learndir.core.users.service import add_user
from learndir.db.engine import Database
from learndir.db.schema import outbox
from learndir.delivery.worker import Worker
from learndir.settings import Settings
from tests.conftest import BACKENDS, migrated_database
from tests.receivers import SmtpServer, _Collect
from tests.support import World, make_world

ACCOUNT_NAME = "Acme Ünïcode & Co"
PUBLIC_URL = "https://dir.example.test"


@pytest.fixture(scope="module", params=BACKENDS)
def delivery_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, _pg_ok: bool
) -> Iterator[str]:
    yield from migrated_database(request.param, tmp_path_factory, _pg_ok, "learndir_delivery")


@pytest.fixture(scope="module")
def ddb(delivery_url: str) -> Iterator[Database]:
    database = Database(delivery_url)
    yield database
    database.dispose()


@pytest.fixture(scope="module")
def account(ddb: Database) -> World:
    spec = {
        "url": f"http://d-{uuid.uuid4().hex[:10]}.learn.test",
        "name": ACCOUNT_NAME,
        "owner": {"login": "owner", "email": "owner@acme.test", "password": "Owner-Pass-1"},
        "departments": [{"name": "Sales", "code": "sales"}],
    }
    return make_world(ddb, spec)


@pytest.fixture(autouse=True)
def _empty_outbox(request: pytest.FixtureRequest) -> None:
    """Each test starts with an empty outbox in its module's database."""
    if "ddb" in request.fixturenames:
        database: Database = request.getfixturevalue("ddb")
        with database.write() as conn:
            conn.execute(delete(outbox))


def invite(
    world: World,
    count: int = 1,
    *,
    password: str | None = None,
    sms: str | None = None,
    email: bool = True,
    message: str = "Welcome aboard!",
) -> list[str]:
    """Adds `count` users through the core with invitations; returns their e-mail addresses
    (or logins, for SMS-only users)."""
    owner = authenticate_token(world.db, world.token("owner"))
    addresses = []
    for _ in range(count):
        login = f"u{uuid.uuid4().hex[:10]}"
        address = f"{login}@example.com"
        body: dict[str, Any] = {
            "login": login,
            "departmentId": world.root_id,
            "fields": {"email": address},
            "sendLoginEmail": email,
            "invitationMessage": message,
        }
        if password:
            body["password"] = password
        if sms:
            body["fields"]["phone"] = sms
            body["sendLoginSMS"] = True
            body["invitationSMSMessage"] = f"SMS: {message}"
        add_user(world.db, owner, parse_command(AddUser, body))
        addresses.append(address)
    return addresses


def rows(db: Database) -> list[Any]:
    with db.read() as conn:
        return list(conn.execute(select(outbox).order_by(outbox.c.created_at)).all())


def make_all_due(db: Database) -> None:
    """Skips the back-off wait of pending messages (what the clock would do in 30 s)."""
    with db.write() as conn:
        conn.execute(
            update(outbox).where(outbox.c.status == "pending").values(next_attempt_at=utcnow())
        )


def wait_until(condition: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or condition}")


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def settings(url: str, **values: Any) -> Settings:
    base: dict[str, Any] = {
        "database_url": url,
        "public_url": PUBLIC_URL,
        "worker_poll_seconds": 0.05,
        "scheduler_interval_seconds": 0,
    }
    return Settings(**{**base, **values})


def smtp_settings(server: SmtpServer) -> dict[str, Any]:
    return {
        "smtp_host": "127.0.0.1",
        "smtp_port": server.port,
        "smtp_security": "none",
        "mail_from": "learndir@example.com",
    }


@pytest.fixture
def start_worker() -> Iterator[Callable[[Database, Settings], Worker]]:
    """Starts in-process workers (threads) and stops them after the test."""
    started: list[Worker] = []

    def start(db: Database, config: Settings) -> Worker:
        worker = Worker.for_settings(db, config)
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@dataclass
class WorkerProcess:
    """`learndir worker` as its own process, as an operator runs it."""

    database_url: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "learndir", "worker", "--database-url", self.database_url],
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(30)


@pytest.fixture
def worker_processes(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    made: list[WorkerProcess] = []

    def make(database_url: str, env: dict[str, str]) -> WorkerProcess:
        proc = WorkerProcess(database_url, tmp_path / f"worker-{len(made)}.log", env)
        proc.start()
        made.append(proc)
        return proc

    yield make
    for proc in made:
        if proc.process is not None and proc.process.poll() is None:
            proc.process.kill()
            proc.process.wait(10)


def hours_ago(hours: float) -> datetime:
    return utcnow() - timedelta(hours=hours)


class _Scripted(_Collect):
    def __init__(self, mailbox: ScriptedSmtpServer) -> None:
        super().__init__(mailbox)
        self._script = mailbox

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address in self._script.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self._script.delay)
        return await super().handle_DATA(server, session, envelope)


class ScriptedSmtpServer(SmtpServer):
    """Refuses the recipients in `refuse` for good (550) and takes `delay` seconds to accept
    each message."""

    def __init__(self, delay: float = 0.0, login: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.refuse: set[str] = set()
        self.delay = delay
        # With a login, mail is accepted only after AUTH with it (no TLS on loopback).
        self.login = login

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        given = (auth_data.login.decode(), auth_data.password.decode())
        return AuthResult(success=given == self.login, handled=False)

    def start(self) -> None:
        auth: dict[str, Any] = {}
        if self.login is not None:
            auth = {
                "authenticator": self._authenticate,
                "auth_required": True,
                "auth_require_tls": False,
            }
        self._controller = Controller(_Scripted(self), hostname="127.0.0.1", port=self.port, **auth)
        self._controller.start()
