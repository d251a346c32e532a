"""Excel error cells: read as null, and named (file, sheet, cells, count) in a warning."""

from __future__ import annotations

import gc
import logging
import re
import zipfile
from pathlib import Path

import openpyxl
import pytest
import xlwt

from services.extractor.readers.excel_errors import find_error_cells
from tests.unit.extract.conftest import read_table
from tests.unit.extract.test_excel import ODS_MANIFEST


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "error cells" in r.getMessage()]


def test_xlsx_error_cells_are_null_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Sales"
    ws.append(["id", "amount", "ratio"])
    for i in range(1, 9):
        ws.append([i, i * 1.5, "#DIV/0!" if i % 3 == 0 else i / 10])
    ws["A5"].value = "#N/A"
    for cell in ("C4", "C7", "A5"):
        ws[cell].data_type = "e"
    wb.save(tmp_path / "e.xlsx")
    with caplog.at_level(logging.WARNING):
        table = read_table(tmp_path / "e.xlsx")
    assert table.column("ratio").to_pylist()[2] is None
    assert table.column("id").to_pylist()[3] is None
    assert table.column("ratio").null_count == 2
    assert warnings(caplog) == [
        "3 error cells (#DIV/0!, #N/A, ...) read as null in e.xlsx, sheet 'Sales': C4, A5, C7"
    ]


def test_xlsx_errors_outside_the_cell_range_are_not_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["title", None, "#REF!"])
    ws.append(["a", "b", None])
    ws.append([1, "#N/A", "#VALUE!"])
    for cell in ("C1", "B3", "C3"):
        ws[cell].data_type = "e"
    wb.save(tmp_path / "r.xlsx")
    with caplog.at_level(logging.WARNING):
        table = read_table(tmp_path / "r.xlsx", cell_range="A2:B3")
    assert table.column("b").to_pylist() == [None]
    assert warnings(caplog) == [
        "1 error cells (#DIV/0!, #N/A, ...) read as null in r.xlsx, sheet 'Sheet': B3"
    ]


def test_many_xlsx_errors_count_all_and_name_the_first(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["v"])
    for i in range(2, 40_002):
        ws.append(["#N/A" if i % 1000 == 0 else i])
        if i % 1000 == 0:
            ws[f"A{i}"].data_type = "e"
    wb.save(tmp_path / "m.xlsx")
    found = find_error_cells(tmp_path / "m.xlsx", lambda sheet, row, col: True)
    assert found["Sheet"].count == 40
    assert found["Sheet"].cells == ["A1000", "A2000", "A3000", "A4000", "A5000"]


def test_xls_error_cells_on_every_sheet(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    wb = xlwt.Workbook()
    first = wb.add_sheet("First")
    first.write(0, 0, "a")
    first.write(0, 1, "b")
    first.write(1, 0, 1)
    first.row(1).set_cell_error(1, "#DIV/0!")
    first.row(2).set_cell_error(0, 0x2A)  # #N/A
    first.write(2, 1, 2.5)
    second = wb.add_sheet("Second")
    second.write(0, 0, "a")
    second.write(0, 1, "b")
    second.write(1, 0, 4)
    second.row(1).set_cell_error(1, "#REF!")
    second.write(2, 0, 5)
    second.write(2, 1, 7.5)
    wb.save(str(tmp_path / "e.xls"))
    with caplog.at_level(logging.WARNING):
        table = read_table(tmp_path / "e.xls", sheet="*")
    assert table.column("a").to_pylist() == [1, None, 4, 5]
    assert table.column("b").to_pylist() == [None, 2.5, None, 7.5]
    assert warnings(caplog) == [
        "2 error cells (#DIV/0!, #N/A, ...) read as null in e.xls, sheet 'First': B2, A3",
        "1 error cells (#DIV/0!, #N/A, ...) read as null in e.xls, sheet 'Second': B2",
    ]


ODS = """<?xml version="1.0" encoding="UTF-8"?>
<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"
 xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"
 xmlns:calcext="urn:org:documentfoundation:names:experimental:calc:xmlns:calcext:1.0"
 office:version="1.2">
<office:body><office:spreadsheet><table:table table:name="Data">
<table:table-row>
 <table:table-cell office:value-type="string"><text:p>id</text:p></table:table-cell>
 <table:table-cell office:value-type="string"><text:p>ratio</text:p></table:table-cell>
</table:table-row>
<table:table-row table:number-rows-repeated="2">
 <table:table-cell office:value-type="float" office:value="7"><text:p>7</text:p></table:table-cell>
 <table:table-cell office:value-type="float" office:value="0.5"><text:p>0.5</text:p></table:table-cell>
</table:table-row>
<table:table-row>
 <table:table-cell office:value-type="float" office:value="8"><text:p>8</text:p></table:table-cell>
 <table:table-cell table:formula="of:=1/0" office:value-type="string" office:string-value=""
  calcext:value-type="error"><text:p>#DIV/0!</text:p></table:table-cell>
</table:table-row>
</table:table></office:spreadsheet></office:body></office:document-content>"""


def test_ods_error_cells(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "e.ods"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("content.xml", re.sub(r">\s+<", "><", ODS), zipfile.ZIP_DEFLATED)
        archive.writestr("META-INF/manifest.xml", ODS_MANIFEST, zipfile.ZIP_DEFLATED)
    with caplog.at_level(logging.WARNING):
        table = read_table(path)
    assert table.column("ratio").to_pylist() == [0.5, 0.5, None]
    assert warnings(caplog) == [
        "1 error cells (#DIV/0!, #N/A, ...) read as null in e.ods, sheet 'Data': B4"
    ]


def test_a_workbook_without_errors_logs_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wb = openpyxl.Workbook()
    wb.active.append(["a"])
    wb.active.append([1])
    wb.save(tmp_path / "ok.xlsx")
    with caplog.at_level(logging.WARNING):
        read_table(tmp_path / "ok.xlsx")
    assert warnings(caplog) == []


def test_xls_blank_cells_without_errors_log_nothing_and_gc_stays_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wb = xlwt.Workbook()
    sheet = wb.add_sheet("S")
    sheet.write(0, 0, "a")
    sheet.write(0, 1, "b")
    for row in range(1, 50):
        sheet.write(row, 0, row)
        if row % 2:
            sheet.write(row, 1, True)  # a BOOLERR record that is not an error
    wb.save(str(tmp_path / "blank.xls"))
    with caplog.at_level(logging.WARNING):
        table = read_table(tmp_path / "blank.xls")
    assert table.column("b").null_count == 24
    assert warnings(caplog) == []
    assert gc.isenabled()
