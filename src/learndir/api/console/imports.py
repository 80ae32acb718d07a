"""Import and export: upload a file, see its plan, apply it with a progress bar, download the
error report; download the template and the export.

Every upload starts as a plan (a dry-run job run by the background worker, as REST's POST
/import with dryRun=true); "Apply this plan" starts the real job from the file the plan kept
(core.imports.jobs.apply_plan), so the file is uploaded once. The job page polls
/import/{id}/progress (imports.js) until the job is finished, then reloads its details. Who may
import, and whose imports one sees, is the core's rule; so is every message.
"""

from __future__ import annotations

import os
import re
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from learndir.api.console.web import (
    HEADERS,
    Console,
    administrator,
    field_errors,
    posted,
    text,
)
from learndir.api.ispring_rest.exports import file_response
from learndir.core.errors import DomainError, ErrorCode, invalid
from learndir.core.imports.export import export_users, template_headers
from learndir.core.imports.jobs import (
    JobView,
    apply_plan,
    check_may_import,
    check_table,
    create_job,
    error_report,
    get_job,
    parse_options,
    plan_applicable,
    read_chunks,
    recent_jobs,
    result_page,
)
from learndir.core.origin import Interface
from learndir.core.profile_fields import list_fields
from learndir.core.text import check_text
from learndir.imports.writers import csv_chunks, table_format

router = APIRouter()

PLAN_PAGE_ROWS = 50
RECENT_JOBS = 20

MODES = (
    (
        "upsert",
        "Create and update",
        "Creates the people the file has that the account does not, and updates the others.",
    ),
    (
        "create",
        "Create only",
        "Only creates new people: a row for someone who already exists is an error, unless "
        "they are already exactly as the row says.",
    ),
    (
        "update",
        "Update only",
        "Only updates people who exist: a row for someone unknown is an error.",
    ),
    (
        "sync",
        "Synchronise",
        "Creates and updates, then deactivates the active people of your scope (the account, "
        "or the departments you manage) whom the file leaves out; never the account owner or "
        "you, and nobody is deleted.",
    ),
)
DELIMITERS = (
    ("", "Detect"),
    (",", "Comma ( , )"),
    (";", "Semicolon ( ; )"),
    ("tab", "Tab"),
    ("|", "Pipe ( | )"),
)
# The plan's actions, in the order the totals are shown: (key, as planned, as done).
ACTIONS = (
    ("create", "to create", "created"),
    ("update", "to update", "updated"),
    ("move", "to move", "moved"),
    ("deactivate", "to deactivate", "deactivated"),
    ("unchanged", "unchanged", "unchanged"),
    ("error", "rejected", "rejected"),
)
ACTION_WORDS = {
    "create": "Create",
    "update": "Update",
    "move": "Move",
    "deactivate": "Deactivate",
    "unchanged": "Unchanged",
    "error": "Error",
}
# The form's field for each parameter the core names in its errors.
_FIELDS = {"columns": "file", "match": "match", "mode": "mode"}


def _upload_page(
    console: Console,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    check_may_import(console.actor)
    fields = list_fields(console.db, console.actor)
    matches = [("login", "Login"), ("email", "E-mail")] + [
        (f.name, f.label or f.name) for f in fields if f.is_unique and not f.is_builtin
    ]
    context = {
        "values": {"mode": "upsert", "match": "login", "invite": False, **(values or {})},
        "errors": errors or {},
        "modes": MODES,
        "matches": matches,
        "delimiters": DELIMITERS,
        "jobs": recent_jobs(console.db, console.actor, RECENT_JOBS),
        "describe": describe_job,
    }
    return console.render(
        "imports.html", context, status=status, section="import", title="Import and export"
    )


@router.get("/import", include_in_schema=False)
def import_page(console: Console = Depends(administrator)) -> Response:
    return _upload_page(console)


@router.post("/import", include_in_schema=False)
def upload(console: Console = Depends(administrator), form: FormData = Depends(posted)) -> Response:
    upload = form.get("file")
    mode = text(form, "mode")
    match = text(form, "match") or "login"
    invite = text(form, "invite") in ("1", "on", "true", "yes")
    encoding = text(form, "encoding")
    given = form.get("delimiter")
    delimiter = given if isinstance(given, str) and given else None
    values: dict[str, Any] = {
        "mode": mode,
        "match": match,
        "invite": invite,
        "encoding": encoding,
        "delimiter": delimiter or "",
    }
    try:
        for value, name in (
            (mode, "mode"),
            (match, "match"),
            (encoding, "encoding"),
            (delimiter or "", "delimiter"),
        ):
            check_text(value, name)
        options = parse_options(mode, match, invite, True)
        if not isinstance(upload, UploadFile) or not (upload.filename or "").strip():
            raise invalid("file", "choose the CSV or XLSX file to upload")
        name = os.path.basename(upload.filename or "upload")
        check_text(name, "file")
        check_table(
            console.db, console.actor, upload.file, encoding=encoding or None, delimiter=delimiter
        )
        job_id = create_job(
            console.db,
            console.actor,
            options,
            name,
            Interface.CONSOLE,
            read_chunks(upload.file),
            encoding=encoding or None,
            delimiter=delimiter,
        )
    except DomainError as exc:
        return _upload_page(console, values, field_errors(exc, _FIELDS), status=422)
    finally:
        if isinstance(upload, UploadFile):
            upload.file.close()
    return console.redirect(
        f"/import/{job_id}", f"{name} was uploaded: its plan is being made. Nothing changes yet."
    )


@router.get("/import/template", include_in_schema=False)
async def template(request: Request, console: Console = Depends(administrator)) -> Response:
    fmt = table_format(request.query_params.get("format"))

    def work() -> list[str]:
        check_may_import(console.actor)
        return template_headers(console.db, console.actor)

    headers = await run_in_threadpool(work)
    return await file_response(fmt, headers, [], "users-template")


@router.get("/import/export", include_in_schema=False)
async def export(request: Request, console: Console = Depends(administrator)) -> Response:
    fmt = table_format(request.query_params.get("format"))
    headers, rows = await run_in_threadpool(export_users, console.db, console.actor)
    return await file_response(fmt, headers, rows, "users")


# What a row's change is called when it is not a profile field (see core.imports.plan).
_CHANGE_NAMES = {
    "departmentId": "department",
    "status": "status",
    "roleIds": "roles",
    "groupIds": "groups",
    "supervisor": "manager",
    "supervisorId": "manager",
    "password": "password",
    "invitation": "invitation",
}


def change_words(changes: list[dict[str, Any]], labels: dict[str, str]) -> list[str]:
    """A row's changes for a person: a profile field as "Label: before → after", anything
    else (a department, roles, groups: ids) by its name."""
    words = []
    for change in changes:
        name = str(change.get("field", ""))
        if name in labels:
            before, after = change.get("before") or "(empty)", change.get("after") or "(empty)"
            words.append(f"{labels[name]}: {before} → {after}")
        else:
            words.append(_CHANGE_NAMES.get(name, name))
    return words


def _job_context(console: Console, job: JobView, after: str | None) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    next_token = None
    if job.finished and job.status == "done":
        rows, next_token = result_page(console.db, job, PLAN_PAGE_ROWS, after or None)
        if any(r["changes"] for r in rows):
            labels = {f.name: f.label or f.name for f in list_fields(console.db, console.actor)}
            for r in rows:
                r["said"] = change_words(r["changes"], labels)
    return {
        "job": job,
        "rows": rows,
        "next_token": next_token,
        "paged": bool(after),
        "applicable": plan_applicable(console.db, job),
        "actions": ACTIONS,
        "action_words": ACTION_WORDS,
        "describe": describe_job,
        "progress_text": progress_text(job),
        "changes_total": sum(
            job.totals.get(a, 0) for a in ("create", "update", "move", "deactivate")
        ),
    }


@router.get("/import/{job_id}", include_in_schema=False)
def job_page(
    job_id: str, request: Request, after: str = "", console: Console = Depends(administrator)
) -> Response:
    job = get_job(console.db, console.actor, job_id)
    context = _job_context(console, job, after)
    title = f"Plan of {job.file_name}" if job.options.dry_run else f"Import of {job.file_name}"
    template = "import_job_details.html" if request.headers.get("x-fragment") else "import_job.html"
    return console.render(template, context, section="import", title=title)


@router.get("/import/{job_id}/progress", include_in_schema=False)
def job_progress(job_id: str, console: Console = Depends(administrator)) -> Response:
    job = get_job(console.db, console.actor, job_id)
    body = {
        "status": job.status,
        "phase": job.phase,
        "finished": job.finished,
        "rowsDone": job.rows_done,
        "rowsTotal": job.rows_total,
        "text": progress_text(job),
    }
    return JSONResponse(body, headers=HEADERS)


@router.post("/import/{job_id}/apply", include_in_schema=False)
def apply(
    job_id: str, console: Console = Depends(administrator), form: FormData = Depends(posted)
) -> Response:
    try:
        new_id = apply_plan(console.db, console.actor, job_id, Interface.CONSOLE)
    except DomainError as exc:
        if exc.code is not ErrorCode.INVALID_PARAMETERS:
            raise
        job = get_job(console.db, console.actor, job_id)
        context = _job_context(console, job, None)
        context["errors"] = field_errors(exc, {"id": "apply"})
        return console.render(
            "import_job.html",
            context,
            status=422,
            section="import",
            title=f"Plan of {job.file_name}",
        )
    return console.redirect(f"/import/{new_id}", "The plan is being applied.")


@router.get("/import/{job_id}/errors", include_in_schema=False)
def job_errors(job_id: str, console: Console = Depends(administrator)) -> Response:
    job = get_job(console.db, console.actor, job_id)
    headers, rows = error_report(console.db, job)
    stem = re.sub(r"[^\w.-]", "_", os.path.splitext(job.file_name)[0]) or "import"
    return StreamingResponse(
        csv_chunks(headers, rows),
        media_type="text/csv; charset=utf-8",
        headers={**HEADERS, "Content-Disposition": f'attachment; filename="{stem}-errors.csv"'},
    )


def describe_job(job: JobView) -> str:
    """The job's totals in words: "3 to create, 1 rejected" (only the actions it has)."""
    done = job.finished and not job.options.dry_run
    parts = [
        f"{job.totals.get(key, 0):,} {word_done if done else word_plan}"
        for key, word_plan, word_done in ACTIONS
        if job.totals.get(key, 0)
    ]
    return ", ".join(parts) if parts else "no rows"


def progress_text(job: JobView) -> str:
    """What the job is doing, in a sentence (the progress bar's text)."""
    rows = (
        f"{job.rows_done:,} of {job.rows_total:,} rows"
        if job.rows_total is not None
        else f"{job.rows_done:,} rows"
    )
    planned = "planned" if job.options.dry_run else "applied"
    if job.status == "queued":
        return "Waiting for the background worker to start."
    if job.status == "failed":
        return f"Failed: {job.failure or 'the file could not be imported'}."
    if job.status == "done":
        what = "The plan is ready" if job.options.dry_run else "The import is finished"
        return f"{what}: {rows} {planned}. {describe_job(job).capitalize()}."
    phase = {
        "rows": f"{rows} {planned}.",
        "managers": f"All {rows} {planned}; setting managers.",
        "missing": f"All {rows} {planned}; finding the people the file leaves out.",
    }
    return phase.get(job.phase, f"{rows} {planned}.")
