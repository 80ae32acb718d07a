"""How long a client may take over its request, and how many may be connected at once.

uvicorn closes a connection left idle between requests (its keep-alive timeout) but times
nothing else: a client that connects and sends nothing, or sends its headers or its body a few
bytes at a time, keeps its connection and a file descriptor for as long as it likes, and enough
of them leave no room for real clients. `GuardedHttpProtocol` is uvicorn's own httptools
protocol with what is missing added around its parser callbacks:

- the request headers must be complete within `header_timeout_seconds` of the connection's
  start (on a reused connection: of the request's first byte; the wait before that byte is
  uvicorn's keep-alive timeout);
- the whole body must arrive within `body_timeout_seconds` of the headers: a deadline for the
  body, not for the gap between two chunks, which a client sending a byte every few seconds
  would never exceed;
- a connection beyond `max_connections` open in this process is answered 503 and closed at
  once, before it is read, rather than left waiting.

The hot path stays cheap: at most one timer per connection, never one per byte. It is armed
when a connection opens (until its first request's headers) and otherwise only while a request
is part-read: a request on a reused connection that arrives whole in one read arms none.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import resource
import time
from dataclasses import dataclass
from typing import Any, Literal

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from learndir.settings import get_settings

logger = logging.getLogger("learndir.connections")

# Set in a request's state (scope["state"]) when its body timed out: the timeout in seconds,
# for the request's log line (app.RequestGuard).
BODY_TIMED_OUT = "learndir.body_timed_out"

# File descriptors a server process needs besides its client connections: the listening
# socket, database connections, log files, the worker's SMTP and HTTP connections.
_RESERVED_FILES = 256
# One line about refused or timed-out connections per this many seconds, however many there are.
_TALLY_INTERVAL = 10.0

Phase = Literal["headers", "body"]


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float
    body_timeout: float
    max_connections: int


@functools.cache
def process_limits() -> ConnectionLimits:
    """Read once per server process, from the same settings as the application."""
    settings = get_settings()
    return ConnectionLimits(
        header_timeout=settings.header_timeout_seconds,
        body_timeout=settings.body_timeout_seconds,
        max_connections=fit_open_files(settings.max_connections),
    )


def fit_open_files(wanted: int) -> int:
    """The connection cap this process can hold: its open-file limit is raised to fit `wanted`
    connections where the hard limit allows, else the cap is lowered to fit, with a warning.
    A cap above the limit would not hold: accept() failing for want of a descriptor stops the
    server accepting anyone for a second at a time."""
    needed = wanted + _RESERVED_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return wanted
    target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    except (ValueError, OSError):
        pass
    if soft >= needed:
        return wanted
    cap = max(1, soft - _RESERVED_FILES)
    logger.warning(
        "open-file limit %d leaves room for %d connections, not LEARNDIR_MAX_CONNECTIONS=%d: "
        "raise the limit (ulimit -n, LimitNOFILE=) to allow more",
        soft,
        cap,
        wanted,
    )
    return cap


def _plain_answer(status: bytes, text: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """A whole HTTP answer that closes the connection, written below the application."""
    body = text.encode("ascii")
    lines = [b"HTTP/1.1 " + status + b"\r\n"]
    lines += [name + b": " + value + b"\r\n" for name, value in default_headers]
    lines += [
        b"content-type: text/plain; charset=utf-8\r\n",
        b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
        b"x-content-type-options: nosniff\r\n",
        b"connection: close\r\n",
        b"\r\n",
        body,
    ]
    return b"".join(lines)


class _Tally:
    """Counts an event and logs the count at most once per interval: under a flood, a line per
    event would itself slow the process down."""

    def __init__(self, level: int, message: str) -> None:
        self.level = level
        self.message = message
        self.count = 0
        self.logged_at = -_TALLY_INTERVAL

    def add(self, setting: float) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.logged_at >= _TALLY_INTERVAL:
            logger.log(self.level, self.message, self.count, setting)
            self.count = 0
            self.logged_at = now


_refused = _Tally(
    logging.WARNING, "refused %d connection(s): %d are open (LEARNDIR_MAX_CONNECTIONS)"
)
_headers_timed_out = _Tally(
    logging.INFO,
    "answered 408 and closed %d connection(s) whose request headers did not arrive within "
    "%g s (LEARNDIR_HEADER_TIMEOUT_SECONDS)",
)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body read timeouts and a connection cap."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = process_limits()
        # What the parser is in the middle of, and what the timer (if any) is timing.
        self._reading: Phase | None = None
        self._timed: Phase | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self.transport = transport
            transport.write(
                _plain_answer(
                    b"503 Service Unavailable",
                    "Too many connections: try again shortly.",
                    [*self.server_state.default_headers, (b"retry-after", b"1")],
                )
            )
            transport.close()
            _refused.add(self.limits.max_connections)
            return
        super().connection_made(transport)
        # A new connection has until the header timeout to deliver its first request's headers.
        self._arm("headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._reading != self._timed and not self.transport.is_closing():
            self._disarm()
            if self._reading is not None:
                self._arm(self._reading)

    # Parser callbacks: they only note where the request is; data_received arms the timer.
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading = "headers"

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._reading = "body"

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading = None

    def handle_websocket_upgrade(self) -> None:
        # The WebSocket protocol owns the connection from here: no request of ours to time.
        self._reading = None
        super().handle_websocket_upgrade()

    def _arm(self, phase: Phase) -> None:
        delay = self.limits.header_timeout if phase == "headers" else self.limits.body_timeout
        self._timed = phase
        self._timer = self.loop.call_later(delay, self._expired, phase)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timed = None

    def _expired(self, phase: Phase) -> None:
        self._timer = None
        self._timed = None
        if self.transport.is_closing():
            return
        if phase == "headers":
            # A connection that sent nothing is closed silently, like an idle keep-alive one.
            if self._reading == "headers":
                self._answer_timeout("headers")
                _headers_timed_out.add(self.limits.header_timeout)
            self.transport.close()
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            # The application waits for the body: it now reads a disconnect, and whatever it
            # would still send is dropped (uvicorn drops sends on a disconnected cycle).
            cycle.scope["state"][BODY_TIMED_OUT] = self.limits.body_timeout
            cycle.disconnected = True
            self._answer_timeout("body")
            cycle.message_event.set()
            self.transport.close()
        elif cycle is not None and not cycle.response_complete:
            # An answer is under way: it is finished, then the connection closes.
            cycle.keep_alive = False
        else:
            self.transport.close()

    def _answer_timeout(self, phase: Phase) -> None:
        seconds = self.limits.header_timeout if phase == "headers" else self.limits.body_timeout
        self.transport.write(
            _plain_answer(
                b"408 Request Timeout",
                f"Request Timeout: the request {phase} did not arrive within {seconds:g} seconds.",
                self.server_state.default_headers,
            )
        )
