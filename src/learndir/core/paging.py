"""Keyset paging by id, shared by every paged list (users, departments, groups).

A page is the rows whose id is greater than the last id of the previous page, in id order, so
a row that exists throughout a page-through is seen exactly once whatever is inserted or
deleted meanwhile. The page token is that last id, opaque to clients (urlsafe base64).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from learndir.core.common import as_uuid_text
from learndir.core.errors import invalid

DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 1000
R = TypeVar("R")


@dataclass(frozen=True)
class PageRequest:
    size: int
    # The last id of the previous page; "" for the first page (every id is greater).
    after: str

    @property
    def limit(self) -> int:
        """Rows to fetch: one more than the page, to know whether another page follows."""
        return self.size + 1


def page_request(page_size: int | None, page_token: str | None) -> PageRequest:
    return PageRequest(
        check_page_size(page_size), decode_page_token(page_token) if page_token else ""
    )


def split_page(request: PageRequest, rows: Sequence[R]) -> tuple[Sequence[R], str | None]:
    """Rows fetched with `request.limit`: the page, and the next page's token (None at the end).
    Rows carry their id as `.id`."""
    if len(rows) <= request.size:
        return rows, None
    page = rows[: request.size]
    last: Any = page[-1]
    return page, encode_page_token(last.id)


def check_page_size(page_size: int | None) -> int:
    if page_size is None:
        return DEFAULT_PAGE_SIZE
    if page_size < 1 or page_size > MAX_PAGE_SIZE:
        raise invalid("pageSize", f"must be between 1 and {MAX_PAGE_SIZE}, {page_size} given")
    return page_size


def encode_page_token(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode("ascii")).decode("ascii").rstrip("=")


def decode_page_token(token: str) -> str:
    """The last id a previous page ended with; anything else is Wrong parameters."""
    try:
        raw = token.strip().encode("ascii")
        text = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4)).decode("ascii")
    except (UnicodeError, binascii.Error, ValueError):
        text = ""
    canonical = as_uuid_text(text)
    if canonical is None or canonical != text:
        raise invalid("pageToken", "is not a page token this server issued")
    return canonical
