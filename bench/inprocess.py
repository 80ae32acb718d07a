"""The CPU one addUser costs inside a server process, without the network or the load generator.

Builds the real application (`create_app`) on a fresh database, gets a token through
`/api/v3/token`, then sends addUser requests to the ASGI application directly (raw ASGI
messages, as uvicorn would) and reports the CPU time per request. With `--profile` the timed
requests run under pyinstrument and its report follows, so each change to the hot path can be
measured before and after:

    .venv/bin/python bench/inprocess.py --db sqlite --requests 3000
    .venv/bin/python bench/inprocess.py --db postgres --transport soap --profile

This measures learndir's own share of a request (routing, middleware, parsing, the core, the
statements through SQLAlchemy and the driver); uvicorn's HTTP parsing and the socket writes
come on top (see docs/benchmarks.md, "the HTTP floor").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness


def _body(transport: str, login: str, department: str, token: str) -> tuple[bytes, list]:
    email = f"{login}@bench.test"
    if transport == "rest-json":
        body = json.dumps(
            {"departmentId": department, "fields": {"login": login, "email": email}}
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"accept", b"application/json"),
            (b"authorization", b"Bearer " + token.encode()),
        ]
        return body, headers
    if transport == "rest-xml":
        body = (
            f"<request><departmentId>{department}</departmentId><fields><login>{login}</login>"
            f"<email>{email}</email></fields></request>"
        ).encode()
        return body, [
            (b"content-type", b"application/xml"),
            (b"authorization", b"Bearer " + token.encode()),
        ]
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns="http://ispringlearn.com/go/services/api/soap"><SOAP-ENV:Body>'
        f"<AddUserRequest><token>{token}</token><login>{login}</login><email>{email}</email>"
        f"<departmentId>{department}</departmentId></AddUserRequest></SOAP-ENV:Body>"
        "</SOAP-ENV:Envelope>"
    ).encode()
    return body, [(b"content-type", b"text/xml; charset=utf-8"), (b"soapaction", b'"addUser"')]


async def _request(
    app: Any, method: str, path: str, headers: list, body: bytes
) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8080"),
            (b"content-length", str(len(body)).encode()),
            *headers,
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    data = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, data


async def _run(args: argparse.Namespace, database_url: str) -> None:
    account = harness.init_account(database_url)
    os.environ["LEARNDIR_DATABASE_URL"] = database_url
    os.environ["LEARNDIR_WORKER_ENABLED"] = "false"
    os.environ.setdefault("LEARNDIR_LOG_LEVEL", "WARNING")
    from learndir.api.app import create_app
    from learndir.settings import Settings

    app = create_app(Settings())
    async with app.router.lifespan_context(app):
        form = urllib.parse.urlencode(
            {
                "client_id": account["clientId"],
                "client_secret": account["clientSecret"],
                "grant_type": "client_credentials",
            }
        ).encode()
        status, data = await _request(
            app,
            "POST",
            "/api/v3/token",
            [(b"content-type", b"application/x-www-form-urlencoded")],
            form,
        )
        assert status == 200, data
        token = json.loads(data)["access_token"]
        department = account["rootDepartmentId"]
        path = "/soap" if args.transport == "soap" else "/user"

        async def one(i: int) -> float:
            body, headers = _body(args.transport, f"u{i}", department, token)
            started = time.process_time()
            status, data = await _request(app, "POST", path, headers, body)
            spent = time.process_time() - started
            if status not in (200, 201):
                raise SystemExit(f"addUser answered {status}: {data[:300]!r}")
            return spent

        for i in range(args.warmup):
            await one(i)
        profiler = None
        if args.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0002, async_mode="disabled")
            profiler.start()
        wall = time.perf_counter()
        cpu = [await one(args.warmup + i) for i in range(args.requests)]
        wall = time.perf_counter() - wall
        if profiler is not None:
            profiler.stop()
        cpu_ms = sorted(c * 1000 for c in cpu)
        print(
            f"{args.db} {args.transport}: {args.requests} addUser, CPU per request "
            f"median {statistics.median(cpu_ms):.3f} ms, mean {statistics.fmean(cpu_ms):.3f} ms, "
            f"p90 {cpu_ms[int(len(cpu_ms) * 0.9)]:.3f} ms; wall {wall * 1000 / args.requests:.3f} "
            "ms per request"
        )
        if profiler is not None:
            print(profiler.output_text(unicode=True, color=False, show_all=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--transport", choices=("rest-json", "rest-xml", "soap"), default="rest-json"
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--profile", action="store_true", help="pyinstrument the timed requests")
    parser.add_argument("--postgres-url", default=harness.DEFAULT_POSTGRES_URL)
    args = parser.parse_args()
    with harness.fresh_database(args.db, args.postgres_url) as database_url:
        asyncio.run(_run(args, database_url))


if __name__ == "__main__":
    main()
