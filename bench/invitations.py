"""Invitations from addUser to a local SMTP server: delivery rate and the time from addUser's
answer to the message's arrival.

Three runs, each on a fresh database, against a real `learndir serve` and a real SMTP server
(aiosmtpd, in a process of its own, recording when each message arrives):

1. steady: `--users` (default 10,000) users added over REST JSON with `sendLoginEmail: true`
   and no password (so every message carries a freshly minted set-password link) by
   `--clients` concurrent clients, the worker running inside `learndir serve`. For each message:
   the time from addUser's response to its arrival at the SMTP server (p50, p99, max), the
   delivery rate while the users were being added, and the largest backlog /health reported.
2. steady-worker: the same with the worker in a `learndir worker` process of its own, beside a
   `learndir serve` that does not deliver (LEARNDIR_WORKER_ENABLED=false).
3. drain: the same number of users added with the worker off (LEARNDIR_WORKER_ENABLED=false),
   then one `learndir worker` started: the rate at which it empties a backlog of that size.

    .venv/bin/python bench/invitations.py --db sqlite --write-docs
    .venv/bin/python bench/invitations.py --db postgres --write-docs

--write-docs appends the results, the machine, the command and the date to
docs/benchmarks.md. The clients are threads of this script on the same cores as the server and
the SMTP server.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from harness import (
    DEFAULT_POSTGRES_URL,
    LEARNDIR,
    REPO,
    Server,
    code_version,
    free_port,
    fresh_database,
    init_account,
    log,
    machine_summary,
    markdown_table,
    stop_cleanly_on_sigterm,
)

DOCS = REPO / "docs" / "benchmarks.md"


# ---- the SMTP server, in its own process -----------------------------------------------------


def _smtp_main(port: int, arrivals_path: str, ready: Any) -> None:
    import asyncio

    from aiosmtpd.controller import Controller

    out = open(arrivals_path, "a", buffering=1)  # noqa: SIM115

    class Record:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            now = time.time()
            for recipient in envelope.rcpt_tos:
                out.write(f"{recipient} {now:.6f}\n")
            return "250 OK queued"

    controller = Controller(Record(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(asyncio.Event().wait())


@contextlib.contextmanager
def smtp_server(directory: Path) -> Iterator[tuple[int, Path]]:
    port = free_port()
    arrivals = directory / f"arrivals-{port}.txt"
    arrivals.touch()
    ready = multiprocessing.Event()
    process = multiprocessing.Process(
        target=_smtp_main, args=(port, str(arrivals), ready), daemon=True
    )
    process.start()
    if not ready.wait(30):
        raise RuntimeError("the SMTP server did not start")
    try:
        yield port, arrivals
    finally:
        process.terminate()
        process.join(10)


def read_arrivals(path: Path) -> dict[str, float]:
    arrivals: dict[str, float] = {}
    for line in path.read_text().splitlines():
        recipient, _, at = line.partition(" ")
        if at:
            arrivals.setdefault(recipient, float(at))
    return arrivals


def count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


# ---- load ------------------------------------------------------------------------------------


@dataclass
class Load:
    answered: dict[str, float] = field(default_factory=dict)
    errors: int = 0
    started: float = 0.0
    finished: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


def add_users(server: Server, token: str, root: str, users: int, clients: int) -> Load:
    """`users` addUser calls with an invitation, from `clients` threads at once."""
    load = Load()
    prefix = uuid.uuid4().hex[:6]
    per_client = [range(i, users, clients) for i in range(clients)]
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def client(numbers: range) -> None:
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as http:
            for n in numbers:
                address = f"b{prefix}{n}@example.com"
                body = {
                    "departmentId": root,
                    "fields": {"login": f"b{prefix}.{n}", "email": address},
                    "sendLoginEmail": True,
                    "invitationMessage": "Welcome to the benchmark!",
                }
                response = http.post("/user", json=body)
                at = time.time()
                with load.lock:
                    if response.status_code == 201:
                        load.answered[address] = at
                    else:
                        load.errors += 1

    load.started = time.time()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, per_client))
    load.finished = time.time()
    return load


class BacklogWatch(threading.Thread):
    """Polls /health for the outbox backlog."""

    def __init__(self, base_url: str) -> None:
        super().__init__(daemon=True)
        self.base_url = base_url
        self.largest = 0
        self.oldest = 0.0
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(0.5):
            with contextlib.suppress(httpx.HTTPError, ValueError):
                health = httpx.get(f"{self.base_url}/health", timeout=5).json()
                self.largest = max(self.largest, int(health.get("outboxBacklog") or 0))
                self.oldest = max(self.oldest, float(health.get("outboxOldestPendingSeconds") or 0))

    def stop(self) -> None:
        self._stopped.set()
        self.join(5)


def wait_for(path: Path, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if count_lines(path) >= count:
            return
        time.sleep(0.2)
    log(f"only {count_lines(path)} of {count} messages arrived within {timeout:.0f} s")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# ---- the runs --------------------------------------------------------------------------------


@contextlib.contextmanager
def worker_process(database_url: str, log_path: Path, env: dict[str, str]) -> Iterator[None]:
    """`learndir worker` beside the server."""
    with log_path.open("ab") as out:
        worker = subprocess.Popen(
            [str(LEARNDIR), "worker", "--database-url", database_url],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
        try:
            deadline = time.monotonic() + 60
            while "started" not in log_path.read_text(errors="replace"):
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"`learndir worker` did not start; see {log_path}")
                time.sleep(0.1)
            yield
        finally:
            worker.terminate()
            worker.wait(30)


def steady(
    args: argparse.Namespace, database_url: str, work: Path, separate: bool = False
) -> dict[str, Any]:
    """Users added while the worker delivers: inside `learndir serve`, or (`separate`) in a
    `learndir worker` process of its own beside a serve that does not deliver."""
    account = init_account(database_url)
    name = "steady-worker" if separate else "steady"
    with smtp_server(work) as (port, arrivals):
        env = smtp_env(port)
        server_env = {**env, "LEARNDIR_WORKER_ENABLED": "false"} if separate else env
        with (
            serving(database_url, work / f"{name}-server.log", server_env) as server,
            worker_process(database_url, work / f"{name}-worker.log", env)
            if separate
            else contextlib.nullcontext(),
        ):
            token = server.token(account["clientId"], account["clientSecret"])
            watch = BacklogWatch(server.base_url)
            watch.start()
            log(f"{name}: adding {args.users} users with invitations, {args.clients} clients")
            load = add_users(server, token, account["rootDepartmentId"], args.users, args.clients)
            wait_for(arrivals, len(load.answered), timeout=600)
            watch.stop()
        arrived = read_arrivals(arrivals)
    latencies = [arrived[a] - t for a, t in load.answered.items() if a in arrived]
    last = max(arrived.values()) if arrived else load.finished
    return {
        "run": name,
        "users": args.users,
        "clients": args.clients,
        "errors": load.errors,
        "added_per_s": len(load.answered) / (load.finished - load.started),
        "delivered": len(latencies),
        "lost": len(load.answered) - len(latencies),
        "duplicates": count_lines(arrivals) - len(arrived),
        "messages_per_s": len(latencies) / (last - load.started),
        "p50_s": statistics.median(latencies),
        "p99_s": percentile(latencies, 99),
        "max_s": max(latencies),
        "largest_backlog": watch.largest,
        "oldest_pending_s": watch.oldest,
        "add_seconds": load.finished - load.started,
        "drained_after_s": last - load.finished,
    }


def drain(args: argparse.Namespace, database_url: str, work: Path) -> dict[str, Any]:
    account = init_account(database_url)
    with smtp_server(work) as (port, arrivals):
        env = smtp_env(port)
        with serving(
            database_url, work / "drain-server.log", {**env, "LEARNDIR_WORKER_ENABLED": "false"}
        ) as server:
            token = server.token(account["clientId"], account["clientSecret"])
            log(f"drain: queueing {args.users} invitations with the worker off")
            load = add_users(server, token, account["rootDepartmentId"], args.users, args.clients)
        log("drain: starting `learndir worker`")
        with worker_process(database_url, work / "drain-worker.log", env):
            started = time.time()
            wait_for(arrivals, len(load.answered), timeout=600)
        arrived = read_arrivals(arrivals)
    first, last = min(arrived.values()), max(arrived.values())
    return {
        "run": "drain",
        "users": args.users,
        "errors": load.errors,
        "delivered": len(arrived),
        "lost": len(load.answered) - len(set(load.answered) & set(arrived)),
        "duplicates": count_lines(arrivals) - len(arrived),
        "messages_per_s": len(arrived) / (last - started),
        "messages_per_s_after_first": (len(arrived) - 1) / max(1e-9, last - first),
        "first_after_s": first - started,
        "seconds": last - started,
    }


RUNS = {
    "steady": steady,
    "steady-worker": lambda args, url, work: steady(args, url, work, separate=True),
    "drain": drain,
}


def smtp_env(port: int) -> dict[str, str]:
    return {
        "LEARNDIR_SMTP_HOST": "127.0.0.1",
        "LEARNDIR_SMTP_PORT": str(port),
        "LEARNDIR_SMTP_SECURITY": "none",
        "LEARNDIR_MAIL_FROM": "bench@learndir.test",
        "LEARNDIR_LOG_LEVEL": "INFO",
    }


@contextlib.contextmanager
def serving(database_url: str, log_path: Path, env: dict[str, str]) -> Iterator[Server]:
    """`learndir serve` with its default processes and `env` on top of this environment."""
    saved = dict(os.environ)
    os.environ.update(env)
    server = Server(database_url, None, log_path, env.get("LEARNDIR_LOG_LEVEL", "INFO"))
    try:
        server.start()
        yield server
    finally:
        server.stop()
        os.environ.clear()
        os.environ.update(saved)


# ---- report ----------------------------------------------------------------------------------


def report(db: str, results: list[dict[str, Any]], argv: list[str]) -> str:
    machine = machine_summary()
    command = " ".join(["bench/invitations.py", *argv])
    today = datetime.date.today().isoformat()
    rows = []
    for r in results:
        load = "{:.1f}, {:.1f}".format(*r["load_average"])
        if r["run"].startswith("steady"):
            where = (
                "a `learndir worker` beside serve"
                if r["run"] == "steady-worker"
                else "worker in serve"
            )
            rows.append(
                [
                    f"steady: {r['users']:,} addUser at {r['clients']} clients, {where}",
                    load,
                    f"{r['added_per_s']:.0f}",
                    f"{r['messages_per_s']:.0f}",
                    f"{r['p50_s'] * 1000:.0f} ms",
                    f"{r['p99_s'] * 1000:.0f} ms",
                    f"{r['max_s'] * 1000:.0f} ms",
                    f"{r['largest_backlog']:,}",
                    f"{r['lost']} / {r['duplicates']}",
                ]
            )
        else:
            rows.append(
                [
                    f"drain: {r['users']:,} queued, one `learndir worker`",
                    load,
                    "",
                    f"{r['messages_per_s']:.0f}",
                    "",
                    "",
                    "",
                    f"{r['users']:,}",
                    f"{r['lost']} / {r['duplicates']}",
                ]
            )
    header = [
        "run",
        "load avg (start, end)",
        "addUser/s",
        "messages/s",
        "p50 addUser->arrival",
        "p99",
        "max",
        "largest backlog",
        "lost / repeated",
    ]
    return "\n".join(
        [
            f"### Invitations to a local SMTP server, {db} "
            f"({today}, learndir `{machine['learndir']}`)",
            "",
            f"Measured with `.venv/bin/python {command}` on {machine['cpus']} cores "
            f"({machine['cpu']}), Python {machine['python']}, SQLite {machine['sqlite']}; "
            "`learndir serve` with its default processes, the clients (threads of the script) "
            "and the SMTP server (aiosmtpd) on the same cores. Load average: the machine's "
            "1-minute load when the run started and ended (other work on the machine shows "
            "there).",
            "",
            markdown_table(header, rows),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], required=True)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--runs",
        nargs="+",
        choices=list(RUNS),
        default=list(RUNS),
        help="steady: the worker in serve; steady-worker: in a process of its own; drain",
    )
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--logs", type=Path, help="keep the server and worker logs here")
    parser.add_argument("--write-docs", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args(argv)
    stop_cleanly_on_sigterm()
    version = code_version()
    results = []
    with tempfile.TemporaryDirectory(prefix="learndir-invitations-") as tmp:
        work = args.logs or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for run in args.runs:
            with fresh_database(args.db, args.postgres_url) as url:
                load_before = os.getloadavg()[0]
                results.append(RUNS[run](args, url, work))
                results[-1]["load_average"] = [load_before, os.getloadavg()[0]]
                log(json.dumps(results[-1]))
    text = report(args.db, results, argv)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine_summary(), "results": results}))
    if code_version() != version:
        print(f"\nthe code changed during the run ({version} -> {code_version()})")
        return 1
    if args.write_docs:
        DOCS.write_text(DOCS.read_text().rstrip("\n") + "\n\n" + text)
        log(f"appended the results to {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
