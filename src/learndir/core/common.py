"""Small helpers shared by every feature of the core."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from learndir.core.errors import invalid

# ASCII digits only: str.isdigit() also accepts "²" or "٣", which int() then refuses.
_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]{1,18}")


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A stored time with its zone: SQLite hands them back without one, and they are UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def as_uuid_text(value: str) -> str | None:
    """The canonical text of a UUID, or None when `value` is not one."""
    try:
        return str(uuid.UUID(value.strip()))
    except (ValueError, AttributeError):
        return None


def whole_number(value: Any) -> int | None:
    """An integer given as a number or as its decimal text; None for anything else (booleans,
    fractions, other digits than 0-9, more than 18 of them)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e18:
        return int(value)
    if isinstance(value, str) and _WHOLE_NUMBER.fullmatch(value.strip()):
        return int(value.strip())
    return None


def fold(value: str) -> str:
    """The case-insensitive key of a login, e-mail, code or field name."""
    return value.strip().casefold()


def parse_time(value: Any, parameter: str) -> datetime | None:
    """An ISO 8601 time given as text (without a zone it is UTC); None when not given."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise invalid(parameter, "must be an ISO 8601 time")
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise invalid(parameter, f"{value!r} is not an ISO 8601 time") from None
    return as_utc(moment)
