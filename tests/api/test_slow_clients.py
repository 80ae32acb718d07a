"""Slow and vanishing clients against a real `learndir serve` (one process, SQLite: the
connection handling does not depend on the database): 1,000 connections that are idle or
trickle their headers or body do not slow a normal client down and are closed by the server
after their timeouts; a connection over the cap is refused at once; a client that drops its
upload half-way is one INFO line, not a server error."""

from __future__ import annotations

import asyncio
import gc
import json
import multiprocessing
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import httpx
import pytest

from learndir.db.engine import Database
from tests.conftest import migrated_database
from tests.support import Server, World, acme_spec, make_world, start_server, stop_server

HEADER_TIMEOUT = 4.0
BODY_TIMEOUT = 4.0
LIMITS = {
    "LEARNDIR_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
    "LEARNDIR_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
    "LEARNDIR_KEEPALIVE_TIMEOUT_SECONDS": "2",
}
SLOW_KINDS = ("idle", "headers", "body")


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from migrated_database("sqlite", tmp_path_factory, False)


@pytest.fixture(scope="module")
def w(sqlite_url: str) -> Iterator[World]:
    database = Database(sqlite_url)
    yield make_world(database, acme_spec(seatLimit=None))
    database.dispose()


@pytest.fixture(scope="module")
def slow_server(sqlite_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(sqlite_url, tmp_path_factory.mktemp("logs"), env=LIMITS)
    yield running
    stop_server(running)


# ---- the slow clients, in a process of their own -------------------------------------------


class _Opened:
    count = 0


async def _hold(
    kind: str, port: int, interval: float, give_up: float, connecting: asyncio.Semaphore
) -> tuple[str, float, bytes]:
    """One slow connection: idle, or a byte of headers or body every `interval` seconds, until
    the server closes it. Returns its kind, how long it lived and the start of what it read."""
    async with connecting:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if kind == "headers":
        writer.write(b"GET /health HTTP/1.1\r\nHost: slow\r\nX-Slow: ")
    elif kind == "body":
        writer.write(
            b"POST /user HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n{"
        )
    opened = time.monotonic()
    _Opened.count += 1
    reading = asyncio.ensure_future(reader.read(4096))
    while time.monotonic() - opened < give_up:
        done, _ = await asyncio.wait({reading}, timeout=interval)
        if done:
            break
        if kind != "idle":
            writer.write(b"a")
    lived = time.monotonic() - opened
    try:
        answer = reading.result() if reading.done() else b"still open"
    except OSError:
        answer = b""
    reading.cancel()
    writer.close()
    return kind, lived, answer[:12]


async def _attack(
    port: int, per_kind: int, interval: float, give_up: float, pipe: Connection
) -> None:
    connecting = asyncio.Semaphore(100)
    tasks = [
        asyncio.ensure_future(_hold(kind, port, interval, give_up, connecting))
        for kind in SLOW_KINDS
        for _ in range(per_kind)
    ]
    while _Opened.count < len(tasks) and not any(t.done() for t in tasks):
        await asyncio.sleep(0.01)
    pipe.send(("open", _Opened.count))
    results = await asyncio.gather(*tasks, return_exceptions=True)
    pipe.send(
        (
            "closed",
            [r if isinstance(r, tuple) else ("error", 0.0, repr(r).encode()) for r in results],
        )
    )


def slow_clients(
    port: int, per_kind: int, interval: float, give_up: float, pipe: Connection
) -> None:
    """The slow connections, run in a process of their own so that their work does not slow
    the normal client's measurements."""
    asyncio.run(_attack(port, per_kind, interval, give_up, pipe))


# ---- tests ------------------------------------------------------------------------------------


def test_a_thousand_slow_connections_do_not_starve_a_normal_client(
    slow_server: Server, w: World
) -> None:
    port = int(slow_server.base_url.rsplit(":", 1)[1])
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    attacker = context.Process(target=slow_clients, args=(port, 334, 0.5, 30.0, theirs))
    headers = {"Authorization": f"Bearer {w.token('owner')}", "Accept": "application/json"}
    calls = [("/health", {}), (f"/user/{w.users['owner']}", headers)]
    latencies: dict[str, list[float]] = {"/health": [], "/user/{id}": []}
    opened = 0
    attacker.start()
    # This process's own collector would show in the timings as the server's latency.
    gc.disable()
    try:
        with httpx.Client(base_url=slow_server.base_url, timeout=10) as client:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if ours.poll():
                    message, value = ours.recv()
                    if message == "closed":
                        results = value
                        break
                    opened = value
                for path, call_headers in calls:
                    started = time.perf_counter()
                    response = client.get(path, headers=call_headers)
                    elapsed = (time.perf_counter() - started) * 1000
                    assert response.status_code == 200, response.text
                    if opened:
                        latencies["/health" if path == "/health" else "/user/{id}"].append(elapsed)
                time.sleep(0.05)
            else:
                pytest.fail("the slow connections were not closed within 60 s")
    finally:
        gc.enable()
        attacker.join(timeout=10)
        if attacker.is_alive():
            attacker.kill()
    assert opened == 1002
    for path, measured in latencies.items():
        measured.sort()
        print(
            f"{path}: {len(measured)} calls while 1,002 slow connections were open: "
            f"median {measured[len(measured) // 2]:.1f} ms, "
            f"p95 {measured[len(measured) * 95 // 100]:.1f} ms, max {measured[-1]:.1f} ms"
        )
        assert len(measured) >= 20
        # Measured: every call under 30 ms. The margin is for the suite's other worker, which
        # shares the 2 cores and can hold a CPU for a moment, and for the virtual machine's
        # host taking a core now and then (seen in CI: 3 calls of 46 at 108-187 ms with the
        # host stealing CPU); a starved client waits seconds, and none may wait long.
        assert sum(ms >= 100 for ms in measured) <= len(measured) // 10, measured[-5:]
        assert measured[len(measured) // 2] < 50, measured[len(measured) // 2]
        assert measured[-1] < 1000, measured[-5:]
    by_kind: dict[str, list[tuple[float, bytes]]] = {}
    for kind, lived, answer in results:
        by_kind.setdefault(kind, []).append((lived, answer))
    assert set(by_kind) == set(SLOW_KINDS), by_kind.get("error", [])[:3]
    for kind, closed in by_kind.items():
        lives = sorted(lived for lived, _ in closed)
        print(f"{kind}: closed by the server after {lives[0]:.1f}-{lives[-1]:.1f} s")
        timeout = BODY_TIMEOUT if kind == "body" else HEADER_TIMEOUT
        assert timeout - 0.5 < lives[0] and lives[-1] < timeout + 3
        expected = b"" if kind == "idle" else b"HTTP/1.1 408"
        assert {answer for _, answer in closed} == {expected}
    log = slow_server.log_path.read_text()
    assert "Traceback" not in log and " ERROR " not in log
    assert log.count("request body timed out") >= 334
    assert "whose request headers did not arrive within 4 s" in log


def test_a_connection_over_the_cap_is_refused_at_once(sqlite_url: str, tmp_path: Path) -> None:
    server = start_server(
        sqlite_url,
        tmp_path,
        env={**LIMITS, "LEARNDIR_MAX_CONNECTIONS": "20", "LEARNDIR_HEADER_TIMEOUT_SECONDS": "2"},
    )
    port = int(server.base_url.rsplit(":", 1)[1])
    idle = []
    try:
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        time.sleep(0.2)
        started = time.perf_counter()
        assert _refused(f"{server.base_url}/health")
        assert time.perf_counter() - started < 0.5
        # The idle connections time out; then everyone is served again.
        time.sleep(2.5)
        assert httpx.get(f"{server.base_url}/health", timeout=5).status_code == 200
    finally:
        for connection in idle:
            connection.close()
        stop_server(server)
    assert "refused 1 connection(s): 20 are open" in server.log_path.read_text()


def _refused(url: str) -> bool:
    """A refused connection is answered 503, or reset if the client was still writing."""
    try:
        return httpx.get(url, timeout=5).status_code == 503
    except httpx.TransportError:
        return True


def _drop_half_way(server: Server, path: str, headers: dict[str, str], body: bytes) -> str:
    """Sends the headers and half the body, then goes away. Returns the request id."""
    request_id = f"dropped-{uuid.uuid4().hex[:8]}"
    port = int(server.base_url.rsplit(":", 1)[1])
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: {request_id}\r\n"
        f"Content-Length: {len(body)}\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        + "\r\n"
    )
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(head.encode() + body[: len(body) // 2])
        time.sleep(0.2)
    return request_id


def test_a_client_that_drops_its_upload_is_logged_as_such(slow_server: Server, w: World) -> None:
    before = w.snapshot()
    auth = {"Authorization": f"Bearer {w.token('owner')}", "Accept": "application/json"}
    login = f"dropped.{uuid.uuid4().hex[:8]}"
    fields = {"login": login, "employee_id": login, "pad": "x" * 4000}
    user = json.dumps({"departmentId": w.root_id, "fields": fields}).encode()
    soap = b'<?xml version="1.0"?><Envelope>' + b"<pad/>" * 1000 + b"</Envelope>"
    dropped = [
        _drop_half_way(slow_server, "/user", {**auth, "Content-Type": "application/json"}, user),
        _drop_half_way(slow_server, "/soap", {"Content-Type": "text/xml"}, soap),
        _drop_half_way(slow_server, "/invite/no-such-token", {}, b"password=" + b"p" * 500),
    ]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = slow_server.log_path.read_text().splitlines()
        if all(any(f"request_id={rid}" in line for line in lines) for rid in dropped):
            break
        time.sleep(0.1)
    for request_id in dropped:
        mentions = [line for line in lines if request_id in line]
        assert len(mentions) == 1, mentions
        assert " INFO learndir.access client disconnected: " in mentions[0]
    log = slow_server.log_path.read_text()
    assert "Traceback" not in log and "unexpected error" not in log and " ERROR " not in log
    assert w.snapshot() == before


def _answer_until_closed(
    connection: socket.socket, limit: float, trickle: bytes = b""
) -> tuple[bytes, float]:
    """Reads until the server closes the connection, sending `trickle` every half second
    meanwhile: what the server sent, and how long it took."""
    started = time.monotonic()
    connection.settimeout(0.5)
    answer = b""
    while time.monotonic() - started < limit:
        try:
            chunk = connection.recv(4096)
        except TimeoutError:
            if trickle:
                connection.sendall(trickle)
            continue
        if not chunk:
            break
        answer += chunk
    return answer, time.monotonic() - started


def test_a_reused_connection_is_timed_too(slow_server: Server) -> None:
    """Idle after an answer: closed after the keep-alive timeout. Trickling the next request's
    headers: 408 once the header timeout has passed since its first byte."""
    port = int(slow_server.base_url.rsplit(":", 1)[1])
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    for trickles in (False, True):
        with socket.create_connection(("127.0.0.1", port)) as connection:
            connection.sendall(request)
            first = b""
            while not first.endswith(b"}"):  # the whole JSON answer of /health
                first += connection.recv(4096)
            assert first.startswith(b"HTTP/1.1 200")
            if not trickles:
                answer, waited = _answer_until_closed(connection, 10)
                assert answer == b""
                assert 1.5 < waited < 3.5  # LEARNDIR_KEEPALIVE_TIMEOUT_SECONDS=2
                continue
            time.sleep(1)  # within the keep-alive timeout
            connection.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            answer, waited = _answer_until_closed(connection, HEADER_TIMEOUT + 5, b"a")
            assert answer.startswith(b"HTTP/1.1 408")
            assert HEADER_TIMEOUT - 0.5 < waited < HEADER_TIMEOUT + 2


@pytest.mark.parametrize(
    ("limits", "cap", "soft_after"),
    [((300, 10_000), 1000, 1256), ((300, 600), 344, 600)],
)
def test_the_open_file_limit_is_raised_to_fit_the_cap_or_the_cap_lowered(
    limits: tuple[int, int], cap: int, soft_after: int
) -> None:
    """In a process of its own, whose open-file limits are set first (as ulimit would)."""
    script = (
        "import resource\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, {limits})\n"
        "from learndir.api.connections import fit_open_files\n"
        "print(fit_open_files(1000), resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == [str(cap), str(soft_after)]
    assert ("leaves room for 344 connections" in done.stderr) == (cap < 1000)
