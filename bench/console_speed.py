"""The console's pages at 200,000 users: every page's server time (target < 200 ms) and the
people search as you type (target < 100 ms), on SQLite and PostgreSQL with the planner's
statistics never gathered.

For each database: a fresh account (bench/paging_account.yaml: a department tree, groups,
custom fields), users seeded straight into the schema (bench/paging.py, no ANALYZE), a smart
group over Sales and below, an account administrator and a department administrator signed in
through the console's own sign-in form, then each page requested `--repeat` times on a
keep-alive connection (after two warm-up requests) and the search fragment for a series of
prefixes, as the search box sends them while a person types. Times are measured by the client
over loopback: the server's time plus a few tenths of a millisecond.

    .venv/bin/python bench/console_speed.py                       # SQLite and PostgreSQL
    .venv/bin/python bench/console_speed.py --db sqlite --users 200000 --repeat 20
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from harness import (
    BENCH_DIR,
    code_version,
    fresh_database,
    init_account,
    log,
    machine_summary,
    markdown_table,
    running_server,
    stop_cleanly_on_sigterm,
)
from learndir.core.console_sessions import sign_in
from learndir.core.groups import create_smart_group
from learndir.core.users.commands import AddUser
from learndir.core.users.service import add_user
from learndir.db.engine import Database, nullpool_engine
from learndir.db.schema import departments, groups, users
from paging import seed_users

ACCOUNT_FILE = BENCH_DIR / "paging_account.yaml"
OWNER = ("paging.owner", "Paging-Owner-1")
DEPT_ADMIN = ("sales.boss", "Sales-Boss-1")
PAGE_TARGET_MS = 200.0
SEARCH_TARGET_MS = 100.0


def _ids(database_url: str, account_id: str) -> dict[str, str]:
    engine = nullpool_engine(database_url)
    try:
        with engine.connect() as conn:
            sales = conn.execute(
                select(departments.c.id).where(
                    departments.c.account_id == account_id, departments.c.code == "sales"
                )
            ).scalar_one()
            group = conn.execute(
                select(groups.c.id).where(
                    groups.c.account_id == account_id, groups.c.name == "Newcomers"
                )
            ).scalar_one()
            user = conn.execute(
                select(users.c.id, users.c.login, users.c.email, users.c.first_name)
                .where(users.c.account_id == account_id, users.c.login.like("pg%"))
                .order_by(users.c.id)
                .limit(1)
                .offset(1234)
            ).one()
    finally:
        engine.dispose()
    return {
        "sales": sales,
        "group": group,
        "user": user.id,
        "login": user.login,
        "email": user.email,
        "first_name": user.first_name or "",
    }


def _department_admin_and_smart_group(database_url: str, account_url: str, sales_id: str) -> str:
    """Adds the Sales department's administrator, and a smart group of Sales and below (its
    id returned)."""
    db = Database(database_url)
    try:
        owner = sign_in(db, account_url, *OWNER)[1].actor
        rules = {
            "and": [{"or": [{"rule": {"attributeType": 1, "operator": 2, "value": sales_id}}]}]
        }
        smart = create_smart_group(db, owner, "Sales and below", rules)
        add_user(
            db,
            owner,
            AddUser(
                login=DEPT_ADMIN[0],
                email="sales.boss@paging.test",
                password=DEPT_ADMIN[1],
                departmentId=sales_id,
                role="department_administrator",
                manageableDepartmentIds=[sales_id],
            ),
        )
    finally:
        db.dispose()
    return smart


def _signed_in(base_url: str, account_url: str, login: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=base_url, timeout=60)
    answer = client.post(
        "/console/sign-in",
        data={"account": account_url, "login": login, "password": password},
    )
    if answer.status_code != 303 or "learndir_console" not in client.cookies:
        raise RuntimeError(f"sign-in failed: {answer.status_code} {answer.text[:300]}")
    return client


def _timed(
    client: httpx.Client,
    path: str,
    repeat: int,
    fragment: bool = False,
    form: dict[str, str] | None = None,
) -> dict[str, Any]:
    """GET `path` (or POST `form` to it) `repeat` times after two warm-up requests."""
    headers = {"X-Fragment": "1"} if fragment else {}

    def request() -> httpx.Response:
        if form is not None:
            return client.post(path, data=form, headers=headers)
        return client.get(path, headers=headers)

    for _ in range(2):
        request()
    times: list[float] = []
    status = 0
    size = 0
    for _ in range(repeat):
        started = time.perf_counter()
        answer = request()
        times.append((time.perf_counter() - started) * 1000)
        status = answer.status_code
        size = len(answer.content)
    times.sort()
    return {
        "path": path,
        "status": status,
        "kb": size / 1024,
        "p50": statistics.median(times),
        "p95": times[min(len(times) - 1, round(0.95 * (len(times) - 1)))],
        "max": times[-1],
    }


def _typed(word: str) -> list[str]:
    """What the search box sends while a person types `word` (from the second character)."""
    return [word[:n] for n in range(2, len(word) + 1)]


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
        ids = _ids(url, account_id)
        smart = _department_admin_and_smart_group(url, account_url, ids["sales"])
        log_path = Path(tempfile.mkdtemp(prefix="console-bench-")) / "server.log"
        with running_server(url, 1, log_path) as server:
            owner = _signed_in(server.base_url, account_url, *OWNER)
            boss = _signed_in(server.base_url, account_url, *DEPT_ADMIN)
            people = owner.get("/console/people").text
            after = re.search(r'href="[^"]*[?&]after=([^"&]+)', people)
            pages = [
                ("overview", "/console/"),
                ("people", "/console/people"),
                ("people, next page", f"/console/people?after={after.group(1) if after else ''}"),
                ("people in Sales and below", f"/console/people?department={ids['sales']}&sub=1"),
                ("people, inactive", "/console/people?status=inactive"),
                ("people in a group", f"/console/people?group={ids['group']}"),
                ("a person", f"/console/people/{ids['user']}"),
                ("a person's edit form", f"/console/people/{ids['user']}/edit"),
                ("add a person", "/console/people/new"),
                ("departments", "/console/departments"),
                ("a department", f"/console/departments/{ids['sales']}"),
                ("groups", "/console/groups"),
                ("a group", f"/console/groups/{ids['group']}"),
                ("a smart group", f"/console/groups/{smart}"),
                ("new smart group", "/console/groups/smart/new"),
                ("import and export", "/console/import"),
                ("settings: fields", "/console/settings"),
                ("settings: roles", "/console/settings/roles"),
                ("settings: policy", "/console/settings/policy"),
                ("settings: keys", "/console/settings/keys"),
                ("settings: webhooks", "/console/settings/webhooks"),
                ("settings: audit", "/console/settings/audit"),
            ]
            for name, path in pages:
                row = _timed(owner, path, repeat)
                row.update(db=db_kind, who="owner", what=name, kind="page")
                results.append(row)
                log(f"  {name}: p50 {row['p50']:.1f} ms, max {row['max']:.1f} ms ({row['status']})")
            # The smart group form's live count, as groups.js asks for it while rules are edited.
            csrf = re.search(r'data-csrf="([^"]+)"', people)
            rules = {"join": "and", "attr": "department", "op": "2", "value": "Sales"}
            form = {"csrf": csrf.group(1) if csrf else "", **rules}
            row = _timed(owner, "/console/groups/preview", repeat, form=form)
            row.update(db=db_kind, who="owner", what="smart group live count", kind="page")
            results.append(row)
            log(f"  live count: p50 {row['p50']:.1f} ms ({row['status']})")
            for name, path in (
                ("overview", "/console/"),
                ("people (subtree)", "/console/people"),
                ("departments (subtree)", "/console/departments"),
                ("groups (subtree)", "/console/groups"),
                ("a group (subtree)", f"/console/groups/{ids['group']}"),
                ("a smart group (subtree)", f"/console/groups/{smart}"),
            ):
                row = _timed(boss, path, repeat)
                row.update(db=db_kind, who="department administrator", what=name, kind="page")
                results.append(row)
                log(f"  {name} as dept admin: p50 {row['p50']:.1f} ms ({row['status']})")
            words = {
                "login": ids["login"],
                "e-mail": ids["email"],
                "first name": ids["first_name"],
                "full name": f"{ids['first_name']} x",
                "nothing matches": "zzqqy",
            }
            for name, word in words.items():
                times = []
                for prefix in _typed(word):
                    row = _timed(owner, f"/console/people?q={prefix}", max(3, repeat // 4), True)
                    times.append(row["p50"])
                    if row["status"] != 200:
                        raise RuntimeError(f"search {prefix!r}: HTTP {row['status']}")
                results.append(
                    {
                        "db": db_kind,
                        "who": "owner",
                        "what": f"search by {name} ({len(times)} prefixes)",
                        "kind": "search",
                        "status": 200,
                        "kb": 0.0,
                        "p50": statistics.median(times),
                        "p95": max(times),
                        "max": max(times),
                        "path": "/console/people?q=...",
                    }
                )
                median = statistics.median(times)
                log(f"  search by {name}: median {median:.1f}, worst {max(times):.1f} ms")
            owner.close()
            boss.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    stop_cleanly_on_sigterm()
    results: list[dict[str, Any]] = []
    for kind in args.db:
        results.extend(measure(kind, args.users, args.repeat))
    rows = []
    missed = 0
    for r in results:
        target = SEARCH_TARGET_MS if r["kind"] == "search" else PAGE_TARGET_MS
        ok = r["max"] < target and r["status"] == 200
        missed += not ok
        rows.append(
            [
                r["db"],
                r["who"],
                r["what"],
                str(r["status"]),
                f"{r['p50']:.1f}",
                f"{r['p95']:.1f}",
                f"{r['max']:.1f}",
                f"< {target:.0f}: {'met' if ok else 'MISSED'}",
            ]
        )
    print(
        f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, learndir {code_version()}, "
        f"{', '.join(f'{k}: {v}' for k, v in machine_summary().items())}, "
        f"{args.users:,} users, {args.repeat} requests per page\n"
    )
    print(
        markdown_table(
            ["database", "who", "page", "status", "p50 ms", "p95 ms", "max ms", "target"], rows
        )
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
