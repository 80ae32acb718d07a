"""Where the current change comes from: the interface, the client's address, the request id
and the credential the caller signed in with.

The interfaces set it (the HTTP middleware for each request, the CLI, the worker for scheduled
changes); authentication fills in the credential; `core.changes.record` copies it into the
audit trail. It rides in a context variable because the core's signatures name the actor, not
the transport; it is one mutable object per request, so what authentication adds in a worker
thread is seen by the request's later steps.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum


class Interface(StrEnum):
    SOAP = "soap"
    REST = "rest"
    SCIM = "scim"
    IMPORT = "import"
    CLI = "cli"
    CONSOLE = "console"
    INVITE = "invite"
    SCHEDULER = "scheduler"


@dataclass
class Origin:
    interface: Interface
    client_address: str | None = None
    request_id: str | None = None
    # "password", "key:<client id>", "token:<first 16 hex of its hash>", "invitation", ...
    credential: str | None = None
    # The signed-in user's login, as it was when acting.
    login: str | None = None


_current: ContextVar[Origin | None] = ContextVar("learndir_origin", default=None)


def current() -> Origin | None:
    return _current.get()


def current_address() -> str | None:
    origin = _current.get()
    return origin.client_address if origin is not None else None


def set_credential(credential: str, login: str | None) -> None:
    """Called by authentication: the credential the caller proved, and whose it is."""
    origin = _current.get()
    if origin is not None:
        origin.credential = credential
        origin.login = login


@contextlib.contextmanager
def acting_from(origin: Origin) -> Iterator[Origin]:
    token = _current.set(origin)
    try:
        yield origin
    finally:
        _current.reset(token)
