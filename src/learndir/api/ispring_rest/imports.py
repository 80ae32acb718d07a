"""iSpring REST: bulk import as background jobs (learndir's addition).

POST /import takes a multipart upload (the file, and the options as form fields or query
parameters) and answers 202 with the job's id; the background worker applies it. GET
/import/{id} shows its status, progress and totals, /import/{id}/rows what became of each row
(the plan, for a dry run) and /import/{id}/errors the rejected rows as a CSV to fix and upload
again. Who may import is the core's rule (account owners and administrators, department
administrators within their departments).
"""

from __future__ import annotations

import os
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.datastructures import UploadFile

from learndir.api.ispring_rest.common import call, db_of
from learndir.api.ispring_rest.directory import page_size_param
from learndir.api.ispring_rest.wire import render
from learndir.core.changes import iso_utc
from learndir.core.errors import invalid
from learndir.core.imports.jobs import (
    JobView,
    create_job,
    error_report,
    get_job,
    parse_options,
    read_chunks,
    result_page,
)
from learndir.core.origin import Interface
from learndir.core.text import check_text

router = APIRouter()

_ITEM_NAMES = {"rows": "row", "changes": "change", "before": "value", "after": "value"}
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})


def job_view(job: JobView) -> dict[str, Any]:
    return {
        "id": job.id,
        "status": job.status,
        "phase": job.phase,
        "mode": job.options.mode.value,
        "match": job.options.match_by,
        "dryRun": job.options.dry_run,
        "invite": job.options.invite,
        "fileName": job.file_name,
        "progress": {"rowsDone": job.rows_done, "rowsTotal": job.rows_total},
        "totals": job.totals,
        "error": job.failure,
        "createdAt": iso_utc(job.created_at),
        "startedAt": iso_utc(job.started_at) if job.started_at else None,
        "finishedAt": iso_utc(job.finished_at) if job.finished_at else None,
    }


def _flag(value: Any, name: str) -> bool:
    text = str(value if value is not None else "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise invalid(name, f"{value!r} is not true or false")


@router.post("/import")
async def start_import(request: Request) -> Response:
    form = await request.form(max_files=1, max_fields=20)
    try:
        upload = form.get("file")
        options: dict[str, Any] = {}
        for name in ("mode", "match", "dryRun", "invite", "encoding", "delimiter"):
            value = form.get(name, request.query_params.get(name))
            if isinstance(value, UploadFile):
                raise invalid(name, "must be a form field, not a file")
            if value is not None:
                check_text(value, name)
            options[name] = value
        db = db_of(request)

        def work(actor: Any, _: dict[str, Any]) -> str:
            if not isinstance(upload, UploadFile):
                raise invalid("file", "is required: upload the CSV or XLSX file as `file`")
            chosen = parse_options(
                options["mode"],
                options["match"],
                _flag(options["invite"], "invite"),
                _flag(options["dryRun"], "dryRun"),
            )
            name = os.path.basename(upload.filename or "upload")
            check_text(name, "file")
            upload.file.seek(0)
            return create_job(
                db,
                actor,
                chosen,
                name,
                Interface.REST,
                read_chunks(upload.file),
                encoding=options["encoding"],
                delimiter=options["delimiter"],
            )

        job_id = await call(request, work, with_body=False)
    finally:
        await form.close()
    body = {"id": job_id, "status": "queued"}
    response = render(request, body, 202)
    response.headers["Location"] = f"{request.url.path.rstrip('/')}/{job_id}"
    return response


@router.get("/import/{job_id}")
async def import_status(request: Request, job_id: str) -> Response:
    db = db_of(request)
    job = await call(request, lambda actor, _: get_job(db, actor, job_id), with_body=False)
    return render(request, job_view(job), item_names=_ITEM_NAMES)


@router.get("/import/{job_id}/rows")
async def import_rows(request: Request, job_id: str) -> Response:
    """What became of each row, a page at a time (pageSize, pageToken)."""
    db = db_of(request)
    params = request.query_params

    def work(actor: Any, _: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
        job = get_job(db, actor, job_id)
        return result_page(db, job, page_size_param(request), params.get("pageToken"))

    rows, next_token = await call(request, work, with_body=False)
    body: dict[str, Any] = {"rows": rows}
    if next_token:
        body["nextPageToken"] = next_token
    return render(request, body, item_names=_ITEM_NAMES)


@router.get("/import/{job_id}/errors")
async def import_errors(request: Request, job_id: str) -> Response:
    """The rejected rows as the file had them, with an Error column (CSV, UTF-8 with BOM)."""
    from learndir.imports.writers import csv_chunks

    db = db_of(request)
    job = await call(request, lambda actor, _: get_job(db, actor, job_id), with_body=False)
    headers, rows = error_report(db, job)
    stem = re.sub(r"[^\w.-]", "_", os.path.splitext(job.file_name)[0]) or "import"
    return StreamingResponse(
        csv_chunks(headers, rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{stem}-errors.csv"'},
    )
