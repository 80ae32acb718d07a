"""What SCIM Users and Groups share: the stored documents, versions, list answers and the
request context (the actor, the account's schemas and where resources live)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Select, Table, delete, insert, select, update

from learndir.core.common import as_utc, utcnow
from learndir.core.errors import DomainError, ErrorCode, invalid
from learndir.core.scim.attributes import AttrRef, ResourceSchema, project
from learndir.core.scim.schemas import MAX_RESULTS
from learndir.core.users.keys import rows_by_keys


@dataclass(frozen=True)
class Stored:
    """A resource's document as a SCIM client last wrote it."""

    document: dict[str, Any]
    external_id: str | None
    updated_at: datetime


_READS: dict[str, Select[Any]] = {}


def stored_documents(
    conn: Connection, table: Table, key: str, ids: Sequence[str]
) -> dict[str, Stored]:
    # One statement per table, built once: rows_by_keys keeps its variants per statement.
    statement = _READS.get(table.name)
    if statement is None:
        statement = _READS.setdefault(
            table.name,
            select(table.c[key], table.c.document, table.c.external_id, table.c.updated_at),
        )
    return {
        row[0]: Stored(orjson.loads(row[1]), row[2], row[3])
        for row in rows_by_keys(conn, statement, table.c[key], list(ids))
    }


def store_document(
    conn: Connection,
    table: Table,
    key: str,
    resource_id: str,
    account_id: str,
    document: dict[str, Any],
    exists: bool,
) -> None:
    external_id = document.get("externalId")
    values = {
        "account_id": account_id,
        "external_id": external_id if isinstance(external_id, str) else None,
        "document": orjson.dumps(document).decode(),
        "updated_at": utcnow(),
    }
    if exists:
        changed = conn.execute(
            update(table).where(table.c[key] == resource_id).values(**values)
        ).rowcount
        if changed:
            return
    conn.execute(insert(table).values({key: resource_id, **values}))


def forget_document(conn: Connection, table: Table, key: str, resource_id: str) -> None:
    conn.execute(delete(table).where(table.c[key] == resource_id))


def ids_with_external_id(
    conn: Connection, table: Table, key: str, account_id: str, external_id: str
) -> list[str]:
    return list(
        conn.execute(
            select(table.c[key]).where(
                table.c.account_id == account_id, table.c.external_id == external_id
            )
        ).scalars()
    )


def timestamp(moment: datetime) -> str:
    """A stored time as an xsd:dateTime in UTC with its zone: SQLite hands times back without
    one, and a filter comparing meta.created with a zoned time must not compare naive ones."""
    return as_utc(moment).isoformat().replace("+00:00", "Z")


def version_of(document: dict[str, Any]) -> str:
    """A weak entity tag (RFC 7232) of a resource as read: any change, through any interface,
    changes it."""
    body = {k: v for k, v in document.items() if k != "meta"}
    digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f'W/"{digest[:32]}"'


def with_version(document: dict[str, Any]) -> dict[str, Any]:
    document["meta"]["version"] = version_of(document)
    return document


def require_version(current: dict[str, Any], if_match: str | None) -> None:
    """If-Match (RFC 7644 §3.14): the change applies only to the version the client read."""
    if if_match is None or not if_match.strip():
        return
    wanted = {tag.strip() for tag in if_match.split(",")}
    version = current["meta"]["version"]
    if "*" in wanted or version in wanted or version.removeprefix("W/") in wanted:
        return
    raise DomainError(
        ErrorCode.VERSION_MISMATCH,
        f"the resource is at version {version}, not {if_match.strip()}",
        parameter="If-Match",
    )


@dataclass(frozen=True)
class Query:
    """A list request: RFC 7644 §3.4.2's parameters, checked."""

    filter: str | None = None
    start_index: int = 1
    count: int = MAX_RESULTS
    sort_by: str | None = None
    descending: bool = False
    attributes: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()


def _whole(value: Any, parameter: str) -> int:
    if isinstance(value, bool):
        raise invalid(parameter, "must be a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise invalid(parameter, "must be a whole number")


def _names(value: Any, parameter: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else str(value).split(",")
    if not all(isinstance(i, str) for i in items):
        raise invalid(parameter, "must be attribute names")
    return tuple(i.strip() for i in items if i.strip())


def parse_query(params: dict[str, Any]) -> Query:
    """From the query string or a /.search body (names case-insensitive). A startIndex below 1
    counts as 1 and a negative count as 0 (RFC 7644 §3.4.2.4); a count above the maximum is
    lowered to it."""
    given = {k.casefold(): v for k, v in params.items()}
    start = max(1, _whole(given["startindex"], "startIndex")) if "startindex" in given else 1
    count = _whole(given["count"], "count") if "count" in given else MAX_RESULTS
    order = str(given.get("sortorder") or "ascending").strip().casefold()
    if order not in ("ascending", "descending"):
        raise invalid("sortOrder", "must be ascending or descending")
    attributes = _names(given.get("attributes"), "attributes")
    excluded = _names(given.get("excludedattributes"), "excludedAttributes")
    if attributes and excluded:
        raise invalid("attributes", "attributes and excludedAttributes exclude each other")
    flt = given.get("filter")
    if flt is not None and not isinstance(flt, str):
        raise invalid("filter", "must be text")
    sort_by = given.get("sortby")
    if sort_by is not None and not isinstance(sort_by, str):
        raise invalid("sortBy", "must be an attribute name")
    return Query(
        filter=flt.strip() if flt and flt.strip() else None,
        start_index=start,
        count=min(max(count, 0), MAX_RESULTS),
        sort_by=sort_by.strip() if sort_by and sort_by.strip() else None,
        descending=order == "descending",
        attributes=attributes,
        excluded=excluded,
    )


@dataclass(frozen=True)
class Page:
    resources: list[dict[str, Any]]
    total: int
    start_index: int


def shown(document: dict[str, Any], schema: ResourceSchema, query: Query) -> dict[str, Any]:
    if not query.attributes and not query.excluded:
        return document
    return project(document, schema, query.attributes or None, query.excluded or None)


def _sort_value(doc: dict[str, Any], ref: AttrRef) -> Any:
    holder: Any = doc.get(ref.urn) if ref.urn is not None else doc
    value = holder.get(ref.name) if isinstance(holder, dict) else None
    if isinstance(value, list):
        # A multi-valued attribute sorts by its primary value, else its first (RFC 7644
        # §3.4.2.3).
        primary = [v for v in value if isinstance(v, dict) and v.get("primary") is True]
        value = (primary or value or [None])[0]
    if isinstance(value, dict):
        value = value.get(ref.sub or "value")
    if isinstance(value, str):
        return value.casefold()
    if isinstance(value, bool):
        return str(value)
    return value


def sorted_by(
    docs: list[dict[str, Any]], schema: ResourceSchema, query: Query
) -> list[dict[str, Any]]:
    """`docs` in the order of `sortBy`; resources without the attribute come last whatever
    the order (RFC 7644 §3.4.2.3)."""
    ref = schema.resolve(query.sort_by or "")
    if ref is None:
        raise invalid("sortBy", f"{query.sort_by!r} is not an attribute of this resource")
    keyed = [(_sort_value(d, ref), d) for d in docs]
    present = [(k, d) for k, d in keyed if k is not None and k != ""]
    present.sort(key=lambda item: item[0], reverse=query.descending)
    return [d for _, d in present] + [d for k, d in keyed if k is None or k == ""]
