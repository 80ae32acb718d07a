"""Writing a table of users as CSV or XLSX, row by row, as `files.open_table` reads it back.

CSV is UTF-8 with a BOM (without one, Excel takes the file for the local code page and garbles
every name that is not ASCII), comma-delimited, quoted by the csv module where a cell needs it.
XLSX is written by openpyxl's write-only workbook, which streams rows to the file instead of
building the sheet in memory; every cell is text, so "00123" stays "00123".
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from typing import IO

from learndir.core.errors import invalid

# Rows per chunk of a streamed CSV answer: big enough to keep writes few, small enough that
# memory stays flat.
CSV_CHUNK_ROWS = 500
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
SHEET_TITLE = "Users"
FORMATS = ("csv", "xlsx")
MEDIA_TYPES = {"csv": CSV_MEDIA_TYPE, "xlsx": XLSX_MEDIA_TYPE}


def table_format(value: str | None) -> str:
    """`csv` (the default) or `xlsx`, in any case; Wrong parameters (`format`) otherwise."""
    fmt = (value or "csv").strip().lower()
    if fmt not in FORMATS:
        raise invalid("format", f"{value!r} is not a file format: use csv or xlsx")
    return fmt


def csv_chunks(
    headers: Sequence[str], rows: Iterable[Sequence[str]], chunk_rows: int = CSV_CHUNK_ROWS
) -> Iterator[bytes]:
    """The CSV file in pieces, the BOM and header row first, then `chunk_rows` rows a piece:
    for an HTTP answer streamed while the rows are read."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(headers)
    yield codecs.BOM_UTF8 + text.getvalue().encode("utf-8")
    pending = 0
    text.seek(0)
    text.truncate()
    for row in rows:
        writer.writerow(row)
        pending += 1
        if pending == chunk_rows:
            yield text.getvalue().encode("utf-8")
            text.seek(0)
            text.truncate()
            pending = 0
    if pending:
        yield text.getvalue().encode("utf-8")


def write_csv(headers: Sequence[str], rows: Iterable[Sequence[str]], out: IO[bytes]) -> None:
    """The table as CSV into `out` (a binary file)."""
    for chunk in csv_chunks(headers, rows):
        out.write(chunk)


def write_xlsx(headers: Sequence[str], rows: Iterable[Sequence[str]], out: IO[bytes]) -> None:
    """The table as an XLSX workbook with one sheet, "Users", into `out` (a binary file that
    can seek: a zip's directory is written last)."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    book = Workbook(write_only=True)
    sheet = book.create_sheet(SHEET_TITLE)

    def cell(value: str) -> object:
        # A workbook cannot hold control characters; and text that starts with "=" would be
        # written as a formula, to be computed when the file is opened: it is marked as text.
        text = ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
        if not text.startswith("="):
            return text
        marked = WriteOnlyCell(sheet, text)
        marked.data_type = "s"
        return marked

    sheet.append([cell(h) for h in headers])
    for row in rows:
        sheet.append([cell(str(value)) for value in row])
    book.save(out)
