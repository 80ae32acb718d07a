"""Real receivers on loopback for what learndir sends: an SMTP server (aiosmtpd) and an HTTP
server (SMS gateway, webhook subscribers). Both record what arrives and can be stopped and
started again on the same port, to play an outage."""

from __future__ import annotations

import email
import email.policy
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support import free_port


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    message: EmailMessage


class _Collect:
    def __init__(self, mailbox: SmtpServer) -> None:
        self._mailbox = mailbox

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self._mailbox.lock:
            self._mailbox.mails.append(
                Mail(str(envelope.mail_from), [str(r) for r in envelope.rcpt_tos], parsed)
            )
        return "250 OK queued"


class SmtpServer:
    """aiosmtpd on 127.0.0.1:`port`; `mails` holds every message accepted."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.mails: list[Mail] = []
        self.lock = threading.Lock()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(_Collect(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def env(self) -> dict[str, str]:
        """The settings that make learndir send here."""
        return {
            "LEARNDIR_SMTP_HOST": "127.0.0.1",
            "LEARNDIR_SMTP_PORT": str(self.port),
            "LEARNDIR_SMTP_SECURITY": "none",
            "LEARNDIR_MAIL_FROM": "learndir@example.com",
        }

    def to(self, address: str) -> list[Mail]:
        with self.lock:
            return [m for m in self.mails if address in m.recipients]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpReceiver:
    """A threaded HTTP server on 127.0.0.1:`port` recording every request; answers `status`
    (200 unless changed) with `reply` as JSON."""

    port: int = field(default_factory=free_port)
    status: int = 200
    reply: bytes = b"{}"
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.requests.append(
                        Request(self.command, self.path, dict(self.headers.items()), body)
                    )
                    status, reply = receiver.status, receiver.reply
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_POST = do_GET = do_PUT = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def received(self) -> list[Request]:
        with self.lock:
            return list(self.requests)


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver()
    receiver.start()
    yield receiver
    receiver.stop()
