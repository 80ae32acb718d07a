"""CSV and XLSX written by imports/writers.py read back by imports/files.py cell for cell:
UTF-8 with a BOM, quoting, non-ASCII text, repeated headers, text that looks like a number or
a formula."""

from __future__ import annotations

import codecs
import io
from pathlib import Path

import pytest

from learndir.core.errors import DomainError
from learndir.imports.files import open_table
from learndir.imports.writers import csv_chunks, table_format, write_csv, write_xlsx

HEADERS = ["Login", "First Name", "Department path", "Group", "Group"]
ROWS = [
    ("ivan", "Иван", "Акме/Продажи", "Новички", ""),
    ("o'brien", 'Pat "the cat"', "Acme/Sales, EU", "A; B", "Managers"),
    ("zero", "00123", "Acme", "=1+1", "line\nbreak"),
    ("日本", "花子", "Acme/東京", "", ""),
]


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_what_is_written_reads_back_the_same(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"users.{fmt}"
    with path.open("wb") as out:
        (write_csv if fmt == "csv" else write_xlsx)(HEADERS, iter(ROWS), out)
    with open_table(path) as table:
        assert table.format == fmt
        assert table.headers == HEADERS
        assert [row.cells for row in table.rows] == ROWS


def test_csv_is_utf8_with_a_bom_and_commas() -> None:
    out = io.BytesIO()
    write_csv(HEADERS, ROWS[:1], out)
    data = out.getvalue()
    assert data.startswith(codecs.BOM_UTF8)
    assert (
        data[3:].decode("utf-8").splitlines()[0] == "Login,First Name,Department path,Group,Group"
    )


def test_csv_comes_in_chunks_of_rows() -> None:
    rows = [(f"user{i}", "", "", "", "") for i in range(25)]
    chunks = list(csv_chunks(HEADERS, rows, chunk_rows=10))
    # The header, then 10 + 10 + 5 rows.
    assert len(chunks) == 4
    assert [chunk.count(b"\r\n") for chunk in chunks] == [1, 10, 10, 5]
    out = io.BytesIO()
    write_csv(HEADERS, rows, out)
    assert b"".join(chunks) == out.getvalue()


def test_an_empty_table_is_its_header_row(tmp_path: Path) -> None:
    for fmt, write in (("csv", write_csv), ("xlsx", write_xlsx)):
        path = tmp_path / f"template.{fmt}"
        with path.open("wb") as out:
            write(HEADERS, [], out)
        with open_table(path) as table:
            assert table.headers == HEADERS
            assert list(table.rows) == []


def test_the_format_names() -> None:
    assert table_format(None) == "csv"
    assert table_format(" XLSX ") == "xlsx"
    with pytest.raises(DomainError) as caught:
        table_format("xls")
    assert caught.value.parameter == "format"
