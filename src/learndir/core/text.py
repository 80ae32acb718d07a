"""The one rule for text a client sends: the characters no text value may hold, whatever the
field and whatever the interface.

Refused: NUL and the other C0 control characters except TAB, LF and CR, DEL (U+007F), and
lone surrogates (U+D800-U+DFFF). PostgreSQL cannot store a NUL or encode a surrogate, SQLite
would store them, and no field means them; XML cannot carry most of them back. TAB, LF and CR
are allowed: both databases store them, XML carries them, and multi-line values use them.

Each interface applies the rule once, where it has decoded a request into plain data, so that
every face refuses the same values with the same Wrong parameters.
"""

from __future__ import annotations

import re
from typing import Any

from learndir.core.errors import invalid

_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why `text` breaks the rule (the first offending character and its 1-based position),
    or None when it does not."""
    found = _FORBIDDEN.search(text)
    if found is None:
        return None
    char = found.group()
    kind = "unpaired surrogates" if "\ud800" <= char <= "\udfff" else "control characters"
    return f"must not contain {kind} (U+{ord(char):04X} at position {found.start() + 1})"


def without_forbidden(text: str) -> str:
    """`text` with every character the rule forbids replaced by U+FFFD (to show back what was
    refused: a lone surrogate cannot even be encoded)."""
    return _FORBIDDEN.sub("\ufffd", text)


def check_text(text: str, parameter: str) -> None:
    """Wrong parameters naming `parameter` when `text` breaks the rule."""
    problem = text_problem(text)
    if problem is not None:
        raise invalid(parameter, problem)


def check_name(name: str, parameter: str) -> None:
    """Wrong parameters naming `parameter` when the name of a parameter breaks the rule."""
    problem = text_problem(name)
    if problem is not None:
        raise invalid(parameter, f"the name {problem}")


def check_texts(data: Any, parameter: str = "") -> None:
    """Checks every text in decoded data (mappings and lists, to any depth; mapping keys too).
    Nested values are named as the interfaces name them in other errors: `fields.first_name`
    for a key, `logins` for a text in a list, `roles[1].roleId` for a mapping in a list.
    Walks with a stack rather than recursion: the data may nest deeply."""
    stack: list[tuple[Any, str]] = [(data, parameter)]
    while stack:
        value, name = stack.pop()
        if isinstance(value, str):
            check_text(value, name or "request")
        elif isinstance(value, dict):
            inner = []
            for key, item in value.items():
                key_name = f"{name}.{key}" if name else str(key)
                if isinstance(key, str):
                    check_name(key, key_name)
                inner.append((item, key_name))
            stack.extend(reversed(inner))
        elif isinstance(value, list | tuple):
            stack.extend(
                (item, f"{name}[{i}]" if isinstance(item, dict | list | tuple) else name)
                for i, item in reversed(list(enumerate(value)))
            )
