"""Reading a table of users from a CSV or XLSX file, one row at a time.

What HR systems and Excel produce: CSV in UTF-8 with or without a BOM, UTF-16 (Excel's
"Unicode text"), or a legacy single-byte code page (Windows-1251, -1252, ...), with a comma,
semicolon, tab or pipe between the fields; or an XLSX workbook. The encoding and the delimiter
are taken when given, else detected from the start of the file (charset-normalizer for the
code page, the csv module's sniffer for the delimiter). Rows are streamed, never loaded whole,
so memory does not grow with the file.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from charset_normalizer import from_bytes

# How much of a file the encoding and delimiter are guessed from.
_SAMPLE_BYTES = 256 * 1024
_DELIMITERS = ",;\t|"
_ZIP_MAGIC = b"PK\x03\x04"


class FileProblem(ValueError):
    """The file cannot be read as a table of users; the message says why, for a person."""


@dataclass(frozen=True)
class Row:
    """One data row: its number as a person counts rows in the file (the header is row 1 of a
    CSV without blank lines before it, and of a sheet) and its cells, one per header (a header
    may repeat: the vendor's template has a Group column per group)."""

    number: int
    cells: tuple[str, ...]

    def by_header(self, headers: list[str]) -> dict[str, str]:
        """The cells by header, for files whose headers are unique."""
        return dict(zip(headers, self.cells, strict=True))


@dataclass
class Table:
    """An open file: its column headers as written, and its rows, read as they are iterated."""

    headers: list[str]
    rows: Iterator[Row]
    format: str
    encoding: str | None = None
    delimiter: str | None = None
    notes: list[str] = field(default_factory=list)


@contextlib.contextmanager
def open_table(
    path: Path, *, encoding: str | None = None, delimiter: str | None = None
) -> Iterator[Table]:
    """The file at `path` as a Table; XLSX when it is a zip (whatever its name), else CSV."""
    with path.open("rb") as raw, open_stream(raw, encoding=encoding, delimiter=delimiter) as table:
        yield table


@contextlib.contextmanager
def open_stream(
    raw: IO[bytes], *, encoding: str | None = None, delimiter: str | None = None
) -> Iterator[Table]:
    """A seekable binary stream (an upload) as a Table, read from its start; the stream is
    left open (the readers close what they wrap)."""
    borrowed = cast(IO[bytes], _Borrowed(raw))
    borrowed.seek(0)
    head = borrowed.read(len(_ZIP_MAGIC))
    borrowed.seek(0)
    if head == _ZIP_MAGIC:
        with _xlsx_table(borrowed) as table:
            yield table
        return
    yield _csv_table(borrowed, encoding, delimiter)


class _Borrowed(io.BufferedIOBase):
    """Another's stream, read and sought through; closing this leaves it open."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self._raw = raw

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return self._raw.read(-1 if size is None else size)

    def read1(self, size: int = -1) -> bytes:
        return self._raw.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()


# ---- CSV ------------------------------------------------------------------------------------


def _csv_table(raw: IO[bytes], encoding: str | None, delimiter: str | None) -> Table:
    sample = raw.read(_SAMPLE_BYTES)
    raw.seek(0)
    if not sample.strip():
        raise FileProblem("the file is empty")
    chosen = _encoding(sample, encoding)
    text = io.TextIOWrapper(raw, encoding=chosen, errors="strict", newline="")
    sample_text = sample.decode(chosen, errors="ignore")
    if chosen in ("utf-8-sig", "utf-16"):
        sample_text = sample_text.lstrip("\ufeff")
    separator = _delimiter(sample_text, delimiter)
    reader = csv.reader(text, delimiter=separator, strict=True)
    try:
        number, headers = _header(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise _unreadable(exc, chosen, 1) from None
    return Table(
        headers=headers,
        rows=_csv_rows(reader, headers, number, chosen),
        format="csv",
        encoding=chosen,
        delimiter=separator,
    )


def given_encoding(given: str) -> str:
    """The codec's canonical name of an encoding someone gave, or a FileProblem."""
    try:
        return codecs.lookup(given.strip()).name
    except LookupError:
        raise FileProblem(f"unknown encoding {given!r}") from None


def given_delimiter(given: str) -> str:
    """A delimiter someone gave (`\\t` or `tab` for a tab), or a FileProblem."""
    if given in ("\\t", "tab"):
        return "\t"
    if len(given) != 1:
        raise FileProblem(f"the delimiter must be one character, not {given!r}")
    return given


def _encoding(sample: bytes, given: str | None) -> str:
    if given:
        return given_encoding(given)
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        # The sample may end inside a character: a strict decode of all but its last 3 bytes.
        sample[: len(sample) - 3 if len(sample) == _SAMPLE_BYTES else len(sample)].decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    # Single-byte code pages first: a short file with a few accented or Cyrillic letters also
    # decodes, meaninglessly but without errors, in a CJK code page. A multi-byte one is
    # taken only when it reads as clearly less chaotic.
    single = from_bytes(sample, cp_isolation=_SINGLE_BYTE).best()
    multi = from_bytes(sample, cp_isolation=_MULTI_BYTE).best()
    best = single
    if best is None or (multi is not None and multi.chaos + 0.1 < best.chaos):
        best = multi
    if best is None:
        raise FileProblem("the file's encoding is not recognised; give it (e.g. windows-1251)")
    return codecs.lookup(best.encoding).name


# The code pages an Excel "CSV" export is written in, by Windows locale.
_SINGLE_BYTE = [
    "cp1250",
    "cp1251",
    "cp1252",
    "cp1253",
    "cp1254",
    "cp1255",
    "cp1256",
    "cp1257",
    "cp1258",
    "cp874",
    "koi8_r",
    "iso8859_15",
]
_MULTI_BYTE = ["cp932", "cp936", "cp949", "cp950"]


def _delimiter(sample: str, given: str | None) -> str:
    if given:
        return given_delimiter(given)
    lines = sample.splitlines()[:20]
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=_DELIMITERS).delimiter
    except csv.Error:
        # One column, or a header the sniffer cannot judge: the most frequent candidate of the
        # first line, else a comma.
        first = lines[0] if lines else ""
        counts = {d: first.count(d) for d in _DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else ","


def _header(reader: Any) -> tuple[int, list[str]]:
    """The first row that is not blank, as the headers; its number."""
    for cells in reader:
        if any(cell.strip() for cell in cells):
            return reader.line_num, _checked_headers(cells)
    raise FileProblem("the file has no header row")


def _checked_headers(cells: list[str]) -> list[str]:
    headers = [cell.strip().lstrip("\ufeff") for cell in cells]
    while headers and not headers[-1]:
        headers.pop()
    if not all(headers):
        raise FileProblem("a column has no header; name every column or remove it")
    return headers


def _csv_rows(reader: Any, headers: list[str], header_line: int, encoding: str) -> Iterator[Row]:
    width = len(headers)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except (UnicodeDecodeError, csv.Error) as exc:
            raise _unreadable(exc, encoding, reader.line_num + 1) from None
        if not any(cell.strip() for cell in cells):
            continue
        extra = [cell for cell in cells[width:] if cell.strip()]
        if extra:
            raise FileProblem(
                f"row {reader.line_num} has {len(cells)} cells but the header names {width} columns"
            )
        texts = [cell.strip() for cell in cells[:width]]
        yield Row(reader.line_num, tuple(texts + [""] * (width - len(texts))))


def _unreadable(exc: Exception, encoding: str, line: int) -> FileProblem:
    if isinstance(exc, UnicodeDecodeError):
        return FileProblem(
            f"near line {line} the file is not valid {encoding}; give its encoding "
            "(e.g. windows-1251)"
        )
    return FileProblem(f"near line {line} the CSV is malformed: {exc}")


# ---- XLSX ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _xlsx_table(raw: IO[bytes]) -> Iterator[Table]:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = load_workbook(raw, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise FileProblem(f"the file is not a readable XLSX workbook ({exc})") from None
    try:
        sheet = book.worksheets[0] if book.worksheets else None
        if sheet is None:
            raise FileProblem("the workbook has no sheet")
        rows = sheet.iter_rows(values_only=True)
        number = 0
        headers: list[str] | None = None
        for cells in rows:
            number += 1
            texts = [_cell_text(c) for c in cells]
            if any(texts):
                headers = _checked_headers(texts)
                break
        if headers is None:
            raise FileProblem("the sheet has no header row")
        yield Table(headers=headers, rows=_xlsx_rows(rows, headers, number), format="xlsx")
    finally:
        book.close()


def _xlsx_rows(rows: Iterator[tuple[Any, ...]], headers: list[str], number: int) -> Iterator[Row]:
    width = len(headers)
    for cells in rows:
        number += 1
        texts = [_cell_text(c) for c in cells]
        if not any(texts):
            continue
        if any(texts[width:]):
            raise FileProblem(f"row {number} has cells beyond the {width} named columns")
        texts += [""] * (width - len(texts))
        yield Row(number, tuple(texts[:width]))


def _cell_text(value: Any) -> str:
    """A cell as the text a person sees: whole numbers without ".0", dates in ISO form."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value).strip()
