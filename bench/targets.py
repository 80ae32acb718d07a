"""The addUser speed targets, measured in one command per database, written to
docs/benchmarks.md.

Each row of the targets table (REST JSON, no password, 32 clients unless said otherwise, the load
on the same cores as the server):
- addUser with 2 server processes: users/s and p99;
- the same with an account that has a seat limit (never reached here: the cost of counting
  seats), and a short burst into an account with few seats left: exactly those seats admitted;
- 1 client: p50;
- `learndir serve` without --workers against the best of 1 to 4 processes;
- addUser latency in an account of 200,000 users against one of 1,000, statistics never gathered
  (the two measured in turns);
- SOAP addUser against REST JSON.

    .venv/bin/python bench/targets.py --db sqlite
    .venv/bin/python bench/targets.py --db postgres --repeat 3 --write-docs

With --repeat N every throughput figure is the median of N runs. This virtual machine's speed
drifts from one minute to the next, so what is compared is measured round-robin: plain,
seat-limited and SOAP runs take turns on one server, and servers of 1 to 4 processes (and the
default) take turns too, each started, warmed and stopped for its run. --write-docs
replaces this database's section of docs/benchmarks.md (between its markers) with the results,
the machine, the command and the date.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select, update

from harness import (
    ACCOUNT_FILE,
    DEFAULT_POSTGRES_URL,
    REPO,
    LoadResult,
    Server,
    UserCounter,
    code_version,
    fresh_database,
    init_account,
    log,
    machine_summary,
    markdown_table,
    quiet_load,
    running_server,
    stop_cleanly_on_sigterm,
)
from learndir.cli.main import default_workers
from learndir.db.engine import nullpool_engine
from learndir.db.schema import account_seats, users
from scale import seed_users

DOCS = REPO / "docs" / "benchmarks.md"
CLIENTS = 32
BURST_SEATS = 300


@dataclass
class Figures:
    """What one database's run measured."""

    rows: list[list[str]]
    details: list[list[str]]


Measured = tuple[LoadResult, list[float]]


def _round_robin(runs: int, measures: dict[str, Callable[[], LoadResult]]) -> dict[str, Measured]:
    """Each measure `runs` times, taking turns; for each, the run with the median users/s and
    every run's users/s."""
    results: dict[str, list[LoadResult]] = {name: [] for name in measures}
    for _ in range(runs):
        for name, measure in measures.items():
            result = measure()
            if not result.valid:
                raise SystemExit(f"invalid run ({name}): {result.problems()}")
            results[name].append(result)
    found: dict[str, Measured] = {}
    for name, runs_of in results.items():
        ordered = sorted(runs_of, key=lambda r: r.users_per_s)
        found[name] = (ordered[len(ordered) // 2], [r.users_per_s for r in runs_of])
    return found


def _spread(rates: list[float]) -> str:
    return f" ({min(rates):.0f}-{max(rates):.0f})" if len(rates) > 1 else ""


class Bench:
    def __init__(self, args: argparse.Namespace, db: str) -> None:
        self.args = args
        self.db = db

    def server(self, url: str, workers: int | None) -> Any:
        log_path = Path(tempfile.mkstemp(prefix=f"learndir-targets-{self.db}-", suffix=".log")[1])
        log(f"{self.db}: server with {workers or 'default'} worker(s), log {log_path}")
        return running_server(url, workers, log_path, self.args.log_level)

    def load(
        self,
        server: Server,
        counter: UserCounter,
        account: dict[str, str],
        *,
        clients: int = CLIENTS,
        transport: str = "rest-json",
        duration: int | None = None,
        max_responses: int = 0,
        attempts: int = 3,
    ) -> LoadResult:
        token = server.token(account["clientId"], account["clientSecret"])
        load: dict[str, Any] = {
            "transport": transport,
            "token": token,
            "department_id": account["rootDepartmentId"],
            "clients": clients,
            "threads": 2,
        }
        if max_responses:
            load["max_responses"] = max_responses
        else:
            load["duration"] = duration or self.args.duration
        return quiet_load(server, counter, patience=self.args.patience, attempts=attempts, **load)

    def load_started(
        self, url: str, workers: int | None, counter: UserCounter, account: dict[str, str]
    ) -> LoadResult:
        """A server of `workers` processes started for this run, warmed, loaded and stopped."""
        with self.server(url, workers) as server:
            self.warm(server, counter, account)
            return self.load(server, counter, account)

    def warm(self, server: Server, counter: UserCounter, account: dict[str, str]) -> None:
        for transport in ("rest-json", "soap"):
            self.load(server, counter, account, clients=8, transport=transport, duration=2)

    def run(self) -> Figures:
        rows: list[list[str]] = []
        details: list[list[str]] = []

        def detail(label: str, r: LoadResult, rates: list[float] | None = None) -> None:
            cpu = r.cpu
            details.append(
                [
                    label,
                    f"{r.users_per_s:.0f}{_spread(rates or [])}",
                    f"{r.p50_ms:.1f}",
                    f"{r.p99_ms:.1f}",
                    f"{cpu.server:.2f}" if cpu else "?",
                    f"{cpu.database:.2f}" if cpu and self.db == "postgres" else "",
                    f"{cpu.steal:.2f}" if cpu else "?",
                ]
            )

        with fresh_database(self.db, self.args.postgres_url) as url:
            account = init_account(url)
            limited = _account(url, "limited", seatLimit=10_000_000)
            counter = UserCounter(url, account["accountId"])
            limited_counter = UserCounter(url, limited["accountId"])
            try:
                # Two processes: throughput, seat limit and SOAP taking turns; one client.
                with self.server(url, 2) as server:
                    self.warm(server, counter, account)
                    self.warm(server, limited_counter, limited)
                    two = _round_robin(
                        self.args.repeat,
                        {
                            "plain": lambda: self.load(server, counter, account),
                            "seats": lambda: self.load(server, limited_counter, limited),
                            "soap": lambda: self.load(server, counter, account, transport="soap"),
                        },
                    )
                    plain, seats, soap = (two[k][0] for k in ("plain", "seats", "soap"))
                    detail("REST JSON, 2 processes, 32 clients", *two["plain"])
                    detail("the same, seat-limited account", *two["seats"])
                    detail("SOAP, 2 processes, 32 clients", *two["soap"])
                    single = self.load(server, counter, account, clients=1)
                    detail("REST JSON, 2 processes, 1 client", single)
                    held = self.seat_burst(url, server, limited, limited_counter)
                # Process counts: learndir serve's default against 1 to 4, in turns, one server
                # at a time (a PostgreSQL server process keeps up to THREADS + 4 connections:
                # twelve processes at once would pass PostgreSQL's default max_connections).
                by_workers = _round_robin(
                    self.args.repeat,
                    {
                        ("default" if w is None else str(w)): functools.partial(
                            self.load_started, url, w, counter, account
                        )
                        for w in (None, 1, 2, 3, 4)
                    },
                )
                for label, measured in by_workers.items():
                    detail(f"REST JSON, {label} process(es), 32 clients", *measured)
                scale = self.scale(url)
                for size, measured in scale.items():
                    detail(f"REST JSON, 2 processes, 1 client, {size:,} users", *measured)
            finally:
                counter.close()
                limited_counter.close()

        def rate(r: LoadResult) -> str:
            return f"{r.users_per_s:,.0f}/s, p99 {r.p99_ms:.0f} ms"

        best_label, (best, _) = max(by_workers.items(), key=lambda kv: kv[1][0].users_per_s)
        default = by_workers["default"][0]
        small, large = (scale[size][0] for size in sorted(scale))
        rows.append(["addUser, 2 server processes, 32 clients", rate(plain)])
        rows.append(
            [
                "seat-limited account (ratio to no limit)",
                f"{rate(seats)} ({seats.users_per_s / plain.users_per_s:.0%}); {held}",
            ]
        )
        rows.append(["1 client", f"p50 {single.p50_ms:.1f} ms"])
        rows.append(
            [
                f"`learndir serve` without --workers ({default_workers()} processes here)",
                f"{rate(default)}; best {best_label} process(es) {rate(best)} "
                f"({default.users_per_s / best.users_per_s:.0%} of best)",
            ]
        )
        rows.append(
            [
                "p50 at 200,000 users vs 1,000 (statistics never gathered)",
                f"{small.p50_ms:.2f} -> {large.p50_ms:.2f} ms "
                f"({large.p50_ms / small.p50_ms:.2f}x); p99 {small.p99_ms:.1f} -> "
                f"{large.p99_ms:.1f} ms",
            ]
        )
        rows.append(
            [
                "SOAP addUser (ratio to REST JSON)",
                f"{rate(soap)} ({soap.users_per_s / plain.users_per_s:.0%})",
            ]
        )
        return Figures(rows, details)

    def seat_burst(
        self, url: str, server: Server, limited: dict[str, str], counter: UserCounter
    ) -> str:
        """A burst into the seat-limited account once it has BURST_SEATS seats left: exactly
        those are admitted, the rest refused, the counter agrees with the users."""
        engine = nullpool_engine(url)
        try:
            with engine.begin() as conn:
                active = conn.execute(
                    select(func.count())
                    .select_from(users)
                    .where(users.c.account_id == limited["accountId"], users.c.status == 1)
                ).scalar_one()
                limit = active + BURST_SEATS
                conn.execute(
                    update(account_seats)
                    .where(account_seats.c.account_id == limited["accountId"])
                    .values(seat_limit=limit, active_users=active)
                )
            # Once: the burst takes the free seats, so a run again after a noisy one would find
            # none left. What it checks is the count, not the speed.
            result = self.load(server, counter, limited, max_responses=BURST_SEATS * 3, attempts=1)
            with engine.connect() as conn:
                after = conn.execute(
                    select(func.count())
                    .select_from(users)
                    .where(users.c.account_id == limited["accountId"], users.c.status == 1)
                ).scalar_one()
        finally:
            engine.dispose()
        refused = result.bad_status.get("403", 0)
        if result.ok != BURST_SEATS or after != limit or refused != result.responses - result.ok:
            raise SystemExit(
                f"seat limit broken: {result.ok} admitted of {BURST_SEATS} seats, {after} active "
                f"users for a limit of {limit}, statuses {result.bad_status}"
            )
        return f"a burst of {result.responses} into {BURST_SEATS} free seats: {result.ok} admitted"

    def scale(self, url: str) -> dict[int, Measured]:
        """Two accounts of their own, seeded to 1,000 and to 200,000 users, measured in turns
        (1 client; with --repeat, the median run of each). This machine's speed drifts from one
        minute to the next: two single runs minutes apart compared that drift as much as the
        accounts' sizes (the same code measured 1.22x, then 0.86x)."""
        sizes = (1_000, 200_000)
        accounts = {size: _account(url, f"scale{size}") for size in sizes}
        counters = {size: UserCounter(url, accounts[size]["accountId"]) for size in sizes}
        engine = nullpool_engine(url)
        try:
            for size in sizes:
                started = time.monotonic()
                added = seed_users(engine, accounts[size]["accountId"], size)
                log(f"  seeded {added} users in {time.monotonic() - started:.1f} s")
            with self.server(url, 2) as server:
                for size in sizes:
                    self.warm(server, counters[size], accounts[size])
                found = _round_robin(
                    self.args.repeat,
                    {
                        str(size): functools.partial(
                            self.load,
                            server,
                            counters[size],
                            accounts[size],
                            clients=1,
                            max_responses=self.args.sequential,
                        )
                        for size in sizes
                    },
                )
        finally:
            engine.dispose()
            for counter in counters.values():
                counter.close()
        return {int(size): measured for size, measured in found.items()}


def _account(url: str, name: str, **overrides: Any) -> dict[str, str]:
    """bench/account.yaml under another URL, with `overrides`, set up with `learndir init`."""
    spec = yaml.safe_load(ACCOUNT_FILE.read_text())
    spec.update(url=f"http://{name}.bench.learndir.test", **overrides)
    path = Path(tempfile.mkstemp(suffix=".yaml")[1])
    try:
        path.write_text(yaml.safe_dump(spec))
        return init_account(url, path)
    finally:
        path.unlink()


DETAIL_HEADER = ["run", "users/s", "p50 ms", "p99 ms", "server CPU", "PG CPU", "steal"]


def section(db: str, figures: Figures, argv: list[str]) -> str:
    machine = machine_summary()
    today = datetime.date.today().isoformat()
    command = " ".join(["bench/targets.py", *argv])
    return "\n".join(
        [
            f"<!-- targets:{db}:start -->",
            f"### {db} ({today}, learndir `{machine['learndir']}`)",
            "",
            f"Measured with `.venv/bin/python {command}` on {machine['cpus']} cores "
            f"({machine['cpu']}), Python {machine['python']}, SQLite {machine['sqlite']}; the "
            "load (wrk) ran on the same cores. CPU columns: cores used on average; steal: CPU "
            "the hypervisor gave to other machines.",
            "",
            markdown_table(["target", "measured"], figures.rows),
            "",
            markdown_table(DETAIL_HEADER, figures.details),
            f"<!-- targets:{db}:end -->",
        ]
    )


def write_docs(db: str, text: str) -> None:
    """Replaces the database's section between its markers (or appends it)."""
    current = DOCS.read_text()
    start, end = f"<!-- targets:{db}:start -->", f"<!-- targets:{db}:end -->"
    if start in current and end in current:
        before, rest = current.split(start, 1)
        after = rest.split(end, 1)[1]
        DOCS.write_text(before + text + after)
    else:
        DOCS.write_text(current.rstrip("\n") + "\n\n" + text + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], required=True)
    parser.add_argument("--duration", type=int, default=10, help="seconds of each load run")
    parser.add_argument("--repeat", type=int, default=1, help="runs per throughput figure")
    parser.add_argument(
        "--sequential", type=int, default=1_000, help="requests of each 1-client scale run"
    )
    parser.add_argument("--log-level", default="INFO", help="the server's LEARNDIR_LOG_LEVEL")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--patience", type=float, default=60.0)
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args(argv)
    stop_cleanly_on_sigterm()
    version = code_version()
    figures = Bench(args, args.db).run()
    text = section(args.db, figures, argv)
    print(text)
    if code_version() != version:
        print(f"\nthe code changed during the run ({version} -> {code_version()})")
        return 1
    if args.write_docs:
        write_docs(args.db, text)
        log(f"wrote the {args.db} section of {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
