"""The streamed worksheet parser: the same values as calamine, from any valid sheet XML."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import python_calamine as calamine
from openpyxl.utils.datetime import CALENDAR_MAC_1904, CALENDAR_WINDOWS_1900

from services.common.errors import BadInput
from services.common.spec.source import SourceOptions
from services.extractor.readers import ReadLimits, read_batches
from services.extractor.readers.excel_stream import StreamedWorkbook
from services.extractor.readers.sheet_xml import SheetRows, SheetXmlError

MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"


def rows_of(xml: str, strings: list[str] | None = None, dates: set[int] | None = None) -> list:
    source = io.BytesIO(xml.encode())
    return list(SheetRows(source, strings or [], dates or set(), set(), CALENDAR_WINDOWS_1900))


def sheet(body: str, root: str = f'<worksheet xmlns="{MAIN}">', end: str = "</worksheet>") -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?>{root}<sheetData>{body}</sheetData>{end}'


def test_every_kind_of_cell() -> None:
    body = (
        '<row r="2">'
        '<c r="A2" t="s"><v>1</v></c>'  # shared string
        '<c r="B2"><v>42</v></c>'
        '<c r="C2"><v>-1.5E3</v></c>'
        '<c r="D2" t="b"><v>1</v></c>'
        '<c r="E2" t="e"><v>#DIV/0!</v></c>'
        '<c r="F2" t="str"><f>A2&amp;"x"</f><v>beta &amp; co</v></c>'  # formula, cached text
        '<c r="G2" t="inlineStr"><is><r><t>rich </t></r><r><t xml:space="preserve">text</t></r>'
        "<rPh><t>ふりがな</t></rPh></is></c>"
        '<c r="H2" s="1"><v>46000</v></c>'  # styled as a date
        '<c r="I2" s="1"><v>46000.75</v></c>'
        '<c r="K2"><f>SUM(B2)</f></c>'  # a formula never calculated: empty
        "</row>"
    )
    rows = rows_of(sheet(body), strings=["alpha", "beta"], dates={1})
    assert rows == [
        (
            2,
            ["beta", 42, -1500.0, True, "", "beta & co", "rich text",
             dt.date(2025, 12, 9), dt.datetime(2025, 12, 9, 18, 0)],  # empty cells end no row
        )
    ]  # fmt: skip


def test_cells_and_rows_without_references_follow_the_ones_before() -> None:
    body = (
        '<row><c><v>1</v></c><c r="C1"><v>3</v></c><c><v>4</v></c></row><row><c><v>5</v></c></row>'
    )
    assert rows_of(sheet(body)) == [(1, [1, "", 3, 4]), (2, [5])]


def test_any_namespace_prefix_and_strict_open_xml() -> None:
    prefixed = sheet(
        '<x:row r="1"><x:c r="B1" t="inlineStr"><x:is><x:t>a</x:t></x:is></x:c></x:row>',
        root=f'<x:worksheet xmlns:x="{MAIN}">',
        end="</x:worksheet>",
    ).replace("sheetData>", "x:sheetData>")
    assert rows_of(prefixed) == [(1, ["", "a"])]
    strict = sheet(
        '<row r="1"><c r="A1"><v>7</v></c></row>',
        root='<worksheet xmlns="http://purl.oclc.org/ooxml/spreadsheetml/main">',
    )
    assert rows_of(strict) == [(1, [7])]


def test_cells_read_as_calamine_reads_them_however_they_are_written() -> None:
    body = (
        '<row r="1"><c r="A1"><is><t>inline, no type</t></is></c>'
        '<c r="B1" t="b"><v>TRUE</v></c><c r="C1"><v>INF</v></c><c r="D1" s="²"><v> 5</v></c>'
        '<c r="E1" t="d"><v>12:30:00</v></c><c r="F1" t="d"><v>2026-11-24T00:00:00</v></c>'
        '<c r="G1"><v>\u0663.5</v></c></row>'  # Arabic-Indic digits: no number to Rust
    )
    assert rows_of(sheet(body)) == [
        (
            1,
            ["inline, no type", True, float("inf"), " 5", dt.time(12, 30), dt.date(2026, 11, 24),
             "\u0663.5"],
        )
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("cell", "problem"),
    [
        ('<c r="B2" t="s"><v>7</v></c>', "shared string 7 does not exist"),
        ('<c r="B2" t="s"><v>-1</v></c>', "shared string -1 does not exist"),
        ('<c r="B2" t="d"><v>noon</v></c>', "Invalid isoformat"),
    ],
)
def test_a_cell_that_is_no_value_is_an_error_naming_it(cell: str, problem: str) -> None:
    with pytest.raises(SheetXmlError, match=f"cell B2: .*{problem}"):
        rows_of(sheet(f'<row r="2">{cell}</row>'), strings=["only", "two"])


@pytest.mark.parametrize(
    "row",
    [
        '<row r="1"><c r="ZZZZ1"><v>1</v></c></row>',  # one cell, half a million columns
        '<row r="1"><c r="XFE1"><v>1</v></c></row>',  # one past Excel's last column
        '<row r="1"><c r="1"><v>1</v></c></row>',
        '<row r="2000000"><c><v>1</v></c></row>',  # past Excel's last row
        '<row r="²"><c><v>1</v></c></row>',  # a digit to isdigit, not to int
        '<row r="-3"><c><v>1</v></c></row>',
    ],
)
def test_references_outside_a_sheet_are_refused(row: str) -> None:
    with pytest.raises(SheetXmlError, match=r"is not a (row|cell) of a sheet"):
        rows_of(sheet(row))


def test_cells_past_the_column_limit_are_left_out() -> None:
    rows = SheetRows(
        io.BytesIO(sheet('<row r="1"><c r="A1"><v>1</v></c><c r="XFD1"><v>2</v></c></row>').encode()),
        [], set(), set(), CALENDAR_WINDOWS_1900,
    )  # fmt: skip
    rows.limit_columns(2)
    assert list(rows) == [(1, [1])]


def test_the_last_column_is_a_column() -> None:
    [(number, cells)] = rows_of(sheet('<row r="1"><c r="XFD1"><v>1</v></c></row>'))
    assert (number, len(cells), cells[-1]) == (1, 16_384, 1)


def test_a_document_type_declaration_is_refused() -> None:
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE worksheet [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        f'<worksheet xmlns="{MAIN}"><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>&b;</t>'
        "</is></c></row></sheetData></worksheet>"
    )
    with pytest.raises(SheetXmlError, match="document type"):
        rows_of(bomb)


def test_broken_xml_is_an_error_naming_the_position() -> None:
    with pytest.raises(SheetXmlError, match=r"not well-formed.*line 1"):
        rows_of(sheet('<row r="1"><c r="A1"><v>1</v></row>'))


def test_a_broken_sheet_in_a_streamed_workbook_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "w.xlsx"
    wb = openpyxl.Workbook()
    wb.active.append(["a"])
    wb.active.append([1])
    wb.save(path)
    broken = tmp_path / "broken.xlsx"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(broken, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b"</sheetData>", b"")
            target.writestr(item, data)
    streamed = ReadLimits(excel_in_memory_bytes=0)
    with pytest.raises(BadInput, match="not a readable Excel workbook") as caught:
        list(read_batches(broken, "auto", SourceOptions(), streamed))
    assert caught.value.context.file == str(broken)


def mixed_workbook(path: Path, date1904: bool) -> Path:
    wb = openpyxl.Workbook()
    if date1904:
        wb.epoch = CALENDAR_MAC_1904
    ws = wb.active
    ws["C3"] = "name"
    ws["D3"] = "when"
    rows: list[list[Any]] = [
        ["a < b & c", dt.datetime(2026, 1, 2, 3, 4, 5), 1, 2.5, True, None, "=1+1"],
        ["ünïcødé", dt.datetime(2026, 1, 2), -7, 1e20, False, "", "x"],
        [None, None, None, None, None, None, None],
        ["  spaced  ", dt.date(1999, 12, 31), 0, -0.0, None, 3, "#N/A"],
    ]
    for number, row in enumerate(rows, start=4):
        for column, value in enumerate(row, start=3):
            if value is not None:
                ws.cell(number, column, value)
    ws.cell(9, 5, 12)
    wb.save(path)
    return path


@pytest.mark.parametrize("date1904", [False, True])
def test_streamed_rows_are_calamines_rows(tmp_path: Path, date1904: bool) -> None:
    path = mixed_workbook(tmp_path / "m.xlsx", date1904)
    expected = calamine.CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0)
    streamed = StreamedWorkbook(path)
    try:
        got = streamed.get_sheet_by_index(0)
        assert got.start == expected.start
        assert trimmed(got.iter_rows()) == trimmed(expected.iter_rows())
    finally:
        streamed.close()


def trimmed(rows: Any) -> list[list[Any]]:
    """Rows without their trailing empty cells (calamine pads rows to the sheet's width), and
    numbers compared by value (calamine gives whole xlsx numbers as floats)."""
    out = []
    for row in rows:
        cells = [float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in row]
        while cells and cells[-1] == "":
            cells.pop()
        out.append(cells)
    return out
