"""The console's people list at scale: the core's search (core.users.search) and a person's
reads, timed on an account of N users (200,000 by default) whose tables were never analysed
(a fresh SQLite file or PostgreSQL database; nothing here runs ANALYZE, and the test server's
autovacuum is off).

    PYTHONPATH=src .venv/bin/python bench/people_search.py [--users N] [--database postgres]

Prints the median and the slowest of a few runs of each read, in milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import yaml
from sqlalchemy import func, insert, select

from learndir.core import console_sessions, departments, groups, roles
from learndir.core.accounts import AccountSpec, create_account
from learndir.core.users.changes import INACTIVE
from learndir.core.users.queries import get_user
from learndir.core.users.search import PeopleCriteria, search_users
from learndir.db.engine import Database
from learndir.db.migrate import upgrade_database
from learndir.db.schema import group_members, user_roles, users

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgresql://root@127.0.0.1:5432/postgres"
FIRST = ("anna", "bert", "carl", "dora", "emil", "frida", "gustav", "hanna", "ivar", "jonna")
LAST = ("berg", "anders", "nilsson", "lund", "roth", "strand", "ek", "holm", "sjö", "dahl")


@contextmanager
def database(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/people.db"
        return
    name = f"learndir_people_bench_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fill(db: Database, account_id: str, ids: dict[str, str], n: int) -> None:
    with db.read() as conn:
        added_at = conn.execute(select(func.max(users.c.added_at))).scalar_one()
    depts = [ids["sales"], ids["sales-eu"], ids["eng"]]
    for start in range(0, n, 20_000):
        rows = [
            {
                "id": str(uuid.UUID(int=i + 1)),
                "account_id": account_id,
                "department_id": depts[i % 3],
                "login": f"user{i}",
                "login_key": f"user{i}",
                "email": f"user{i}@bench.test",
                "email_key": f"user{i}@bench.test",
                "first_name": FIRST[i % 10].title(),
                "last_name": f"{LAST[(i // 10) % 10].title()}{i}",
                "status": INACTIVE if i % 1000 == 0 else 1,
                "added_at": added_at,
            }
            for i in range(start, min(n, start + 20_000))
        ]
        with db.write() as conn:
            conn.execute(insert(users), rows)
            conn.execute(
                insert(user_roles), [{"user_id": r["id"], "role_id": ids["learner"]} for r in rows]
            )
            conn.execute(
                insert(group_members),
                [
                    {"group_id": ids["Newcomers"], "user_id": r["id"]}
                    for i, r in enumerate(rows)
                    if i % 500 == 0
                ],
            )


def timed(call: Callable[[], Any], runs: int = 7) -> tuple[float, float]:
    call()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args(argv)
    with database(args.database) as url:
        upgrade_database(url)
        db = Database(url)
        spec: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "demo.yaml").read_text())
        spec["url"] = f"http://bench-{uuid.uuid4().hex[:8]}.learn.test"
        created = create_account(db, AccountSpec.parse(spec))
        actor = console_sessions.sign_in(db, spec["url"], "owner", "Demo-Owner-1")[1].actor
        admin = console_sessions.sign_in(db, spec["url"], "sales.admin", "Sales-Pass-1")[1].actor
        ids = {d.code or d.name: d.id for d in departments.list_departments(db, actor)}
        ids.update({g.name: g.id for g in groups.list_groups(db, actor)})
        ids.update({r.kind.value: r.id for r in roles.list_roles(db, actor)})
        started = time.perf_counter()
        fill(db, created.account_id, ids, args.users)
        print(f"{args.users} users in {time.perf_counter() - started:.0f} s ({args.database})")
        middle = str(uuid.UUID(int=args.users // 2))
        cases: dict[str, Callable[[], Any]] = {
            "first page": lambda: search_users(db, actor, PeopleCriteria()),
            "a page in the middle": lambda: search_users(db, actor, PeopleCriteria(), middle),
            "text 'u' (capped)": lambda: search_users(db, actor, PeopleCriteria(text="u")),
            "text 'user1234'": lambda: search_users(db, actor, PeopleCriteria(text="user1234")),
            "text 'fri'": lambda: search_users(db, actor, PeopleCriteria(text="fri")),
            "text 'frida lund'": lambda: search_users(db, actor, PeopleCriteria(text="frida lund")),
            "status inactive": lambda: search_users(db, actor, PeopleCriteria(status=INACTIVE)),
            "department sales (with sub)": lambda: search_users(
                db, actor, PeopleCriteria(department_id=ids["sales"])
            ),
            "department eng only": lambda: search_users(
                db, actor, PeopleCriteria(department_id=ids["eng"], with_subdepartments=False)
            ),
            "group Newcomers": lambda: search_users(
                db, actor, PeopleCriteria(group_id=ids["Newcomers"])
            ),
            "role department administrator": lambda: search_users(
                db, actor, PeopleCriteria(role_id=ids["department_administrator"])
            ),
            "sales.admin's first page": lambda: search_users(db, admin, PeopleCriteria()),
            "one person": lambda: get_user(db, actor, middle),
        }
        for name, call in cases.items():
            median, slowest = timed(call)
            print(f"{name:32} median {median:7.1f} ms   slowest {slowest:7.1f} ms")
        db.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
