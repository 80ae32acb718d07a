"""Several server processes, each with its own listening socket on the same port.

uvicorn's workers share one listening socket, and whichever process wakes first accepts every
connection waiting: measured with `ss` while wrk opened its connections to a fresh 2-process
server, 24 of 32 went to one process (27 of 32 in another run), and 8 of 8 in a run at 8
clients, which then ran on one core. A client keeps its connection, so the split lasts. Here each
process binds its own socket with SO_REUSEPORT, and the kernel spreads new connections over
them by their addresses.

The parent first binds the address once without SO_REUSEPORT, so that a port another server
holds is still reported at start instead of being silently shared with it.
"""

from __future__ import annotations

import logging
import socket
import sys

from uvicorn import Config
from uvicorn.supervisors import multiprocess

logger = logging.getLogger("uvicorn.error")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _own_socket(config: Config) -> socket.socket:
    # Named as TCP (not protocol 0): asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
    # connections of sockets that say so, and with it on, a response written in two parts
    # waited for the client's delayed ACK (measured: 2 processes at 32 clients ran at 711
    # users/s with a p50 of 44 ms, the cores half idle).
    sock = socket.socket(_family(config.host), socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((config.host, config.port))
    return sock


class _OwnSocketProcess(multiprocess.Process):
    """A worker process that listens on a socket of its own (see the module's account)."""

    def target(self, sockets: list[socket.socket] | None = None) -> None:  # pragma: no cover
        # Runs in the worker process (coverage does not follow it there).
        super().target([_own_socket(self.config)])


def _check_free(config: Config) -> None:
    probe = socket.socket(family=_family(config.host))
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((config.host, config.port))
    except OSError as exc:
        logger.error(exc)
        sys.exit(3)  # uvicorn's own exit code for a failed start
    finally:
        probe.close()


def run_processes(config: Config) -> None:
    """Serves `config` with `config.workers` processes under uvicorn's supervisor (which
    restarts a process that dies), each listening on its own socket."""
    _check_free(config)
    host = f"[{config.host}]" if ":" in config.host else config.host
    logger.info("Uvicorn running on http://%s:%d (Press CTRL+C to quit)", host, config.port)
    multiprocess.Process = _OwnSocketProcess  # type: ignore[misc]
    multiprocess.Multiprocess(config, sockets=[]).run()
