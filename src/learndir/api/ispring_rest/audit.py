"""iSpring REST: the audit trail (learndir's addition), for the owner and account
administrators; the core decides who may read it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from learndir.api.ispring_rest.common import call, db_of
from learndir.api.ispring_rest.directory import page_size_param
from learndir.api.ispring_rest.present import ITEM_NAMES
from learndir.api.ispring_rest.wire import render
from learndir.core.audit import AuditRecord, audit_query, read_audit
from learndir.core.changes import iso_utc

router = APIRouter()

_ITEM_NAMES = {
    **ITEM_NAMES,
    "records": "record",
    "changes": "change",
    "roleIds": "id",
    "groupIds": "id",
    "addedUserIds": "id",
    "removedUserIds": "id",
}


def audit_view(record: AuditRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": record.id,
        "time": iso_utc(record.occurred_at),
        "userId": record.actor_user_id,
        "login": record.actor_login,
        "credential": record.credential,
        "interface": record.interface,
        "clientAddress": record.client_address,
        "requestId": record.request_id,
        "operation": record.operation,
        "targetType": record.target_kind,
        "targetId": record.target_id,
        "changes": record.changes,
    }
    if record.details:
        out["details"] = record.details
    return out


@router.get("/audit")
async def get_audit(request: Request) -> Response:
    db = db_of(request)
    params = request.query_params

    def work(actor: Any, _: dict[str, Any]) -> tuple[list[AuditRecord], str | None]:
        query = audit_query(
            user_id=params.get("userId"),
            target_id=params.get("targetId"),
            operation=params.get("operation"),
            since=params.get("since"),
            until=params.get("until"),
            page_size=page_size_param(request),
            page_token=params.get("pageToken"),
        )
        return read_audit(db, actor, query)

    records, next_token = await call(request, work, with_body=False)
    body: dict[str, Any] = {"records": [audit_view(r) for r in records]}
    if next_token:
        body["nextPageToken"] = next_token
    return render(request, body, item_names=_ITEM_NAMES)
