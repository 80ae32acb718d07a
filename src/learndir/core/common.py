"""Small helpers shared by every feature of the core."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_uuid_text(value: str) -> str | None:
    """The canonical text of a UUID, or None when `value` is not one."""
    try:
        return str(uuid.UUID(value.strip()))
    except (ValueError, AttributeError):
        return None


def fold(value: str) -> str:
    """The case-insensitive key of a login, e-mail, code or field name."""
    return value.strip().casefold()
