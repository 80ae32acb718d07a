"""SCIM as identity providers use it: Okta's import (paging GET /scim/v2/Users?count=100 by
startIndex over the whole account) and the lookup every provider makes before a create
(GET /scim/v2/Users?filter=userName eq "x"), at 50,000 and 200,000 users.

For each database: a fresh account (bench/paging_account.yaml), users seeded straight into the
schema (bench/paging.py's seeding, with PostgreSQL's statistics never gathered: lookups must
not depend on them), each with the SCIM document a provider would have written (userName, name,
emails, externalId, active), a SCIM token from `learndir scim-token create`, and `learndir
serve` with its defaults. One client on a keep-alive connection:

- import: every page of `count=100`, checked: each user exactly once, totalResults stable;
- lookups: N different userNames (and externalIds), one after the other: p50/p90/p99.

    .venv/bin/python bench/scim_speed.py                          # SQLite and PostgreSQL
    .venv/bin/python bench/scim_speed.py --db sqlite --sizes 50000 200000 --lookups 500
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, insert, select

from harness import (
    BENCH_DIR,
    DEFAULT_POSTGRES_URL,
    LEARNDIR,
    NOISE_LIMIT,
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
from learndir.db.engine import nullpool_engine
from learndir.db.schema import scim_users, users
from paging import seed_users

ACCOUNT_FILE = BENCH_DIR / "paging_account.yaml"
USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
BATCH = 10_000


def seed_documents(engine: Engine, account_id: str) -> int:
    """The SCIM document of every user that has none, as Okta's create would have left it."""
    with engine.connect() as conn:
        have = set(
            conn.execute(
                select(scim_users.c.user_id).where(scim_users.c.account_id == account_id)
            ).scalars()
        )
        rows = conn.execute(
            select(
                users.c.id, users.c.login, users.c.email, users.c.first_name, users.c.last_name
            ).where(users.c.account_id == account_id)
        ).all()
    missing = [r for r in rows if r.id not in have]
    now = datetime.now(UTC)
    for start in range(0, len(missing), BATCH):
        values = []
        for r in missing[start : start + BATCH]:
            document = {
                "schemas": [USER_URN],
                "userName": r.login,
                "name": {"givenName": r.first_name, "familyName": r.last_name},
                "emails": [{"value": r.email, "type": "work", "primary": True}],
                "externalId": f"ext-{r.login}",
                "active": True,
                "$status": 1,
            }
            values.append(
                {
                    "user_id": r.id,
                    "account_id": account_id,
                    "external_id": document["externalId"],
                    "document": orjson.dumps(document).decode(),
                    "updated_at": now,
                }
            )
        with engine.begin() as conn:
            conn.execute(insert(scim_users), values)
    return len(missing)


def scim_token(database_url: str, account_url: str, login: str) -> str:
    out = subprocess.run(
        [
            str(LEARNDIR),
            "scim-token",
            "create",
            "--account-url",
            account_url,
            "--login",
            login,
            "--database-url",
            database_url,
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    token: str = json.loads(out.stdout)["token"]
    return token


class Client:
    """One keep-alive connection, as a provisioning job has."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/scim+json"}

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            self.conn.request("GET", path, headers=self.headers)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.conn.close()
            self.conn.request("GET", path, headers=self.headers)
            response = self.conn.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.conn.close()


def okta_import(client: Client, expected: int, count: int) -> dict[str, Any]:
    seen: set[str] = set()
    pages = 0
    problems: list[str] = []
    start = 1
    started = time.perf_counter()
    while True:
        status, body = client.get(f"/scim/v2/Users?startIndex={start}&count={count}")
        if status != 200:
            problems.append(f"HTTP {status}: {body[:200]!r}")
            break
        page = orjson.loads(body)
        pages += 1
        if page["totalResults"] != expected:
            problems.append(f"page {pages}: totalResults {page['totalResults']}")
        for resource in page["Resources"]:
            if resource["id"] in seen:
                problems.append(f"{resource['id']} seen twice")
            seen.add(resource["id"])
        start += page["itemsPerPage"]
        if not page["Resources"] or start > page["totalResults"]:
            break
    seconds = time.perf_counter() - started
    if len(seen) != expected:
        problems.append(f"{len(seen)} users read, {expected} expected")
    return {"pages": pages, "users": len(seen), "seconds": seconds, "problems": problems[:5]}


def lookups(client: Client, attribute: str, values: list[str]) -> dict[str, Any]:
    times: list[float] = []
    problems: list[str] = []
    for value in values:
        query = urllib.parse.urlencode({"filter": f'{attribute} eq "{value}"'})
        started = time.perf_counter()
        status, body = client.get(f"/scim/v2/Users?{query}")
        times.append((time.perf_counter() - started) * 1000)
        page = orjson.loads(body) if status == 200 else {}
        if page.get("totalResults") != 1:
            problems.append(f"{attribute} {value}: HTTP {status} {body[:200]!r}")
    times.sort()

    def pct(p: float) -> float:
        return times[min(len(times) - 1, round(p * (len(times) - 1)))]

    return {
        "requests": len(times),
        "p50_ms": statistics.median(times),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "problems": problems[:5],
    }


def measure(args: argparse.Namespace, db: str) -> list[list[str]]:
    rows: list[list[str]] = []
    with fresh_database(db, args.postgres_url) as url:
        account = init_account(url, ACCOUNT_FILE)
        account_id = account["accountId"]
        token = scim_token(url, account["accountUrl"], "paging.owner")
        engine = nullpool_engine(url)
        log_path = Path(tempfile.mkstemp(prefix=f"learndir-scim-{db}-", suffix=".log")[1])
        log(f"{db}: server log {log_path}")
        try:
            with running_server(url, None, log_path) as server:
                for size in sorted(args.sizes):
                    started = time.monotonic()
                    seed_users(engine, account_id, size, analyze=False)
                    seed_documents(engine, account_id)
                    log(f"  seeded to {size} users in {time.monotonic() - started:.1f} s")
                    with engine.connect() as conn:
                        logins = list(
                            conn.execute(
                                select(users.c.login).where(users.c.account_id == account_id)
                            ).scalars()
                        )
                    expected = len(logins)
                    sample = random.Random(size).sample(logins, args.lookups + args.warmup)
                    client = Client(server.port, token)
                    try:
                        for login in sample[: args.warmup]:
                            client.get(f"/scim/v2/Users?filter=userName%20eq%20%22{login}%22")
                        if size <= args.import_up_to:
                            wait_until_quiet(NOISE_LIMIT, args.patience)
                            walk = okta_import(client, expected, args.count)
                            log(f"  import of {expected}: {walk['seconds']:.2f} s {walk}")
                            rows.append(
                                [
                                    db,
                                    f"{expected:,}",
                                    f"import, count={args.count}",
                                    f"{walk['pages']} pages",
                                    f"{walk['seconds']:.2f} s",
                                    f"{expected / walk['seconds']:,.0f} users/s",
                                    "; ".join(walk["problems"]) or "every user once",
                                ]
                            )
                        for attribute, values in (
                            ("userName", sample[args.warmup :]),
                            ("externalId", [f"ext-{v}" for v in sample[args.warmup :]]),
                        ):
                            wait_until_quiet(NOISE_LIMIT, args.patience)
                            found = lookups(client, attribute, values)
                            log(f"  {attribute} lookups at {expected}: {found}")
                            rows.append(
                                [
                                    db,
                                    f"{expected:,}",
                                    f"filter {attribute} eq",
                                    f"{found['requests']} requests",
                                    f"p50 {found['p50_ms']:.2f} ms",
                                    f"p90 {found['p90_ms']:.2f} / p99 {found['p99_ms']:.2f} ms",
                                    "; ".join(found["problems"]) or "each found",
                                ]
                            )
                    finally:
                        client.close()
        finally:
            engine.dispose()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--db", nargs="+", choices=["sqlite", "postgres"], default=["sqlite", "postgres"]
    )
    parser.add_argument("--sizes", nargs="+", type=int, default=[50_000, 200_000])
    parser.add_argument("--count", type=int, default=100, help="page size of the import")
    parser.add_argument(
        "--import-up-to", type=int, default=50_000, help="run the import at sizes up to this"
    )
    parser.add_argument("--lookups", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--patience", type=float, default=60.0)
    args = parser.parse_args(argv)
    stop_cleanly_on_sigterm()
    rows: list[list[str]] = []
    for db in args.db:
        rows.extend(measure(args, db))
    machine = machine_summary()
    print(f"\nCode {code_version()}, {machine}, {time.strftime('%Y-%m-%d')}")
    print(f"Command: {' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}\n")
    print(markdown_table(["db", "users", "what", "n", "time", "rate / tail", "check"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
