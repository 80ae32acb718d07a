"""Reading import files as HR systems and Excel write them: CSV in UTF-8 (with or without a
BOM), UTF-16 and legacy code pages, any of the usual delimiters, quoted fields with line breaks;
XLSX; and the clear problems of a file that is not a table."""

from __future__ import annotations

import codecs
import datetime as dt
from pathlib import Path

import pytest
from openpyxl import Workbook

from learndir.imports.files import FileProblem, open_table

HEADER = ["Login", "Email", "First Name", "Last Name", "Department code"]
PEOPLE = [
    ["ivanov", "ivanov@acme.test", "Иван", "Иванов", "sales"],
    ["muller", "muller@acme.test", "Jürgen", "Müller", "eng"],
    ["garcia", "", "José", "García Ñúñez", "support"],
]


def csv_bytes(rows: list[list[str]], delimiter: str = ",") -> str:
    def cell(value: str) -> str:
        if any(c in value for c in (delimiter, '"', "\n")):
            return '"' + value.replace('"', '""') + '"'
        return value

    return "".join(delimiter.join(cell(v) for v in row) + "\r\n" for row in rows)


def read(path: Path, **options: str) -> tuple[list[str], list[tuple[int, dict[str, str]]], str]:
    with open_table(path, **options) as table:
        rows = [(row.number, row.by_header(table.headers)) for row in table.rows]
        return table.headers, rows, f"{table.format} {table.encoding} {table.delimiter!r}"


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("utf-16", "utf-16")],
)
def test_unicode_csv_with_and_without_a_bom(tmp_path: Path, encoding: str, expected: str) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(csv_bytes([HEADER, *PEOPLE]).encode(encoding))
    headers, rows, how = read(path)
    assert headers == HEADER
    assert [r[1]["First Name"] for r in rows] == ["Иван", "Jürgen", "José"]
    assert [r[0] for r in rows] == [2, 3, 4]
    assert how == f"csv {codecs.lookup(expected).name} ','"


def test_windows_1251_export_is_detected(tmp_path: Path) -> None:
    russian = [
        HEADER,
        ["ivanov", "ivanov@acme.test", "Иван", "Иванов", "sales"],
        ["petrova", "petrova@acme.test", "Мария", "Петрова", "eng"],
        ["sidorov", "", "Сергей", "Сидоров", "support"],
        ["kuznetsova", "", "Екатерина", "Кузнецова", "support"],
    ]
    path = tmp_path / "export.csv"
    path.write_bytes(csv_bytes(russian, ";").encode("cp1251"))
    _, rows, how = read(path)
    assert how == "csv cp1251 ';'"
    assert [r[1]["Last Name"] for r in rows] == ["Иванов", "Петрова", "Сидоров", "Кузнецова"]


def test_windows_1252_when_given(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(csv_bytes([HEADER, PEOPLE[1], PEOPLE[2]]).encode("cp1252"))
    _, rows, how = read(path, encoding="windows-1252")
    assert how == "csv cp1252 ','"
    assert rows[0][1]["Last Name"] == "Müller" and rows[1][1]["Last Name"] == "García Ñúñez"


def test_a_wrong_encoding_is_a_clear_problem(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(csv_bytes([HEADER, *PEOPLE]).encode("utf-8"))
    with pytest.raises(FileProblem, match="unknown encoding"):
        read(path, encoding="no-such-encoding")
    broken = tmp_path / "broken.csv"
    broken.write_bytes(("Login,Name\r\n" + "a,b\r\n" * 50).encode() + b"x,\xff\xfe\xfd\r\n")
    with pytest.raises(FileProblem, match="not valid utf-8"):
        read(broken, encoding="utf-8")


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiters_are_detected(tmp_path: Path, delimiter: str) -> None:
    path = tmp_path / "people.csv"
    path.write_text(csv_bytes([HEADER, *PEOPLE], delimiter), encoding="utf-8")
    headers, rows, how = read(path)
    assert headers == HEADER and len(rows) == 3
    assert how.endswith(repr(delimiter))


def test_quoted_fields_blank_lines_and_short_rows(tmp_path: Path) -> None:
    text = (
        "\r\nLogin,Job Title,Notes\r\n"
        'a.one,"Head of Sales, EMEA","two\r\nlines"\r\n'
        "\r\n"
        "b.two,Engineer\r\n"
    )
    path = tmp_path / "people.csv"
    path.write_text(text, encoding="utf-8", newline="")
    headers, rows, _ = read(path)
    assert headers == ["Login", "Job Title", "Notes"]
    assert rows[0][1] == {
        "Login": "a.one",
        "Job Title": "Head of Sales, EMEA",
        "Notes": "two\r\nlines",
    }
    assert rows[1][1] == {"Login": "b.two", "Job Title": "Engineer", "Notes": ""}
    assert [r[0] for r in rows] == [4, 6]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty"),
        (b"\r\n \r\n", "empty"),
        (b"Login,,Email\r\na,b,c\r\n", "no header"),
        (b"Login,Email\r\na,b,c\r\n", "row 2 has 3 cells"),
        (b'Login,Email\r\n"a,b\r\n', "malformed"),
    ],
)
def test_files_that_are_not_a_table(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(FileProblem, match=problem):
        read(path)


def test_xlsx_whatever_its_name(tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append([])
    sheet.append([*HEADER, "Employee ID", "Hired"])
    sheet.append([*PEOPLE[0], 1042, dt.datetime(2026, 3, 1)])
    sheet.append([None] * 7)
    sheet.append(["muller", None, "Jürgen", "Müller", "eng", 1043.0, dt.date(2025, 12, 24)])
    path = tmp_path / "people.upload"
    book.save(path)
    headers, rows, how = read(path)
    assert how == "xlsx None None"
    assert headers == [*HEADER, "Employee ID", "Hired"]
    assert rows[0] == (
        3,
        {
            "Login": "ivanov",
            "Email": "ivanov@acme.test",
            "First Name": "Иван",
            "Last Name": "Иванов",
            "Department code": "sales",
            "Employee ID": "1042",
            "Hired": "2026-03-01",
        },
    )
    assert rows[1][0] == 5 and rows[1][1]["Email"] == "" and rows[1][1]["Employee ID"] == "1043"


def test_a_header_may_repeat(tmp_path: Path) -> None:
    """The vendor's template has one Group column per group."""
    path = tmp_path / "groups.csv"
    path.write_text("Login,Group,Group\r\na.one,Sales,Newcomers\r\n", encoding="utf-8")
    with open_table(path) as table:
        assert table.headers == ["Login", "Group", "Group"]
        assert [row.cells for row in table.rows] == [("a.one", "Sales", "Newcomers")]


def test_a_broken_workbook_is_a_clear_problem(tmp_path: Path) -> None:
    path = tmp_path / "broken.xlsx"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    with pytest.raises(FileProblem, match="not a readable XLSX"):
        read(path)


def test_rows_are_streamed_not_loaded(tmp_path: Path) -> None:
    """A file far larger than the sample is read row by row: the first row comes before the
    reader has seen the end (its file position is still early)."""
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("Login,Email\r\n")
        for i in range(200_000):
            out.write(f"user{i},user{i}@acme.test\r\n")
    with open_table(path) as table:
        first = next(table.rows)
        assert first.cells == ("user0", "user0@acme.test")
        assert sum(1 for _ in table.rows) == 199_999
