"""The event loop `learndir serve` runs on: it accepts every connection waiting at once, and
its connections send small writes without waiting (TCP_NODELAY), also on the sockets of the
several-process server (api/listening.py). Both measured in docs/benchmarks.md."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from uvicorn import Config

from learndir.api.listening import _own_socket
from learndir.cli.main import server_options
from learndir.settings import Settings

WAITING = 16


def _serve_config(tmp_path: Path, port: int = 0) -> Config:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'loop.db'}")
    return Config("learndir.api.app:create_app", **server_options(settings, "127.0.0.1", port, 1))


def _run_on(config: Config, main: Callable[[asyncio.AbstractEventLoop], object]) -> None:
    """`main(loop)` on a new loop of the kind `config` makes, in a thread of its own (a test
    before may have left a loop running in this one, as Playwright's sync API does)."""
    factory = config.get_loop_factory()
    assert factory is not None
    failures: list[BaseException] = []

    def run() -> None:
        loop = factory()
        try:
            loop.run_until_complete(main(loop))  # type: ignore[arg-type]
        except BaseException as exc:
            failures.append(exc)
        finally:
            loop.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    if failures:
        raise failures[0]


class _Noting(asyncio.Protocol):
    def __init__(self, made: list[object], note: Callable[[asyncio.BaseTransport], object]):
        self.made, self.note = made, note

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made.append(self.note(transport))


def test_a_burst_of_waiting_connections_is_accepted_in_one_turn_of_the_loop(
    tmp_path: Path,
) -> None:
    # On uvloop, the 16 connections were accepted one per turn (16 different turns): on a busy
    # server each turn serves every waiting request first.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    clients = [socket.create_connection(listener.getsockname()) for _ in range(WAITING)]
    turns: list[object] = []

    async def main(loop: asyncio.AbstractEventLoop) -> None:
        turn = 0

        def tick() -> None:
            nonlocal turn
            turn += 1
            loop.call_soon(tick)

        tick()
        server = await loop.create_server(
            lambda: _Noting(turns, lambda _transport: turn), sock=listener
        )
        async with server:
            for _ in range(1000):
                if len(turns) == WAITING:
                    break
                await asyncio.sleep(0.01)

    try:
        _run_on(_serve_config(tmp_path), main)
    finally:
        for client in clients:
            client.close()
    assert len(turns) == WAITING
    assert len(set(turns)) == 1, turns


def test_connections_of_a_process_s_own_socket_do_not_wait_to_send(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = _serve_config(tmp_path, port)
    listener = _own_socket(config)
    nodelay: list[object] = []

    def note(transport: asyncio.BaseTransport) -> int:
        sock = transport.get_extra_info("socket")
        return int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    async def main(loop: asyncio.AbstractEventLoop) -> None:
        server = await loop.create_server(lambda: _Noting(nodelay, note), sock=listener)
        async with server:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(1000):
                if nodelay:
                    break
                await asyncio.sleep(0.01)
            writer.close()

    _run_on(config, main)
    assert nodelay and nodelay[0] != 0, nodelay
