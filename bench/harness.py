"""What the benchmarks share: a throw-away database, the account, the server process, the wrk
load process, CPU accounting and the check that the database holds the users the load was told
were created.

Everything runs on 127.0.0.1. The load is wrk (bench/adduser.lua), a separate process that
costs little CPU next to the server on the same cores.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import func, select, text

from learndir.cli.main import default_workers
from learndir.core.passwords import hash_password
from learndir.db.engine import nullpool_engine
from learndir.db.schema import users

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
LEARNDIR = Path(sys.executable).with_name("learndir")
ACCOUNT_FILE = BENCH_DIR / "account.yaml"
LUA_SCRIPT = BENCH_DIR / "adduser.lua"
DEFAULT_POSTGRES_URL = "postgresql://root@127.0.0.1:5432/postgres"
PASSWORD = "Bench-Pass-123"
TRANSPORTS = ("soap", "rest-xml", "rest-json")
DEFAULT_WORKERS = {"sqlite": 1, "postgres": 2}
TICKS = os.sysconf("SC_CLK_TCK")
# Cores other processes may take during a run before it counts as distorted and is repeated.
NOISE_LIMIT = 0.15


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def stop_cleanly_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl+C, so the server is stopped and the database dropped."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


# ---- databases ---------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(kind: str, postgres_url: str = DEFAULT_POSTGRES_URL) -> Iterator[str]:
    """A new, empty database for one benchmark, removed afterwards; yields its URL."""
    if kind == "sqlite":
        directory = tempfile.mkdtemp(prefix="learndir-bench-")
        try:
            yield f"sqlite:///{directory}/bench.db"
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return
    if kind != "postgres":
        raise ValueError(f"unknown database kind {kind!r}")
    name = f"learndir_bench_{secrets.token_hex(4)}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        parts = urllib.parse.urlsplit(postgres_url)
        yield urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def init_account(database_url: str, account_file: Path = ACCOUNT_FILE) -> dict[str, str]:
    """`learndir init` with a benchmark account; returns its ids and API key."""
    out = subprocess.run(
        [
            str(LEARNDIR),
            "init",
            "--account-file",
            str(account_file),
            "--database-url",
            database_url,
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, str] = json.loads(out.stdout)
    return result


class UserCounter:
    """Counts users straight from the database: all of the account's, or those one load run
    added (every run gives its logins a prefix of its own)."""

    def __init__(self, database_url: str, account_id: str) -> None:
        self.engine = nullpool_engine(database_url)
        self.account_id = account_id

    def count(self, login_prefix: str | None = None) -> int:
        query = select(func.count()).select_from(users).where(users.c.account_id == self.account_id)
        if login_prefix is not None:
            query = query.where(users.c.login_key.startswith(login_prefix.casefold() + "."))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def settled(self, login_prefix: str, steady: float = 2.0, timeout: float = 30.0) -> int:
        """The run's users once the requests still running in the server have finished: the
        count has not changed for `steady` seconds."""
        previous, since = self.count(login_prefix), time.monotonic()
        deadline = since + timeout
        while time.monotonic() < deadline:
            time.sleep(0.25)
            current = self.count(login_prefix)
            if current != previous:
                previous, since = current, time.monotonic()
            elif time.monotonic() - since >= steady:
                break
        return previous

    def postgres_sessions(self) -> int | None:
        """Connections ever opened to this PostgreSQL database (None on SQLite)."""
        if self.engine.dialect.name != "postgresql":
            return None
        with self.engine.connect() as conn:
            query = text("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
            return int(conn.execute(query).scalar_one())

    def close(self) -> None:
        self.engine.dispose()


# ---- the server --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    database_url: str
    # None: `learndir serve` without --workers, its default (one process per core).
    workers: int | None
    log_path: Path
    log_level: str = "INFO"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def postgres_database(self) -> str | None:
        """The database's name on PostgreSQL, None on SQLite."""
        if not self.database_url.startswith("postgres"):
            return None
        return urllib.parse.urlsplit(self.database_url).path.lstrip("/")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        env = {**os.environ, "LEARNDIR_LOG_LEVEL": self.log_level}
        workers = [] if self.workers is None else ["--workers", str(self.workers)]
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                [
                    str(LEARNDIR),
                    "serve",
                    "--database-url",
                    self.database_url,
                    "--port",
                    str(self.port),
                    *workers,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited; see {self.log_path}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as response,
            ):
                if response.status == 200 and self._all_workers_up():
                    return
            time.sleep(0.2)
        raise RuntimeError(f"the server did not come up; see {self.log_path}")

    def _all_workers_up(self) -> bool:
        workers = self.workers or default_workers()
        if workers == 1:
            return True
        text = self.log_path.read_text(errors="replace")
        return text.count("Application startup complete") >= workers

    def pids(self) -> list[int]:
        """The server process and all its descendants (uvicorn's worker processes)."""
        if self.process is None:
            return []
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    ppid = int(_proc_stat(int(entry.name))[1])
                    children.setdefault(ppid, []).append(int(entry.name))
        found, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def token(self, client_id: str, client_secret: str) -> str:
        data = urllib.parse.urlencode(
            {
                "client_id": client_id,
                "client_secret": client_secret,
                "grant_type": "client_credentials",
            }
        ).encode()
        request = urllib.request.Request(f"{self.base_url}/api/v3/token", data=data)
        with urllib.request.urlopen(request, timeout=10) as response:
            token: str = json.load(response)["access_token"]
            return token


@contextlib.contextmanager
def running_server(
    database_url: str, workers: int | None, log_path: Path, log_level: str = "INFO"
) -> Iterator[Server]:
    server = Server(database_url, workers, log_path, log_level)
    try:
        server.start()
        yield server
    finally:
        server.stop()


# ---- CPU accounting ----------------------------------------------------------------------


def _proc_stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def _process_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = _proc_stat(pid)
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def _machine_ticks() -> tuple[int, int, int]:
    """Ticks of all CPUs since boot: (processes, interrupts, steal). Interrupt time is kernel
    work (mostly loopback networking) that /proc charges to no process."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return user + nice + system, irq + softirq, steal


def _pids_named(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
    return found


def wait_until_quiet(limit: float = 0.15, patience: float = 120.0) -> float:
    """Waits (up to `patience` s) until the machine, idle between runs, uses under `limit` of a
    core; returns the last measured use so the caller can report a noisy machine."""
    deadline = time.monotonic() + patience
    warned = False
    while True:
        busy0, irq0, _ = _machine_ticks()
        time.sleep(1.0)
        busy1, irq1, _ = _machine_ticks()
        used = (busy1 + irq1 - busy0 - irq0) / TICKS
        if used < limit or time.monotonic() > deadline:
            return used
        if not warned:
            log(f"  waiting for the machine to be quiet (something uses {used:.2f} cores)")
            warned = True


@dataclass
class CpuUse:
    """Cores used on average during a run: by the learndir server, by PostgreSQL, by the load
    (wrk), by other processes, by the kernel's interrupt handling (loopback networking), and
    stolen by the hypervisor."""

    server: float
    database: float
    load: float
    other: float
    interrupts: float
    steal: float


_PG_SHARED_PROCESSES = (
    "checkpointer",
    "background writer",
    "walwriter",
    "autovacuum launcher",
    "logical replication launcher",
    "archiver",
)


def _postgres_ticks(database: str | None) -> dict[int, int]:
    """CPU ticks of the PostgreSQL processes working for `database`: its live backends, the
    server's shared processes (WAL writer, checkpointer, ...), and under key 0 the backends that
    have exited (the postmaster reaped them, so their time is in its children's times; these
    are the benchmark's own short-lived connections unless others use the server meanwhile).
    Live backends of other databases are left to "other"."""
    ticks: dict[int, int] = {}
    if database is None:
        return ticks
    for pid in _pids_named("postgres"):
        with contextlib.suppress(OSError):
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if not title.startswith("postgres: "):  # the postmaster, or a fresh fork of it
                fields = _proc_stat(pid)
                ticks[pid] = int(fields[11]) + int(fields[12])
                if int(fields[1]) == 1:
                    ticks[0] = int(fields[13]) + int(fields[14])
                continue
            activity = title.split(": ", 2)[-1].strip()
            if activity.startswith(_PG_SHARED_PROCESSES) or database in activity.split():
                ticks[pid] = _process_ticks([pid])
    return ticks


class CpuMeter:
    """The CPU used while the block runs, by whom."""

    def __init__(self, server_pids: list[int], database: str | None = None) -> None:
        self.server_pids = server_pids
        self.database_name = database

    def __enter__(self) -> CpuMeter:
        self.started = time.monotonic()
        self.busy, self.interrupts, self.steal = _machine_ticks()
        self.server = _process_ticks(self.server_pids)
        self.database = _postgres_ticks(self.database_name)
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.children = usage.ru_utime + usage.ru_stime
        return self

    def __exit__(self, *_exc: object) -> None:
        elapsed = time.monotonic() - self.started
        busy, interrupts, steal = _machine_ticks()
        server = (_process_ticks(self.server_pids) - self.server) / TICKS
        # Totals, not per process: a backend that exits moves its time into the postmaster's
        # children's times, which are in the total too.
        now = _postgres_ticks(self.database_name)
        database = (sum(now.values()) - sum(self.database.values())) / TICKS
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        load = usage.ru_utime + usage.ru_stime - self.children
        total = (busy - self.busy) / TICKS
        self.use = CpuUse(
            server=server / elapsed,
            database=database / elapsed,
            load=load / elapsed,
            other=max(0.0, total - server - database - load) / elapsed,
            interrupts=(interrupts - self.interrupts) / TICKS / elapsed,
            steal=(steal - self.steal) / TICKS / elapsed,
        )


# ---- the load ----------------------------------------------------------------------------


@dataclass
class LoadResult:
    duration_s: float
    sent: int
    responses: int
    ok: int
    bad_status: dict[str, int]
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    cpu: CpuUse | None = None
    created: int | None = None
    users_before: int | None = None  # in the account when the run started
    raw_hash_rate: float | None = None  # Argon2id hashes/s of all cores just before the run
    postgres_connections: int | None = None  # opened by the server during the run
    attempts: int = 1

    @property
    def errors(self) -> int:
        return sum(self.bad_status.values()) + self.socket_errors

    @property
    def users_per_s(self) -> float:
        return self.ok / self.duration_s if self.duration_s else 0.0

    @property
    def in_flight(self) -> int:
        """Requests sent but not answered when the load stopped."""
        return self.sent - self.responses

    @property
    def count_matches(self) -> bool:
        """Every 2xx created a user; requests cut off at the end may or may not have."""
        return self.created is not None and self.ok <= self.created <= self.ok + self.in_flight

    @property
    def noisy(self) -> bool:
        """Other processes took enough CPU during the run to distort it."""
        return self.cpu is not None and self.cpu.other > NOISE_LIMIT

    @property
    def valid(self) -> bool:
        return self.errors == 0 and self.count_matches

    def problems(self) -> list[str]:
        found = []
        if self.bad_status:
            found.append(f"HTTP statuses {self.bad_status}")
        if self.socket_errors:
            found.append(f"{self.socket_errors} socket errors/timeouts")
        if not self.count_matches:
            found.append(
                f"the database gained {self.created} users for {self.ok} successes "
                f"(+{self.in_flight} cut off)"
            )
        return found


def find_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    return wrk


def run_load(
    base_url: str,
    transport: str,
    token: str,
    department_id: str,
    prefix: str,
    *,
    clients: int,
    duration: int | None = None,
    max_responses: int = 0,
    with_password: bool = False,
    threads: int = 1,
    timeout_s: int = 30,
) -> LoadResult:
    """One wrk run: `clients` keep-alive connections, each sending addUser back to back, for
    `duration` seconds or until `max_responses` responses (then one wrk thread)."""
    if max_responses:
        threads = 1
    threads = max(1, min(threads, clients))
    seconds = max(1, duration) if duration is not None else 3600
    command = [
        find_wrk(),
        f"-t{threads}",
        f"-c{clients}",
        f"-d{seconds}s",
        f"--timeout={timeout_s}s",
        "-s",
        str(LUA_SCRIPT),
        base_url,
        "--",
        transport,
        token,
        department_id,
        prefix,
        PASSWORD if with_password else "-",
        str(max_responses),
    ]
    lines = []
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as wrk:
        assert wrk.stdout is not None
        try:
            for output in wrk.stdout:
                lines.append(output.rstrip("\n"))
                if output.startswith("BENCH_STOPPED"):
                    wrk.send_signal(signal.SIGINT)  # wrk then reports and exits
        except BaseException:
            wrk.kill()
            raise
    line = next((x for x in lines if x.startswith("BENCH_RESULT ")), None)
    if wrk.returncode != 0 or line is None:
        joined = "\n".join(lines)
        raise RuntimeError(f"wrk failed ({wrk.returncode}):\n{joined}")
    raw: dict[str, Any] = json.loads(line.removeprefix("BENCH_RESULT "))
    return LoadResult(
        duration_s=raw["duration_us"] / 1e6,
        sent=raw["sent"],
        responses=raw["responses"],
        ok=raw["ok"],
        bad_status=raw["bad_status"],
        socket_errors=raw["connect_errors"]
        + raw["read_errors"]
        + raw["write_errors"]
        + raw["timeouts"],
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
    )


def measured_load(server: Server, counter: UserCounter, **load: Any) -> LoadResult:
    """run_load, with the CPU each side used and the users the database gained."""
    users_before = counter.count()
    sessions_before = counter.postgres_sessions()
    with CpuMeter(server.pids(), server.postgres_database) as meter:
        result = run_load(server.base_url, **load)
    result.cpu = meter.use
    if sessions_before is not None:
        # Less the one this query opens: the connections the server opened during the run.
        result.postgres_connections = (counter.postgres_sessions() or 0) - sessions_before - 1
    result.users_before = users_before
    result.created = counter.settled(load["prefix"])
    return result


def quiet_load(
    server: Server,
    counter: UserCounter,
    *,
    patience: float = 120.0,
    attempts: int = 3,
    probe_hash_rate: bool = False,
    **load: Any,
) -> LoadResult:
    """measured_load on an idle machine: waits for the CPU to be idle first, and runs again
    (up to `attempts` times) when other processes took more than NOISE_LIMIT cores meanwhile.
    With `probe_hash_rate`, the raw Argon2id rate of the cores is measured just before the run:
    this virtual machine's speed drifts by a fifth from one minute to the next, so a password
    run is compared with the hash rate of the same minute."""
    for attempt in range(1, attempts + 1):
        wait_until_quiet(patience=patience)
        raw_rate = hash_rate(os.cpu_count() or 1, 3.0) if probe_hash_rate else None
        result = measured_load(server, counter, prefix=f"b{secrets.token_hex(4)}", **load)
        result.attempts = attempt
        result.raw_hash_rate = raw_rate
        if not result.noisy:
            break
        assert result.cpu is not None
        log(
            f"  other processes took {result.cpu.other:.2f} cores during the run; "
            + ("running it again" if attempt < attempts else "giving up")
        )
    return result


def _hash_for(seconds: float) -> tuple[int, float]:
    """Hashes back to back for `seconds` with learndir's hasher; returns (hashes, elapsed s)."""
    hash_password(PASSWORD)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        hash_password(PASSWORD)
        count += 1
    return count, time.perf_counter() - started


def hash_rate(workers: int, seconds: float, processes: bool = False) -> float:
    """Argon2id hashes per second of `workers` threads (argon2-cffi releases the GIL) or
    processes hashing at once."""
    if workers == 1:
        count, elapsed = _hash_for(seconds)
        return count / elapsed
    pool_class = ProcessPoolExecutor if processes else ThreadPoolExecutor
    with pool_class(max_workers=workers) as pool:
        results = list(pool.map(_hash_for, [seconds] * workers))
    return sum(count / elapsed for count, elapsed in results)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def code_version() -> str:
    """The last commit that changed src/ (what the server runs), with "+changes" when src/
    differs from it; commits that touch only other files do not change it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("log", "-1", "--format=%h", "--", "src") or "unknown"
    return commit + ("+changes" if git("status", "--porcelain", "--", "src") else "")


def machine_summary() -> dict[str, str]:
    import sqlite3

    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    return {
        "learndir": code_version(),
        "cpus": str(os.cpu_count()),
        "cpu": model,
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
    }
