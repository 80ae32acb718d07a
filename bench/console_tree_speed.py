"""The Departments and Groups pages of the console at 200,000 users: each page's time (target
< 200 ms) and the smart group form's live count, on SQLite and PostgreSQL with the planner's
statistics never gathered. Same set-up as bench/console_speed.py (bench/paging_account.yaml,
users seeded by bench/paging.py without ANALYZE), plus a smart group over Sales and below.

    .venv/bin/python bench/console_tree_speed.py                   # SQLite and PostgreSQL
    .venv/bin/python bench/console_tree_speed.py --db sqlite --users 200000 --repeat 10
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from harness import BENCH_DIR, fresh_database, init_account, log, running_server
from learndir.core import groups as core_groups
from learndir.core.console_sessions import sign_in
from learndir.core.users.commands import AddUser
from learndir.core.users.service import add_user
from learndir.db.engine import Database, nullpool_engine
from learndir.db.schema import departments
from learndir.db.schema import groups as groups_table
from paging import seed_users

ACCOUNT_FILE = BENCH_DIR / "paging_account.yaml"
OWNER = ("paging.owner", "Paging-Owner-1")
DEPT_ADMIN = ("sales.boss", "Sales-Boss-1")
TARGET_MS = 200.0


def _setup(url: str, account_id: str, account_url: str) -> dict[str, str]:
    db = Database(url)
    try:
        with db.read() as conn:
            sales = conn.execute(
                select(departments.c.id).where(
                    departments.c.account_id == account_id, departments.c.code == "sales"
                )
            ).scalar_one()
            newcomers = conn.execute(
                select(groups_table.c.id).where(
                    groups_table.c.account_id == account_id, groups_table.c.name == "Newcomers"
                )
            ).scalar_one()
        owner = sign_in(db, account_url, *OWNER)[1].actor
        rules = {"and": [{"or": [{"rule": {"attributeType": 1, "operator": 2, "value": sales}}]}]}
        smart = core_groups.create_smart_group(db, owner, "Sales and below", rules)
        add_user(
            db,
            owner,
            AddUser(
                login=DEPT_ADMIN[0],
                email="sales.boss@paging.test",
                password=DEPT_ADMIN[1],
                departmentId=sales,
                role="department_administrator",
                manageableDepartmentIds=[sales],
            ),
        )
    finally:
        db.dispose()
    return {"sales": sales, "group": newcomers, "smart": smart}


def _timed(client: httpx.Client, method: str, path: str, repeat: int, **kw: Any) -> dict[str, Any]:
    for _ in range(2):
        client.request(method, path, **kw)
    times: list[float] = []
    status = 0
    for _ in range(repeat):
        started = time.perf_counter()
        answer = client.request(method, path, **kw)
        times.append((time.perf_counter() - started) * 1000)
        status = answer.status_code
    times.sort()
    return {"path": path, "status": status, "p50": statistics.median(times), "max": times[-1]}


def measure(db_kind: str, users_wanted: int, repeat: int) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with fresh_database(db_kind) as url:
        created = init_account(url, ACCOUNT_FILE)
        account_id, account_url = created["accountId"], created["accountUrl"]
        log(f"{db_kind}: seeding {users_wanted:,} users (statistics never gathered)")
        engine = nullpool_engine(url)
        try:
            seed_users(engine, account_id, users_wanted, analyze=False)
        finally:
            engine.dispose()
        ids = _setup(url, account_id, account_url)
        log_path = Path(tempfile.mkdtemp(prefix="tree-bench-")) / "server.log"
        with running_server(url, 1, log_path) as server:
            client = httpx.Client(base_url=server.base_url, timeout=60)
            client.post(
                "/console/sign-in",
                data={"account": account_url, "login": OWNER[0], "password": OWNER[1]},
            )
            page = client.get("/console/groups").text
            csrf = re.search(r'data-csrf="([^"]+)"', page)
            token = csrf.group(1) if csrf else ""
            form = {
                "csrf": token,
                "join": "and",
                "attr": "department",
                "op": "2",
                "value": "Sales",
            }
            pages = [
                ("departments", "GET", "/console/departments", {}),
                ("a department", "GET", f"/console/departments/{ids['sales']}", {}),
                ("groups", "GET", "/console/groups", {}),
                ("a group", "GET", f"/console/groups/{ids['group']}", {}),
                ("a smart group", "GET", f"/console/groups/{ids['smart']}", {}),
                ("new smart group", "GET", "/console/groups/smart/new", {}),
                ("live count", "POST", "/console/groups/preview", {"data": form}),
            ]
            boss = httpx.Client(base_url=server.base_url, timeout=60)
            boss.post(
                "/console/sign-in",
                data={"account": account_url, "login": DEPT_ADMIN[0], "password": DEPT_ADMIN[1]},
            )
            scoped = [
                ("departments (subtree)", "GET", "/console/departments", {}),
                ("groups (subtree)", "GET", "/console/groups", {}),
                ("a group (subtree)", "GET", f"/console/groups/{ids['group']}", {}),
                ("a smart group (subtree)", "GET", f"/console/groups/{ids['smart']}", {}),
            ]
            for who, each in ((client, pages), (boss, scoped)):
                for name, method, path, kw in each:
                    row = _timed(who, method, path, repeat, **kw)
                    row.update(db=db_kind, what=name)
                    results.append(row)
                    log(
                        f"  {name}: p50 {row['p50']:.1f} ms, max {row['max']:.1f} ms "
                        f"({row['status']})"
                    )
            client.close()
            boss.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args(argv)
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    slow = []
    for kind in kinds:
        for row in measure(kind, args.users, args.repeat):
            if row["p50"] > TARGET_MS:
                slow.append(row)
    for row in slow:
        log(f"SLOW: {row['db']} {row['what']} p50 {row['p50']:.1f} ms")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
