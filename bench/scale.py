"""addUser latency with 1,000 and with 200,000 users already in the account.

For each database: a fresh account, users seeded straight into the schema up to each size
(bulk INSERTs of users and their learner role, account_seats.active_users kept in step; far
faster than the API), then through the API a warm-up and a fixed number of addUser requests
from 1 client (sequential) and from 32 clients. The latency should not grow with the account,
and nothing here gathers planner statistics (no ANALYZE; autovacuum is off on the benchmark
server): the state of a fresh or fast-growing account.

    .venv/bin/python bench/scale.py                            # SQLite and PostgreSQL
    .venv/bin/python bench/scale.py --db sqlite --sizes 1000 50000 --sequential 500
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, insert, select, update

from harness import (
    DEFAULT_POSTGRES_URL,
    DEFAULT_WORKERS,
    TRANSPORTS,
    LoadResult,
    UserCounter,
    code_version,
    fresh_database,
    init_account,
    log,
    machine_summary,
    markdown_table,
    measured_load,
    quiet_load,
    running_server,
    stop_cleanly_on_sigterm,
)
from learndir.core.common import fold, new_id, utcnow
from learndir.db.engine import nullpool_engine
from learndir.db.schema import account_seats, departments, roles, user_roles, users

BATCH = 10_000
HEADER = [
    "db",
    "users before",
    "clients",
    "requests",
    "errors",
    "users/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "max ms",
    "other CPU",
    "steal",
]


def seed_users(engine: Engine, account_id: str, target: int) -> int:
    """Adds learners straight into the schema until the account has `target` users; returns how
    many were added."""
    with engine.connect() as conn:
        learner_role = conn.execute(
            select(roles.c.id).where(roles.c.account_id == account_id, roles.c.kind == "learner")
        ).scalar_one()
        department_ids = list(
            conn.execute(
                select(departments.c.id).where(departments.c.account_id == account_id)
            ).scalars()
        )
        current = conn.execute(
            select(func.count()).select_from(users).where(users.c.account_id == account_id)
        ).scalar_one()
    missing = max(0, target - current)
    prefix = f"seed{secrets.token_hex(3)}"
    added = 0
    while added < missing:
        size = min(BATCH, missing - added)
        now = utcnow()
        rows, role_rows = [], []
        for n in range(added, added + size):
            user_id = new_id()
            login = f"{prefix}.{n}"
            email = f"{login}@seed.bench.test"
            rows.append(
                {
                    "id": user_id,
                    "account_id": account_id,
                    "department_id": department_ids[n % len(department_ids)],
                    "login": login,
                    "login_key": fold(login),
                    "email": email,
                    "email_key": fold(email),
                    "first_name": None,
                    "last_name": None,
                    "job_title": None,
                    "phone": None,
                    "password_hash": None,
                    "status": 1,
                    "added_at": now,
                    "added_by": None,
                }
            )
            role_rows.append({"user_id": user_id, "role_id": learner_role})
        with engine.begin() as conn:
            conn.execute(insert(users), rows)
            conn.execute(insert(user_roles), role_rows)
            conn.execute(
                update(account_seats)
                .where(account_seats.c.account_id == account_id)
                .values(active_users=account_seats.c.active_users + size)
            )
        added += size
    if engine.dialect.name == "sqlite":
        # Users that arrive over months are checkpointed as they come. Copy the seed's WAL into
        # the database now, so the server's checkpointer does not do it during the measurement.
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    return missing


def measure(args: argparse.Namespace, db: str) -> list[tuple[int, int, LoadResult]]:
    """(users before, clients, result) for each size and client count."""
    found: list[tuple[int, int, LoadResult]] = []
    workers = args.workers or DEFAULT_WORKERS[db]
    with fresh_database(db, args.postgres_url) as url:
        account = init_account(url)
        account_id, root = account["accountId"], account["rootDepartmentId"]
        engine = nullpool_engine(url)
        counter = UserCounter(url, account_id)
        log_path = Path(tempfile.mkstemp(prefix=f"learndir-scale-{db}-", suffix=".log")[1])
        log(f"{db}, {workers} worker(s): server log {log_path}")
        try:
            with running_server(url, workers, log_path, args.log_level) as server:
                for size in sorted(args.sizes):
                    started = time.monotonic()
                    added = seed_users(engine, account_id, size)
                    log(f"  seeded {added} users in {time.monotonic() - started:.1f} s")
                    token = server.token(account["clientId"], account["clientSecret"])
                    common: dict[str, Any] = {
                        "transport": args.transport,
                        "token": token,
                        "department_id": root,
                    }
                    measured_load(
                        server,
                        counter,
                        prefix=f"w{secrets.token_hex(4)}",
                        clients=8,
                        max_responses=args.warmup,
                        **common,
                    )
                    for clients, requests in (
                        (1, args.sequential),
                        (args.clients, args.concurrent),
                    ):
                        result = quiet_load(
                            server,
                            counter,
                            patience=args.patience,
                            clients=clients,
                            max_responses=requests,
                            **common,
                        )
                        before = result.users_before or 0
                        found.append((before, clients, result))
                        log(
                            f"  {before} users, {clients} clients: p50 {result.p50_ms:.1f} ms, "
                            f"p99 {result.p99_ms:.1f} ms, {result.users_per_s:.0f} users/s"
                        )
        finally:
            counter.close()
            engine.dispose()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--db", nargs="+", choices=["sqlite", "postgres"], default=["sqlite", "postgres"]
    )
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=int,
        default=[1_000, 200_000],
        help="users in the account before each measurement",
    )
    parser.add_argument("--transport", choices=TRANSPORTS, default="rest-json")
    parser.add_argument(
        "--sequential", type=int, default=2_000, help="requests from 1 client at each size"
    )
    parser.add_argument("--clients", type=int, default=32, help="clients of the concurrent run")
    parser.add_argument(
        "--concurrent", type=int, default=4_000, help="requests of the concurrent run at each size"
    )
    parser.add_argument("--warmup", type=int, default=300, help="warm-up requests at each size")
    parser.add_argument("--workers", type=int, help=f"server processes (default {DEFAULT_WORKERS})")
    parser.add_argument("--log-level", default="INFO", help="the server's LEARNDIR_LOG_LEVEL")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument(
        "--patience",
        type=float,
        default=120.0,
        help="seconds to wait before each run for the CPU to be idle",
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args(argv)
    stop_cleanly_on_sigterm()

    version = code_version()
    rows, raw, problems, noisy = [], [], [], []
    for db in args.db:
        for before, clients, r in measure(args, db):
            rows.append(
                [
                    db,
                    f"{before:,}",
                    str(clients),
                    str(r.responses),
                    str(r.errors),
                    f"{r.users_per_s:.0f}",
                    f"{r.p50_ms:.1f}",
                    f"{r.p90_ms:.1f}",
                    f"{r.p99_ms:.1f}",
                    f"{r.max_ms:.1f}",
                    f"{r.cpu.other:.2f}" if r.cpu else "?",
                    f"{r.cpu.steal:.2f}" if r.cpu else "?",
                ]
            )
            raw.append(
                {
                    "db": db,
                    "users_before": before,
                    "clients": clients,
                    "p50_ms": r.p50_ms,
                    "p90_ms": r.p90_ms,
                    "p99_ms": r.p99_ms,
                    "max_ms": r.max_ms,
                    "users_per_s": r.users_per_s,
                    "ok": r.ok,
                    "errors": r.errors,
                    "created": r.created,
                    "valid": r.valid,
                    "cpu": r.cpu.__dict__ if r.cpu else None,
                    "attempts": r.attempts,
                }
            )
            label = f"{db}/{before} users/{clients} clients"
            problems.extend(f"{label}: {p}" for p in r.problems())
            if r.noisy and r.cpu:
                noisy.append(f"{label}: other processes took {r.cpu.other:.2f} cores")
    print(f"learndir: src/ as of commit {version}\n")
    print(markdown_table(HEADER, rows))
    if code_version() != version:
        problems.append(f"the code changed during the run ({version} -> {code_version()})")
    if problems:
        print("\nINVALID RUNS:")
        for problem in problems:
            print(f"- {problem}")
    if noisy:
        print("\nNOISY RUNS (other processes used the CPU):")
        for problem in noisy:
            print(f"- {problem}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"machine": machine_summary(), "argv": sys.argv, "results": raw}, indent=2)
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
