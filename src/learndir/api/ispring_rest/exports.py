"""iSpring REST (learndir's addition): the users as a CSV or XLSX file that the import reads
back, and the empty import template. CSV is streamed while the users are read; an XLSX
workbook, a zip whose directory comes last, is written to a spooled temporary file (memory
up to a few megabytes, then disk) and streamed from there."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from tempfile import SpooledTemporaryFile
from typing import IO, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from learndir.api.ispring_rest.common import call, db_of
from learndir.core.imports.export import export_users, template_headers
from learndir.imports.writers import MEDIA_TYPES, csv_chunks, table_format, write_xlsx

router = APIRouter()

_SPOOL_BYTES = 8 * 1024 * 1024
_READ_BYTES = 64 * 1024


@router.get("/users/export")
async def get_users_export(request: Request) -> Response:
    db = db_of(request)

    def work(actor: Any, _: dict[str, Any]) -> tuple[str, list[str], Iterator[tuple[str, ...]]]:
        fmt = table_format(request.query_params.get("format"))
        headers, rows = export_users(db, actor)
        return fmt, headers, rows

    fmt, headers, rows = await call(request, work, with_body=False)
    return await file_response(fmt, headers, rows, "users")


@router.get("/import/template")
async def get_import_template(request: Request) -> Response:
    db = db_of(request)

    def work(actor: Any, _: dict[str, Any]) -> tuple[str, list[str]]:
        fmt = table_format(request.query_params.get("format"))
        return fmt, template_headers(db, actor)

    fmt, headers = await call(request, work, with_body=False)
    return await file_response(fmt, headers, [], "users-template")


async def file_response(
    fmt: str, headers: Sequence[str], rows: Iterable[Sequence[str]], name: str
) -> Response:
    disposition = {"Content-Disposition": f'attachment; filename="{name}.{fmt}"'}
    if fmt == "csv":
        # A plain iterator: Starlette runs each step, and so each page's reads, in a thread.
        return StreamingResponse(
            csv_chunks(headers, rows), media_type=MEDIA_TYPES[fmt], headers=disposition
        )
    spooled: IO[bytes] = SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115
    try:
        await run_in_threadpool(write_xlsx, headers, rows, spooled)
        size = spooled.tell()
        spooled.seek(0)
    except BaseException:
        spooled.close()
        raise
    return StreamingResponse(
        _chunks_of(spooled),
        media_type=MEDIA_TYPES[fmt],
        headers={**disposition, "Content-Length": str(size)},
    )


def _chunks_of(file: IO[bytes]) -> Iterator[bytes]:
    """The file's bytes a piece at a time; the file is closed at the end (or when the client
    goes away and the iterator is dropped)."""
    with file:
        while chunk := file.read(_READ_BYTES):
            yield chunk
