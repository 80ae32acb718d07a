"""addUser throughput and latency over SOAP, REST XML and REST JSON.

For each database (a fresh SQLite file or a fresh PostgreSQL database) and server size
(--workers): `learndir init` with bench/account.yaml, `learndir serve`, a token, a warm-up,
then one timed wrk run per transport x clients x password, each checked against the number of
users the database gained. Prints a Markdown table; --json keeps the raw figures.

    .venv/bin/python bench/run_adduser.py                      # the whole matrix
    .venv/bin/python bench/run_adduser.py --db sqlite --transport rest-json --clients 32 \
        --password no --duration 5                             # one quick run
"""

from __future__ import annotations

import argparse
import itertools
import json
import secrets
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import (
    DEFAULT_POSTGRES_URL,
    DEFAULT_WORKERS,
    NOISE_LIMIT,
    TRANSPORTS,
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
    run_load,
    running_server,
    stop_cleanly_on_sigterm,
)

HEADER = [
    "db",
    "workers",
    "transport",
    "clients",
    "password",
    "requests",
    "errors",
    "users/s",
    "p50 ms",
    "p99 ms",
    "% of hash rate",
    "server CPU",
    "PG CPU",
    "PG conns",
    "wrk CPU",
    "other CPU",
    "steal",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--db", nargs="+", choices=["sqlite", "postgres"], default=["sqlite", "postgres"])
    add("--transport", nargs="+", choices=TRANSPORTS, default=list(TRANSPORTS))
    add("--clients", nargs="+", type=int, default=[1, 8, 32])
    add("--password", nargs="+", choices=["no", "yes"], default=["no", "yes"])
    add("--duration", type=int, default=10, help="seconds of each run without a password")
    add("--password-duration", type=int, default=15, help="seconds of each run with a password")
    add("--warmup", type=int, default=2, help="seconds of warm-up load per transport")
    add(
        "--workers",
        nargs="+",
        type=int,
        help=f"server processes; several values = one server each (default {DEFAULT_WORKERS})",
    )
    add("--wrk-threads", type=int, default=1, help="wrk threads (one keeps up with the server)")
    add(
        "--log-level",
        default="INFO",
        help="the server's LEARNDIR_LOG_LEVEL (INFO, one line per request, as deployed)",
    )
    add(
        "--postgres-url",
        default=DEFAULT_POSTGRES_URL,
        help="an existing database to create and drop the benchmark database from",
    )
    add(
        "--patience",
        type=float,
        default=120.0,
        help="seconds to wait before each run for other processes to leave the CPU idle",
    )
    add(
        "--attempts",
        type=int,
        default=3,
        help=f"runs of a combination while other processes take over {NOISE_LIMIT} cores",
    )
    add(
        "--repeat",
        type=int,
        default=1,
        help="runs of every combination, round-robin; the table shows the median run",
    )
    add("--json", type=Path, help="also write the raw results here")
    return parser.parse_args(argv)


@dataclass
class Report:
    rows: list[list[str]] = field(default_factory=list)
    raw: list[dict[str, Any]] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    noisy: list[str] = field(default_factory=list)

    def record(self, combination: tuple[str, int, str, int, bool], r: LoadResult) -> None:
        """Keeps one run: its raw figures and any problem."""
        db, workers, transport, clients, password = combination
        cpu = r.cpu
        assert cpu is not None
        log(
            f"  {db} {workers}w {transport} {clients}c {'password' if password else 'no password'}"
            f": {r.users_per_s:.0f} users/s, p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms"
        )
        label = f"{db}/{workers}w/{transport}/{clients}c/{'' if password else 'no '}password"
        self.invalid.extend(f"{label}: {p}" for p in r.problems())
        if r.noisy:
            self.noisy.append(f"{label}: other processes took {cpu.other:.2f} cores")
        self.raw.append(
            {
                "db": db,
                "workers": workers,
                "transport": transport,
                "clients": clients,
                "password": password,
                **asdict(r),
                "users_per_s": r.users_per_s,
                "valid": r.valid,
            }
        )

    def add_row(self, combination: tuple[str, int, str, int, bool], runs: list[LoadResult]) -> None:
        """One table row: the median run by users/s, with the range when there are several."""
        db, workers, transport, clients, password = combination
        ordered = sorted(runs, key=lambda run: run.users_per_s)
        r = ordered[(len(ordered) - 1) // 2]
        cpu = r.cpu
        assert cpu is not None
        rate = f"{r.users_per_s:.0f}"
        if len(runs) > 1:
            rate += f" ({ordered[0].users_per_s:.0f}-{ordered[-1].users_per_s:.0f})"
        self.rows.append(
            [
                db,
                str(workers),
                transport,
                str(clients),
                "yes" if password else "no",
                str(sum(run.responses for run in runs)),
                str(sum(run.errors for run in runs)),
                rate,
                f"{r.p50_ms:.1f}",
                f"{r.p99_ms:.1f}",
                f"{100 * r.users_per_s / r.raw_hash_rate:.0f}% of {r.raw_hash_rate:.0f}"
                if r.raw_hash_rate
                else "",
                f"{cpu.server:.2f}",
                f"{cpu.database:.2f}",
                "" if r.postgres_connections is None else str(r.postgres_connections),
                f"{cpu.load:.2f}",
                f"{cpu.other:.2f}",
                f"{cpu.steal:.2f}",
            ]
        )

    def print(self) -> None:
        print(markdown_table(HEADER, self.rows))
        print(
            "\nWith --repeat, users/s is the median run's (the range in brackets), and the "
            "other columns are that run's; requests and errors are the sums of all runs."
        )
        print(
            "% of hash rate: users/s against the raw Argon2id rate of all cores, measured just "
            "before the run.\nCPU columns: cores used on average during the run (2 = both cores "
            "busy); steal: CPU the hypervisor gave to other machines while this one wanted it.\n"
            "PG conns: connections the server opened to PostgreSQL during the run."
        )
        if self.invalid:
            print("\nINVALID RUNS (errors, or a user count that does not match):")
            print("\n".join(f"- {problem}" for problem in self.invalid))
        else:
            print(
                "Every run: 0 errors, and the database holds one new user per success (plus "
                "at most the requests cut off when the load stopped)."
            )
        if self.noisy:
            print("\nNOISY RUNS (other processes used the CPU):")
            print("\n".join(f"- {problem}" for problem in self.noisy))


def warm_up(server: Server, token: str, root: str, args: argparse.Namespace) -> None:
    """Loads each transport briefly so imports, pools and caches are warm before timing."""
    passwords = [False, True] if "yes" in args.password else [False]
    for transport, password in itertools.product(args.transport, passwords):
        run_load(
            server.base_url,
            transport,
            token,
            root,
            f"w{secrets.token_hex(4)}",
            clients=8,
            duration=args.warmup,
            with_password=password,
        )


def bench_database(args: argparse.Namespace, db: str, workers: int, report: Report) -> None:
    with fresh_database(db, args.postgres_url) as url:
        account = init_account(url)
        counter = UserCounter(url, account["accountId"])
        root = account["rootDepartmentId"]
        log_path = Path(tempfile.mkstemp(prefix=f"learndir-bench-{db}-", suffix=".log")[1])
        log(f"{db}, {workers} worker(s): server log {log_path}")
        try:
            with running_server(url, workers, log_path, args.log_level) as server:

                def token() -> str:
                    return server.token(account["clientId"], account["clientSecret"])

                warm_up(server, token(), root, args)
                combinations = list(
                    itertools.product(
                        args.transport, [p == "yes" for p in args.password], args.clients
                    )
                )
                runs: dict[tuple[str, bool, int], list[LoadResult]] = {c: [] for c in combinations}
                # Round-robin over the combinations, so a slow spell of the machine does not
                # fall on all the repeats of one combination.
                for _ in range(args.repeat):
                    for transport, password, clients in combinations:
                        result = quiet_load(
                            server,
                            counter,
                            patience=args.patience,
                            attempts=args.attempts,
                            transport=transport,
                            token=token(),
                            department_id=root,
                            clients=clients,
                            with_password=password,
                            probe_hash_rate=password,
                            threads=args.wrk_threads,
                            duration=args.password_duration if password else args.duration,
                        )
                        runs[(transport, password, clients)].append(result)
                        report.record((db, workers, transport, clients, password), result)
                for (transport, password, clients), results in runs.items():
                    report.add_row((db, workers, transport, clients, password), results)
        finally:
            counter.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_cleanly_on_sigterm()
    started = time.time()
    version = code_version()
    report = Report()
    for db in args.db:
        for workers in args.workers or [DEFAULT_WORKERS[db]]:
            bench_database(args, db, workers, report)
    print(f"learndir: src/ as of commit {version}\n")
    report.print()
    if code_version() != version:
        print(
            f"\nTHE CODE CHANGED DURING THE RUN ({version} -> {code_version()}): servers "
            "started at different times ran different code."
        )
        report.invalid.append("code changed")
    log(f"done in {time.time() - started:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {"machine": machine_summary(), "argv": sys.argv, "results": report.raw}, indent=2
            )
        )
    return 1 if report.invalid else 0


if __name__ == "__main__":
    sys.exit(main())
