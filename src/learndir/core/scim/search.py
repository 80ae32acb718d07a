"""POST /.search at the root (RFC 7644 §3.4.3): one query over every resource type, Users
first, then Groups, paged as one list. A filter naming an attribute that one type does not
have matches none of that type's resources; `sortBy` orders each type's part."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from learndir.core.actor import Actor
from learndir.core.errors import DomainError, ErrorCode
from learndir.core.scim import groups, users
from learndir.core.scim.resources import Page, Query
from learndir.db.engine import Database

Lister = Callable[[Database, Actor, Query, str], Page]


def _part(
    db: Database, actor: Actor, lister: Lister, query: Query, base_url: str
) -> tuple[Page | None, DomainError | None]:
    try:
        return lister(db, actor, query, base_url), None
    except DomainError as exc:
        if exc.code is not ErrorCode.INVALID_FILTER:
            raise
        return None, exc


def search_all(db: Database, actor: Actor, query: Query, base_url: str) -> Page:
    """Users then Groups, `query.count` of them from `query.start_index` of the whole list."""
    listers: tuple[Lister, ...] = (users.list_users, groups.list_groups)
    # How many each type has: a page of none of them, counted.
    totals: list[int] = []
    errors: list[DomainError] = []
    for lister in listers:
        counted, error = _part(db, actor, lister, replace(query, start_index=1, count=0), base_url)
        totals.append(counted.total if counted else 0)
        if error is not None:
            errors.append(error)
    if len(errors) == len(listers):
        raise errors[0]
    resources = []
    start, wanted = query.start_index, query.count
    for lister, total in zip(listers, totals, strict=True):
        if wanted <= 0 or total == 0:
            start = max(1, start - total)
            continue
        if start > total:
            start -= total
            continue
        page, _ = _part(
            db, actor, lister, replace(query, start_index=start, count=wanted), base_url
        )
        found = page.resources if page else []
        resources.extend(found)
        wanted -= len(found)
        start = 1
    return Page(resources, sum(totals), query.start_index)
