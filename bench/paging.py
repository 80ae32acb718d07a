"""Paging through every user with GET /users/v2, and looking one user up by login, with 1,000
and with 200,000 users in the account.

For each database: a fresh account (bench/paging_account.yaml: departments, groups, custom
profile fields), users seeded straight into the schema up to each size (names, a job title,
custom field values, group memberships; bulk INSERTs, far faster than the API), then through
the API, one client on a keep-alive connection:

- page-through: `GET /users/v2?pageSize=1000` following `nextPageToken` to the end, in JSON and
  in XML; the wall time of the whole walk (every byte read, the ids and the next token taken
  from each page), checked: every user exactly once.
- lookup: `GET /user?logins[]=<login>` and `GET /users/v2?logins[]=<login>` for N different
  logins, one after the other; p50/p90/p99 per request, checked: exactly that user comes back.

    .venv/bin/python bench/paging.py                        # SQLite and PostgreSQL
    .venv/bin/python bench/paging.py --db sqlite --sizes 1000 200000 --lookups 500
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import resource
import secrets
import statistics
import sys
import tempfile
import time
import urllib.parse
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, insert, select, text, update

from harness import (
    BENCH_DIR,
    DEFAULT_POSTGRES_URL,
    NOISE_LIMIT,
    CpuMeter,
    Server,
    code_version,
    fresh_database,
    init_account,
    log,
    machine_summary,
    markdown_table,
    running_server,
    stop_cleanly_on_sigterm,
    wait_until_quiet,
)
from learndir.core.common import fold, new_id, utcnow
from learndir.db.engine import nullpool_engine
from learndir.db.schema import (
    account_seats,
    departments,
    group_members,
    groups,
    profile_fields,
    roles,
    user_field_values,
    user_roles,
    users,
)

ACCOUNT_FILE = BENCH_DIR / "paging_account.yaml"
PAGE_HEADER = [
    "db",
    "users",
    "format",
    "pages",
    "users read",
    "MB",
    "seconds",
    "users/s",
    "server CPU",
    "PG CPU",
    "client CPU",
    "other CPU",
]
LOOKUP_HEADER = ["db", "users", "request", "requests", "p50 ms", "p90 ms", "p99 ms", "max ms"]
LOOKUP_HEADER.append("other CPU")
BATCH = 10_000
FIRST = ["Anna", "Ben", "Chloe", "David", "Elena", "Felix", "Grace", "Hugo", "Ines", "Jonas"]
LAST = ["Smith", "Müller", "Rossi", "García", "Novak", "Kowalski", "Dubois", "Berg", "Silva"]
TITLES = ["Sales Manager", "Engineer", "Support Agent", "Analyst", "Team Lead", None]
COUNTRIES = ["DE", "FR", "US", "GB", "PL", "ES", "IT", "NL"]
JSON_IDS = re.compile(rb'"userId":"([^"]+)"')
JSON_NEXT = re.compile(rb'"nextPageToken":"([^"]+)"')
XML_IDS = re.compile(rb"<userId>([^<]+)</userId>")
XML_NEXT = re.compile(rb"<nextPageToken>([^<]+)</nextPageToken>")


# ---- seeding -----------------------------------------------------------------------------


def seed_users(engine: Engine, account_id: str, target: int, *, analyze: bool = True) -> int:
    """Adds learners straight into the schema until the account has `target` users, each with
    names, most with a job title, an employee id and a country, a third with a cost center,
    about half in one or two groups; returns how many were added. Without `analyze`,
    PostgreSQL keeps no statistics of them (what a fast-growing account looks like)."""
    with engine.connect() as conn:
        learner_role = conn.execute(
            select(roles.c.id).where(roles.c.account_id == account_id, roles.c.kind == "learner")
        ).scalar_one()
        department_ids = list(
            conn.execute(
                select(departments.c.id).where(departments.c.account_id == account_id)
            ).scalars()
        )
        group_ids = list(
            conn.execute(select(groups.c.id).where(groups.c.account_id == account_id)).scalars()
        )
        field_ids = dict(
            conn.execute(
                select(profile_fields.c.name_key, profile_fields.c.id).where(
                    profile_fields.c.account_id == account_id,
                    profile_fields.c.is_builtin.is_(False),
                )
            ).all()
        )
        current = conn.execute(
            select(func.count()).select_from(users).where(users.c.account_id == account_id)
        ).scalar_one()
    missing = max(0, target - current)
    prefix = f"pg{secrets.token_hex(3)}"
    added = 0
    while added < missing:
        size = min(BATCH, missing - added)
        now = utcnow()
        rows: list[dict[str, Any]] = []
        role_rows: list[dict[str, Any]] = []
        value_rows: list[dict[str, Any]] = []
        member_rows: list[dict[str, Any]] = []
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
                    "first_name": FIRST[n % len(FIRST)],
                    "last_name": LAST[n % len(LAST)],
                    "job_title": TITLES[n % len(TITLES)],
                    "phone": None,
                    "password_hash": None,
                    "status": 1,
                    "added_at": now,
                    "added_by": None,
                }
            )
            role_rows.append({"user_id": user_id, "role_id": learner_role})
            employee_id = f"{prefix.upper()}-{n:06d}"
            value_rows.append(
                {
                    "user_id": user_id,
                    "field_id": field_ids["employee_id"],
                    "value": employee_id,
                    "unique_key": fold(employee_id),
                }
            )
            value_rows.append(
                {
                    "user_id": user_id,
                    "field_id": field_ids["country"],
                    "value": COUNTRIES[n % len(COUNTRIES)],
                    "unique_key": None,
                }
            )
            if n % 3 == 0:
                value_rows.append(
                    {
                        "user_id": user_id,
                        "field_id": field_ids["cost_center"],
                        "value": f"CC-{n % 97:03d}",
                        "unique_key": None,
                    }
                )
            if n % 2 == 0:
                member_rows.append({"group_id": group_ids[n % len(group_ids)], "user_id": user_id})
            if n % 10 == 0:
                other = group_ids[(n + 1) % len(group_ids)]
                member_rows.append({"group_id": other, "user_id": user_id})
        with engine.begin() as conn:
            conn.execute(insert(users), rows)
            conn.execute(insert(user_roles), role_rows)
            conn.execute(insert(user_field_values), value_rows)
            conn.execute(insert(group_members), member_rows)
            conn.execute(
                update(account_seats)
                .where(account_seats.c.account_id == account_id)
                .values(active_users=account_seats.c.active_users + size)
            )
        added += size
    if engine.dialect.name == "postgresql":
        if analyze:
            with engine.begin() as conn:
                conn.execute(text("ANALYZE"))
    else:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    return missing


def sample_logins(engine: Engine, account_id: str, count: int, seed: int) -> list[str]:
    with engine.connect() as conn:
        logins = list(
            conn.execute(select(users.c.login).where(users.c.account_id == account_id)).scalars()
        )
    return random.Random(seed).sample(logins, min(count, len(logins)))


def account_user_ids(engine: Engine, account_id: str) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(select(users.c.id).where(users.c.account_id == account_id)).scalars()
        )


# ---- the client --------------------------------------------------------------------------


class Client:
    """One keep-alive HTTP/1.1 connection, as a sync script has."""

    def __init__(self, server: Server, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        self.token = token

    def get(self, path: str, accept: str) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": accept}
        try:
            self.conn.request("GET", path, headers=headers)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # The server closes a connection left idle (while waiting for a quiet machine).
            self.conn.close()
            self.conn.request("GET", path, headers=headers)
            response = self.conn.getresponse()
        return response.status, response.read()

    def reconnect(self) -> None:
        """A fresh connection, used once before a timed run so no reconnect is timed."""
        self.conn.close()
        self.get("/role", ACCEPT["json"])

    def close(self) -> None:
        self.conn.close()


ACCEPT = {"json": "application/json", "xml": "application/xml"}


@dataclass
class PageWalk:
    fmt: str
    users: int
    pages: int
    seconds: float
    megabytes: float
    server_cpu: float
    database_cpu: float
    client_cpu: float
    other_cpu: float
    problems: list[str]


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def page_through(
    server: Server, client: Client, fmt: str, page_size: int, expected: set[str]
) -> PageWalk:
    ids_re, next_re = (JSON_IDS, JSON_NEXT) if fmt == "json" else (XML_IDS, XML_NEXT)
    seen: list[bytes] = []
    pages = 0
    size = 0
    problems: list[str] = []
    token: str | None = None
    cpu0 = _self_cpu()
    with CpuMeter(server.pids(), server.postgres_database) as meter:
        started = time.perf_counter()
        while True:
            query = {"pageSize": str(page_size)}
            if token:
                query["pageToken"] = token
            status, body = client.get(f"/users/v2?{urllib.parse.urlencode(query)}", ACCEPT[fmt])
            if status != 200:
                problems.append(f"page {pages + 1}: HTTP {status}: {body[:200]!r}")
                break
            pages += 1
            size += len(body)
            seen.extend(ids_re.findall(body))
            found = next_re.search(body)
            if found is None:
                break
            token = found.group(1).decode()
        elapsed = time.perf_counter() - started
    client_cpu = (_self_cpu() - cpu0) / elapsed
    ids = {i.decode() for i in seen}
    if len(ids) != len(seen):
        problems.append(f"{len(seen) - len(ids)} users came twice")
    if ids != expected:
        problems.append(
            f"{len(expected - ids)} users missing, {len(ids - expected)} users not of the account"
        )
    use = meter.use
    return PageWalk(
        fmt=fmt,
        users=len(seen),
        pages=pages,
        seconds=elapsed,
        megabytes=size / 1e6,
        server_cpu=use.server,
        database_cpu=use.database,
        client_cpu=client_cpu,
        other_cpu=max(0.0, use.other - client_cpu),
        problems=problems,
    )


@dataclass
class Lookups:
    endpoint: str
    requests: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    other_cpu: float
    problems: list[str]


def lookups(server: Server, client: Client, endpoint: str, logins: list[str]) -> Lookups:
    """One request per login, JSON; each answer must hold exactly that user."""
    times: list[float] = []
    problems: list[str] = []
    cpu0 = _self_cpu()
    with CpuMeter(server.pids(), server.postgres_database) as meter:
        started = time.perf_counter()
        for login in logins:
            path = f"{endpoint}?{urllib.parse.urlencode({'logins[]': login})}"
            t0 = time.perf_counter()
            status, body = client.get(path, ACCEPT["json"])
            times.append((time.perf_counter() - t0) * 1000)
            if status != 200:
                problems.append(f"{login}: HTTP {status}")
                continue
            data = json.loads(body)
            found = data["userProfiles"] if isinstance(data, dict) else data
            logins_found = [
                next(f["value"] for f in u["fields"] if f["name"] == "LOGIN") for u in found
            ]
            if logins_found != [login]:
                problems.append(f"{login}: got {logins_found[:3]}")
        elapsed = time.perf_counter() - started
    client_cpu = (_self_cpu() - cpu0) / elapsed
    times.sort()

    def pct(p: float) -> float:
        return times[min(len(times) - 1, round(p / 100 * (len(times) - 1)))]

    return Lookups(
        endpoint=endpoint,
        requests=len(times),
        p50_ms=statistics.median(times),
        p90_ms=pct(90),
        p99_ms=pct(99),
        max_ms=times[-1],
        other_cpu=max(0.0, meter.use.other - client_cpu),
        problems=problems[:5],
    )


# ---- one database --------------------------------------------------------------------------


def measure(args: argparse.Namespace, db: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    with fresh_database(db, args.postgres_url) as url:
        account = init_account(url, ACCOUNT_FILE)
        account_id = account["accountId"]
        engine = nullpool_engine(url)
        log_path = Path(tempfile.mkstemp(prefix=f"learndir-paging-{db}-", suffix=".log")[1])
        log(f"{db}, {args.workers} worker(s): server log {log_path}")
        try:
            with running_server(url, args.workers, log_path, args.log_level) as server:
                for size in sorted(args.sizes):
                    started = time.monotonic()
                    added = seed_users(engine, account_id, size)
                    log(f"  seeded {added} users in {time.monotonic() - started:.1f} s")
                    expected = account_user_ids(engine, account_id)
                    logins = sample_logins(engine, account_id, args.lookups + args.warmup, size)
                    client = Client(
                        server, server.token(account["clientId"], account["clientSecret"])
                    )
                    try:
                        for login in logins[: args.warmup]:
                            client.get(f"/user?logins[]={login}", ACCEPT["json"])
                        client.get("/users/v2?pageSize=10", ACCEPT["json"])
                        for fmt in args.formats:
                            wait_until_quiet(NOISE_LIMIT, args.patience)
                            client.reconnect()
                            walk = page_through(server, client, fmt, args.page_size, expected)
                            log(
                                f"  {len(expected)} users, page-through {fmt}: "
                                f"{walk.seconds:.2f} s, {walk.pages} pages, {walk.megabytes:.0f} MB"
                            )
                            found.append(
                                {"db": db, "size": len(expected), "kind": "pages", **asdict(walk)}
                            )
                        for endpoint in ("/user", "/users/v2"):
                            wait_until_quiet(NOISE_LIMIT, args.patience)
                            client.reconnect()
                            result = lookups(server, client, endpoint, logins[args.warmup :])
                            log(
                                f"  {len(expected)} users, lookup {endpoint}: "
                                f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms"
                            )
                            found.append(
                                {
                                    "db": db,
                                    "size": len(expected),
                                    "kind": "lookup",
                                    **asdict(result),
                                }
                            )
                    finally:
                        client.close()
        finally:
            engine.dispose()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--db", nargs="+", choices=["sqlite", "postgres"], default=["sqlite", "postgres"]
    )
    parser.add_argument("--sizes", nargs="+", type=int, default=[1_000, 200_000])
    parser.add_argument("--formats", nargs="+", choices=["json", "xml"], default=["json", "xml"])
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--lookups", type=int, default=500, help="lookups per endpoint and size")
    parser.add_argument("--warmup", type=int, default=50, help="warm-up lookups at each size")
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument("--log-level", default="INFO", help="the server's LEARNDIR_LOG_LEVEL")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument(
        "--patience",
        type=float,
        default=60.0,
        help="seconds to wait before each run for the CPU to be idle",
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args(argv)
    stop_cleanly_on_sigterm()

    version = code_version()
    results: list[dict[str, Any]] = []
    for db in args.db:
        results.extend(measure(args, db))
    page_rows, lookup_rows, problems, noisy = [], [], [], []
    for r in results:
        label = f"{r['db']}/{r['size']} users"
        if r["kind"] == "pages":
            page_rows.append(
                [
                    r["db"],
                    f"{r['size']:,}",
                    r["fmt"],
                    str(r["pages"]),
                    f"{r['users']:,}",
                    f"{r['megabytes']:.0f}",
                    f"{r['seconds']:.2f}",
                    f"{r['users'] / r['seconds']:,.0f}",
                    f"{r['server_cpu']:.2f}",
                    f"{r['database_cpu']:.2f}",
                    f"{r['client_cpu']:.2f}",
                    f"{r['other_cpu']:.2f}",
                ]
            )
            label += f"/page-through {r['fmt']}"
        else:
            lookup_rows.append(
                [
                    r["db"],
                    f"{r['size']:,}",
                    f"{r['endpoint']}?logins[]=",
                    str(r["requests"]),
                    f"{r['p50_ms']:.2f}",
                    f"{r['p90_ms']:.2f}",
                    f"{r['p99_ms']:.2f}",
                    f"{r['max_ms']:.2f}",
                    f"{r['other_cpu']:.2f}",
                ]
            )
            label += f"/lookup {r['endpoint']}"
        problems.extend(f"{label}: {p}" for p in r["problems"])
        if r["other_cpu"] > NOISE_LIMIT:
            noisy.append(f"{label}: other processes took {r['other_cpu']:.2f} cores")
    print(f"learndir: src/ as of commit {version}\n")
    print(
        markdown_table(
            PAGE_HEADER,
            page_rows,
        )
    )
    print()
    print(
        markdown_table(
            LOOKUP_HEADER,
            lookup_rows,
        )
    )
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
            json.dumps(
                {"machine": machine_summary(), "argv": sys.argv, "results": results}, indent=2
            )
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
