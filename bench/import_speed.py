"""Bulk import speed and memory: `learndir import` as a user runs it, timed end to end (the
process starts, reads the file, applies it, prints its summary), with each run's peak RSS.

Per database, in a fresh database with bench/import_account.yaml (10 departments, 3 groups, 2
custom profile fields, no seat limit):
- 50,000 new users from a CSV (no passwords) into the empty account, then the same file
  again (nothing to change);
- a 100,000-row sync where 1% of the rows changed (the 100,000 users imported first);
- peak RSS of an import of 50,000 and of 200,000 rows (memory must not grow with the file).
No planner statistics are gathered (autovacuum is off on the benchmark server).

    .venv/bin/python bench/import_speed.py                       # SQLite and PostgreSQL
    .venv/bin/python bench/import_speed.py --db sqlite --skip-200k
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness import (
    LEARNDIR,
    code_version,
    fresh_database,
    init_account,
    log,
    machine_summary,
    markdown_table,
    wait_until_quiet,
)

ACCOUNT_FILE = Path(__file__).with_name("import_account.yaml")
ACCOUNT_URL = "http://import.bench.learndir.test"
HEADER = "Login,Email,First Name,Last Name,Employee ID,Cost Center,Department code,Group"
GROUPS = ("Newcomers", "Managers", "Remote")


def write_file(path: Path, rows: int, *, changed_every: int = 0) -> Path:
    """`rows` users; with `changed_every`, every n-th row's first name differs."""
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(HEADER + "\n")
        for i in range(rows):
            first = f"First{i}"
            if changed_every and i % changed_every == 0:
                first = f"Changed{i}"
            out.write(
                f"user{i:06d},user{i:06d}@import.test,{first},Last{i},E{i:06d},"
                f"CC{i % 40:02d},d{i % 10 + 1:02d},{GROUPS[i % 3]}\n"
            )
    return path


def run_import(database_url: str, path: Path, *extra: str) -> dict[str, object]:
    """One `learndir import` process: wall time, peak RSS (MiB) and its JSON summary."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            str(LEARNDIR),
            "import",
            str(path),
            "--account-url",
            ACCOUNT_URL,
            "--database-url",
            database_url,
            "--json",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sampler = _AnonSampler(process.pid)
    sampler.start()
    stdout, stderr = process.communicate()
    seconds = time.perf_counter() - started
    sampler.join()
    # The child's own resource usage: its peak resident set.
    rss_kib = _peak_rss_kib(process.pid)
    if process.returncode != 0:
        raise SystemExit(f"learndir import failed ({process.returncode}): {stderr[-2000:]}")
    summary = json.loads(stdout)
    return {
        "seconds": seconds,
        "rss_mib": rss_kib / 1024,
        "anon_mib": sampler.peak_kib / 1024,
        "summary": summary,
    }


class _AnonSampler(threading.Thread):
    """The process's own memory (RssAnon: heap, stacks), sampled every 50 ms. The peak RSS
    also counts the pages of the database file SQLite reads through its memory map, which
    grow with the database, not with the import file."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_kib = 0

    def run(self) -> None:
        path = Path(f"/proc/{self.pid}/status")
        while True:
            try:
                text = path.read_text()
            except OSError:
                return
            for line in text.splitlines():
                if line.startswith("RssAnon:"):
                    self.peak_kib = max(self.peak_kib, int(line.split()[1]))
            if "State:\tZ" in text:
                return
            time.sleep(0.05)


_RUSAGE: dict[int, int] = {}


def _peak_rss_kib(pid: int) -> int:
    return _RUSAGE.get(pid, 0)


def _reap_with_rusage() -> None:
    """Popen reaps its child itself; wrap os.waitpid so that the rusage of each child is kept
    (os.wait4 returns it)."""
    original = os.waitpid

    def waitpid(pid: int, options: int) -> tuple[int, int]:
        if pid <= 0:
            return original(pid, options)
        got, status, usage = os.wait4(pid, options)
        if got:
            _RUSAGE[got] = usage.ru_maxrss
        return got, status

    os.waitpid = waitpid  # type: ignore[assignment]


def measure(kind: str, skip_200k: bool) -> list[list[str]]:
    rows: list[list[str]] = []
    work = Path(tempfile.mkdtemp(prefix="learndir-import-bench-"))

    def record(what: str, result: dict[str, object], target: str) -> None:
        summary = result["summary"]
        assert isinstance(summary, dict)
        totals = summary["totals"]
        total_rows = summary["rows"]
        seconds = float(result["seconds"])  # type: ignore[arg-type]
        line = [
            kind,
            what,
            f"{total_rows:,}",
            f"{seconds:.1f}",
            f"{total_rows / seconds:,.0f}",
            f"{float(result['rss_mib']):.0f}",  # type: ignore[arg-type]
            f"{float(result['anon_mib']):.0f}",  # type: ignore[arg-type]
            ", ".join(f"{k} {v:,}" for k, v in totals.items() if v),
            target,
        ]
        log(" | ".join(line))
        rows.append(line)

    with fresh_database(kind) as url:
        init_account(url, ACCOUNT_FILE)
        fifty = write_file(work / "users-50k.csv", 50_000)
        wait_until_quiet()
        record("50,000 new users", run_import(url, fifty), "< 10 s SQLite, < 20 s PostgreSQL")
        wait_until_quiet()
        record("the same file again", run_import(url, fifty), "< 5 s")
    with fresh_database(kind) as url:
        init_account(url, ACCOUNT_FILE)
        hundred = write_file(work / "users-100k.csv", 100_000)
        wait_until_quiet()
        record("100,000 new users", run_import(url, hundred), "-")
        changed = write_file(work / "users-100k-1pct.csv", 100_000, changed_every=100)
        wait_until_quiet()
        record("sync of 100,000, 1% changed", run_import(url, changed, "--mode", "sync"), "< 15 s")
    if not skip_200k:
        with fresh_database(kind) as url:
            init_account(url, ACCOUNT_FILE)
            big = write_file(work / "users-200k.csv", 200_000)
            wait_until_quiet()
            record("200,000 new users", run_import(url, big), "memory flat")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--skip-200k", action="store_true", help="Leave out the 200,000 rows.")
    args = parser.parse_args()
    _reap_with_rusage()
    log(f"learndir {code_version()}")
    log(json.dumps(machine_summary()))
    kinds = ("sqlite", "postgres") if args.db == "both" else (args.db,)
    table: list[list[str]] = []
    for kind in kinds:
        table.extend(measure(kind, args.skip_200k))
    header = [
        "db",
        "run",
        "rows",
        "seconds",
        "rows/s",
        "peak RSS MiB",
        "peak anon MiB",
        "totals",
        "target",
    ]
    print(markdown_table(header, table))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
