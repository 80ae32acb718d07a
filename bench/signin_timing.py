"""What a failed sign-in tells by its timing: the answer times of a wrong password, an unknown
login, an unknown account and a user without a password (X-Auth headers on REST), against
`learndir serve` on a fresh database. They must not differ by more than 10% (medians).

The server runs with throttling thresholds out of reach: this measures what a failure costs,
not the lock that follows five of them (tests/api/test_signin.py covers that).

    .venv/bin/python bench/signin_timing.py --db sqlite --samples 200

The token endpoint's two failures (a wrong secret, an unknown client_id) are timed the same way,
as a table of their own (they cost a hash comparison, not Argon2).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from harness import (
    code_version,
    fresh_database,
    init_account,
    log,
    machine_summary,
    markdown_table,
    running_server,
    wait_until_quiet,
)


def _user_without_password(base: str, token: str, root_id: str) -> str:
    login = f"nopass.{uuid.uuid4().hex[:8]}"
    answer = httpx.post(
        f"{base}/user",
        json={"login": login, "departmentId": root_id},
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        timeout=30,
    )
    answer.raise_for_status()
    return login


def measure(kind: str, samples: int) -> list[list[str]]:
    os.environ["LEARNDIR_SIGNIN_LOGIN_THRESHOLD"] = "100000000"
    os.environ["LEARNDIR_SIGNIN_ADDRESS_THRESHOLD"] = "100000000"
    with fresh_database(kind) as url, tempfile.TemporaryDirectory() as logs:
        account = init_account(url)
        with running_server(url, 1, Path(logs) / "server.log") as server:
            base = f"http://127.0.0.1:{server.port}"
            account_url = account["accountUrl"]
            token = server.token(account["clientId"], account["clientSecret"])
            nopass = _user_without_password(base, token, account["rootDepartmentId"])
            cases = {
                "wrong password": (account_url, "bench.owner", "Not-The-Password-1"),
                "unknown login": (account_url, f"nobody.{uuid.uuid4().hex[:6]}", "Whatever-1"),
                "unknown account": ("http://nowhere.example", "bench.owner", "Whatever-1"),
                "user without a password": (account_url, nopass, "Whatever-1"),
            }
            tokens = {
                "token: wrong client_secret": (account["clientId"], "not-the-secret"),
                "token: unknown client_id": (uuid.uuid4().hex, "not-the-secret"),
            }
            wait_until_quiet()
            with httpx.Client(base_url=base, timeout=30) as http:

                def sign_in(case: tuple[str, str, str]) -> httpx.Response:
                    url, login, password = case
                    return http.get(
                        "/user",
                        headers={
                            "X-Auth-Account-Url": url,
                            "X-Auth-Email": login,
                            "X-Auth-Password": password,
                        },
                    )

                def buy_token(case: tuple[str, str]) -> httpx.Response:
                    client_id, secret = case
                    return http.post(
                        "/api/v3/token",
                        data={
                            "client_id": client_id,
                            "client_secret": secret,
                            "grant_type": "client_credentials",
                        },
                    )

                rows = _timed(kind, cases, sign_in, samples)
                rows += _timed(kind, tokens, buy_token, samples)
    return rows


def _timed(
    kind: str, cases: dict[str, Any], call: Callable[[Any], httpx.Response], samples: int
) -> list[list[str]]:
    """Median and p90 answer time of each case, sampled in rotating order so that a busy
    moment of the machine falls on every case alike (the first 10 rounds warm up)."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for round_ in range(samples + 10):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            answer = call(cases[name])
            elapsed = time.perf_counter() - started
            assert answer.status_code == 401, answer.text
            if round_ >= 10:
                times[name].append(elapsed)
    medians = {name: statistics.median(t) for name, t in times.items()}
    low = min(medians.values())
    rows = []
    for name, t in times.items():
        ordered = sorted(t)
        rows.append(
            [
                kind,
                name,
                f"{medians[name] * 1000:.1f}",
                f"{ordered[int(len(ordered) * 0.9)] * 1000:.1f}",
                f"+{(medians[name] / low - 1) * 100:.1f}%",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    log(f"learndir {code_version()}; {machine_summary()}")
    rows = [row for kind in kinds for row in measure(kind, args.samples)]
    print(
        markdown_table(
            ["database", "failed sign-in", "median ms", "p90 ms", "median above the fastest"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
