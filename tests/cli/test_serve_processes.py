"""`learndir serve` with several processes: each listens on a socket of its own (SO_REUSEPORT),
so that a burst of new connections is spread over the processes instead of going to whichever
process woke first (api/listening.py), and a port another server holds is still refused."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.support import Server, start_server, stop_server

CONNECTIONS = 64


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _established_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":  # 01: ESTABLISHED
                inodes.add(fields[9])
    return inodes


def _connections_of(pid: int, inodes: set[str]) -> int:
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            count += 1
    return count


def _all_up(server: Server, workers: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.log_path.read_text().count("Application startup complete") >= workers:
            return
        time.sleep(0.1)
    raise AssertionError(server.log_path.read_text()[-3000:])


def _answered(sock: socket.socket) -> bytes:
    sock.sendall(b"GET /nothing-here HTTP/1.1\r\nHost: t\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, head
        head += chunk
    return head.split(b"\r\n", 1)[0]


def test_a_burst_of_connections_is_spread_over_the_processes(tmp_path: Path) -> None:
    server = start_server(f"sqlite:///{tmp_path / 'spread.db'}", tmp_path, workers=2)
    sockets: list[socket.socket] = []
    try:
        _all_up(server, 2)
        port = int(urlsplit(server.base_url).port or 0)
        # All connecting at once, before any request: what a load generator or a client pool
        # does.
        sockets = [socket.socket() for _ in range(CONNECTIONS)]
        for sock in sockets:
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
        for sock in sockets:
            sock.setblocking(True)
            assert _answered(sock) == b"HTTP/1.1 404 Not Found"
        inodes = _established_inodes(port)
        # The server's children: its two worker processes (and multiprocessing's helper).
        held = [_connections_of(pid, inodes) for pid in _children(server.process.pid)]
        assert sum(held) == CONNECTIONS, held
        # Spread by the connections' addresses: fewer than 16 of 64 on one process is 4.25
        # standard deviations off an even split (odds of about 2 in 100,000). With one shared
        # socket, whichever process woke first took most of the burst: 53/11, 42/22, 14/50 and
        # 62/2 in four runs.
        spread = sorted(n for n in held if n)
        assert len(spread) == 2 and spread[0] >= CONNECTIONS // 4, held
    finally:
        for sock in sockets:
            sock.close()
        stop_server(server)


def test_a_port_another_server_listens_on_is_refused(tmp_path: Path) -> None:
    first = start_server(f"sqlite:///{tmp_path / 'first.db'}", tmp_path, workers=2)
    try:
        _all_up(first, 2)
        port = str(urlsplit(first.base_url).port)
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "learndir",
                "serve",
                "--database-url",
                f"sqlite:///{tmp_path / 'second.db'}",
                "--port",
                port,
                "--workers",
                "2",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode != 0
        assert "address already in use" in (second.stdout + second.stderr).lower()
        assert first.alive()
    finally:
        stop_server(first)
