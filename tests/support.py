"""Test support: databases, running servers and ready-made accounts, all real components."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import yaml
from sqlalchemy import event, func, select

from learndir.core.accounts import AccountSpec, create_account
from learndir.core.auth import create_api_key, issue_token
from learndir.core.roles import RoleKind, account_roles
from learndir.db.engine import Database
from learndir.db.schema import (
    departments,
    group_members,
    groups,
    outbox,
    user_field_values,
    user_role_departments,
    user_roles,
    users,
)

ROOT = Path(__file__).resolve().parent.parent
ACTIVE = 1
UNTHROTTLED = {
    "LEARNDIR_SIGNIN_LOGIN_THRESHOLD": "1000000",
    "LEARNDIR_SIGNIN_ADDRESS_THRESHOLD": "1000000",
}
PG_ADMIN_URL = os.environ.get("LEARNDIR_TEST_PG", "postgresql://root@127.0.0.1:5432/postgres")


def postgres_available() -> bool:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@contextlib.contextmanager
def fresh_postgres_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for this test run, dropped afterwards."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None


def start_server(
    database_url: str, log_dir: Path, *, workers: int = 1, env: dict[str, str] | None = None
) -> Server:
    """`learndir serve` as its own process, as a user would run it. It does not lock sign-ins
    out unless `env` sets LEARNDIR_SIGNIN_* (tests/api/test_signin.py): the tests send wrong
    credentials from one address all session long to test the answers."""
    port = free_port()
    log_path = log_dir / f"server-{port}.log"
    process_env = {**os.environ, **UNTHROTTLED, **(env or {})}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "learndir",
            "serve",
            "--database-url",
            database_url,
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        env=process_env,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                return Server(base_url, process, log_path)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not become healthy: {log_path.read_text()[-3000:]}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()


def acme_spec(**overrides: Any) -> dict[str, Any]:
    """examples/acme.yaml under a unique URL, with optional top-level overrides."""
    data: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "acme.yaml").read_text())
    data["url"] = f"http://t-{uuid.uuid4().hex[:10]}.learn.test"
    data.update(overrides)
    return data


@dataclass
class World:
    """An account made from an account file, with ids by name and a token per actor."""

    db: Database
    account_id: str
    account_url: str
    root_id: str
    departments: dict[str, str]
    groups: dict[str, str]
    roles: dict[str, str]
    users: dict[str, str]
    tokens: dict[str, str] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)

    def token(self, login: str) -> str:
        if login not in self.tokens:
            key = create_api_key(self.db, self.account_url, login)
            self.tokens[login] = issue_token(
                self.db, key.client_id, key.client_secret, "client_credentials"
            ).access_token
        return self.tokens[login]

    def snapshot(self) -> dict[str, int]:
        """Row counts of users, departments and groups and what they hold in this account."""
        return account_snapshot(self.db, self.account_id)


def account_snapshot(db: Database, account_id: str) -> dict[str, int]:
    in_account = select(users.c.id).where(users.c.account_id == account_id)
    with db.read() as conn:

        def count(table: Any, condition: Any) -> int:
            return int(
                conn.execute(select(func.count()).select_from(table).where(condition)).scalar_one()
            )

        return {
            "users": count(users, users.c.account_id == account_id),
            "user_roles": count(user_roles, user_roles.c.user_id.in_(in_account)),
            "managed_departments": count(
                user_role_departments, user_role_departments.c.user_id.in_(in_account)
            ),
            "group_members": count(group_members, group_members.c.user_id.in_(in_account)),
            "field_values": count(user_field_values, user_field_values.c.user_id.in_(in_account)),
            "outbox": count(outbox, outbox.c.account_id == account_id),
            "active_users": count(
                users, (users.c.account_id == account_id) & (users.c.status == 1)
            ),
            "departments": count(departments, departments.c.account_id == account_id),
            "groups": count(groups, groups.c.account_id == account_id),
        }


def count_users(db: Database, account_id: str, login_prefix: str = "") -> int:
    """The account's users whose login starts with `login_prefix`."""
    with db.read() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(users)
                .where(users.c.account_id == account_id, users.c.login_key.startswith(login_prefix))
            ).scalar_one()
        )


def make_world(db: Database, spec: dict[str, Any]) -> World:
    created = create_account(db, AccountSpec.parse(spec))
    with db.read() as conn:
        dept_rows = conn.execute(
            select(departments.c.id, departments.c.code, departments.c.name).where(
                departments.c.account_id == created.account_id
            )
        ).all()
        group_rows = conn.execute(
            select(groups.c.id, groups.c.name).where(groups.c.account_id == created.account_id)
        ).all()
        role_list = account_roles(conn, created.account_id)
    depts = {(r.code or r.name): r.id for r in dept_rows}
    depts["root"] = created.root_department_id
    roles = {r.name if r.kind is RoleKind.CUSTOM else r.kind.value: r.id for r in role_list}
    passwords = {
        u["login"]: u["password"]
        for u in [spec["owner"], *spec.get("users", [])]
        if u.get("password")
    }
    return World(
        db=db,
        account_id=created.account_id,
        account_url=created.account_url,
        root_id=created.root_department_id,
        departments=depts,
        groups={r.name: r.id for r in group_rows},
        roles=roles,
        users=created.user_ids,
        passwords=passwords,
    )


@contextlib.contextmanager
def statements_sent(target: Any) -> Iterator[list[str]]:
    """The SQL statements sent through `target` (an engine or a connection) while the block
    runs, as the driver receives them."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(str(args[2]))

    event.listen(target, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(target, "before_cursor_execute", record)
