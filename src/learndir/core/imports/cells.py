"""The values of an import file's cells as people type them: a status in words or as its
number, the older template's Yes/No, and lists in one cell."""

from __future__ import annotations

import re

from learndir.core.errors import DomainError, invalid
from learndir.core.users.changes import ACTIVE, INACTIVE, TERMINATED, parse_status

# A status as the vendor's template and learndir's export write it.
STATUS_NAMES = {ACTIVE: "Active", INACTIVE: "Inactive", TERMINATED: "Employment Ended"}
_STATUS_WORDS = {
    **{name.casefold(): status for status, name in STATUS_NAMES.items()},
    "deactivated": INACTIVE,
    "terminated": TERMINATED,
}
_YES = frozenset({"yes", "y", "true", "1", "active"})
_NO = frozenset({"no", "n", "false", "0", "inactive"})
# Lists in one cell: "Sales; Support", "Sales, Support" or one per line.
_LIST_SEPARATORS = re.compile(r"[;,\n]")


def status_cell(text: str, column: str) -> int | None:
    """Active / Inactive / Employment Ended (any case), or 1, 3, 5; None when empty."""
    value = " ".join(text.split()).casefold()
    if not value:
        return None
    if value in _STATUS_WORDS:
        return _STATUS_WORDS[value]
    try:
        return parse_status(value)
    except DomainError:
        pass
    raise invalid(column, f"{text!r} is not a status: Active, Inactive or Employment Ended")


def active_cell(text: str, column: str) -> int | None:
    """The older template's Active column: Yes (status 1) or No (status 3); None when empty."""
    value = text.strip().casefold()
    if not value:
        return None
    if value in _YES:
        return 1
    if value in _NO:
        return 3
    raise invalid(column, f"{text!r} is not Yes or No")


def list_cell(text: str) -> list[str]:
    """The items of a cell that lists several (separated by ;, a comma or a line break)."""
    return [item.strip() for item in _LIST_SEPARATORS.split(text) if item.strip()]
