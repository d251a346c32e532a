"""Excel workbooks: sheets, title rows, ranges, dates, error cells.

Every test runs twice: with calamine decoding the sheets in memory, and with big workbooks'
streaming decoder forced on (xlsx and xlsm only; the other formats take calamine either way),
so both decoders are held to the same results.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from pathlib import Path

import openpyxl
import pytest
import xlwt

from services.common.errors import BadInput
from services.extractor.readers import excel
from tests.unit.extract.conftest import read_table


@pytest.fixture(autouse=True, params=["calamine", "streamed"])
def decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "streamed":
        measured = excel.largest_sheet_bytes
        monkeypatch.setattr(
            excel, "largest_sheet_bytes", lambda path: 1 << 62 if measured(path) else 0
        )
    return str(request.param)


def report_xlsx(path: Path) -> Path:
    """A typical report: title rows, a header in row 4, data from row 5, a second sheet."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Report"
    ws["A1"] = "Monthly sales"
    ws["A2"] = "generated 2026-11-01"
    ws.append([])
    ws.append(["store", "day", "amount", "ok"])
    ws.append([1, dt.datetime(2026, 11, 1), 10.5, True])
    ws.append([2, dt.datetime(2026, 11, 2), 3, False])
    ws.append([])
    ws.append([3, dt.datetime(2026, 11, 3), 7.25, True])
    other = wb.create_sheet("Returns")
    other.append(["store", "day", "amount", "ok"])
    other.append([9, dt.datetime(2026, 11, 9), -1.5, False])
    wb.save(path)
    return path


def test_xlsx_with_title_rows_keeps_sheet_row_numbers(tmp_path: Path) -> None:
    table = read_table(report_xlsx(tmp_path / "r.xlsx"), header_row=4)
    assert table.column_names == ["store", "day", "amount", "ok", "_sluice_line"]
    assert table.column("store").to_pylist() == [1, 2, 3]
    assert str(table.schema.field("store").type) == "int64"
    assert table.column("amount").to_pylist() == [10.5, 3.0, 7.25]
    assert str(table.schema.field("day").type) == "date32[day]"
    assert table.column("day").to_pylist() == [dt.date(2026, 11, d) for d in (1, 2, 3)]
    assert table.column("ok").to_pylist() == [True, False, True]
    assert table.column("_sluice_line").to_pylist() == [5, 6, 8]


def test_data_away_from_the_corner_has_no_empty_leading_columns(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws["C4"], ws["D4"] = "id", "name"
    ws["C5"], ws["D5"] = 7, "x"
    ws["C6"], ws["D6"] = 8, "y"
    ws["D7"] = "z"
    wb.save(tmp_path / "corner.xlsx")
    table = read_table(tmp_path / "corner.xlsx")
    assert table.column_names == ["id", "name", "_sluice_line"]
    assert table.column("id").to_pylist() == [7, 8, None]
    assert table.column("_sluice_line").to_pylist() == [5, 6, 7]  # the rows Excel shows
    assert read_table(tmp_path / "corner.xlsx", header_row=5).column_names[:2] == ["7", "x"]
    ranged = read_table(tmp_path / "corner.xlsx", cell_range="D4:D7")
    assert ranged.column("name").to_pylist() == ["x", "y", "z"]


def test_xls_away_from_the_corner(tmp_path: Path) -> None:
    book = xlwt.Workbook()
    sheet = book.add_sheet("s")
    sheet.write(3, 2, "id")
    sheet.write(4, 2, 7)
    book.save(str(tmp_path / "corner.xls"))
    table = read_table(tmp_path / "corner.xls")
    assert table.column_names == ["id", "_sluice_line"]
    assert table.to_pylist() == [{"id": 7, "_sluice_line": 5}]


def test_workbook_without_a_dimension_record(tmp_path: Path) -> None:
    wb = openpyxl.Workbook(write_only=True)  # writes no <dimension> element
    ws = wb.create_sheet("Data")
    ws.append(["id", "when"])
    for i in range(1, 4):
        ws.append([i, dt.datetime(2026, 1, i, 12, 30)])
    wb.save(tmp_path / "nodim.xlsx")
    with zipfile.ZipFile(tmp_path / "nodim.xlsx") as archive:
        assert b"<dimension" not in archive.read("xl/worksheets/sheet1.xml")
    table = read_table(tmp_path / "nodim.xlsx")
    assert table.column("id").to_pylist() == [1, 2, 3]
    assert table.column("when").to_pylist()[0] == dt.datetime(2026, 1, 1, 12, 30)


def test_sheet_by_name_and_index(tmp_path: Path) -> None:
    path = report_xlsx(tmp_path / "r.xlsx")
    assert read_table(path, sheet="Returns").column("store").to_pylist() == [9]
    assert read_table(path, sheet=1).column("store").to_pylist() == [9]


def test_all_sheets_add_the_sheet_column(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    for name, value in (("Jan", 1), ("Feb", 2.5)):
        ws = wb.create_sheet(name)
        ws.append(["n"])
        ws.append([value])
    del wb["Sheet"]
    wb.save(tmp_path / "m.xlsx")
    table = read_table(tmp_path / "m.xlsx", sheet="*")
    assert table.column("sheet").to_pylist() == ["Jan", "Feb"]
    assert table.column("n").to_pylist() == [1.0, 2.5]


def test_unknown_sheet_lists_the_sheets(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no sheet 'Nope'; the workbook has 'Report', 'Returns'"):
        read_table(report_xlsx(tmp_path / "r.xlsx"), sheet="Nope")


def test_cell_range(tmp_path: Path) -> None:
    table = read_table(report_xlsx(tmp_path / "r.xlsx"), cell_range="A4:C6")
    assert table.column_names == ["store", "day", "amount", "_sluice_line"]
    assert table.column("store").to_pylist() == [1, 2]


def test_xls_dates_and_numbers(tmp_path: Path) -> None:
    wb = xlwt.Workbook()
    ws = wb.add_sheet("Data")
    date_style = xlwt.easyxf(num_format_str="YYYY-MM-DD")
    for col, name in enumerate(["id", "day", "name"]):
        ws.write(0, col, name)
    for row in range(1, 4):
        ws.write(row, 0, row)
        ws.write(row, 1, dt.datetime(2026, 1, row), date_style)
        ws.write(row, 2, f"n{row}")
    wb.save(str(tmp_path / "d.xls"))
    table = read_table(tmp_path / "d.xls")
    assert table.column("id").to_pylist() == [1, 2, 3]
    assert table.column("day").to_pylist() == [
        dt.date(2026, 1, 1),
        dt.date(2026, 1, 2),
        dt.date(2026, 1, 3),
    ]
    assert table.column("_sluice_line").to_pylist() == [2, 3, 4]


def test_1904_date_system(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    wb.epoch = openpyxl.utils.datetime.CALENDAR_MAC_1904
    ws = wb.active
    ws.append(["day"])
    ws.append([dt.datetime(2026, 3, 4)])
    wb.save(tmp_path / "mac.xlsx")
    assert read_table(tmp_path / "mac.xlsx").column("day").to_pylist() == [dt.date(2026, 3, 4)]


def test_error_cells_are_null(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["a", "b"])
    ws.append([1, 2])
    ws.append([3, 4])
    ws["B3"].value = "#DIV/0!"
    ws["B3"].data_type = "e"
    wb.save(tmp_path / "e.xlsx")
    assert read_table(tmp_path / "e.xlsx").column("b").to_pylist() == [2, None]


@pytest.mark.parametrize(
    ("first", "late"),
    [
        (7, "oops"),  # text among whole numbers
        (7, True),  # TRUE is not the number 1
        (7.5, False),
        (dt.date(2026, 11, 1), dt.datetime(2026, 11, 1, 12, 30)),  # a time of day in a date column
    ],
)
def test_a_late_cell_of_another_kind_names_the_cell(
    tmp_path: Path, first: object, late: object
) -> None:
    """A cell after the sampled rows that the planned type cannot hold exactly is refused
    with its place, never converted into something else."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "S"
    ws.append(["n"])
    for _ in range(25_000):
        ws.append([first])
    ws.append([late])
    wb.save(tmp_path / "late.xlsx")
    with pytest.raises(BadInput) as caught:
        read_table(tmp_path / "late.xlsx")
    assert caught.value.context.line == 25_002
    assert "cell A25002" in caught.value.message
    assert repr(late) in caught.value.message


def test_blank_cells_are_null_whatever_the_null_markers(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    for row in (["name", "n"], ["x", 1], ["N/A", 2], [None, 3], ["y", 4]):
        ws.append(row)
    wb.save(tmp_path / "markers.xlsx")
    table = read_table(tmp_path / "markers.xlsx", null_values=["N/A"])
    assert table.column("name").to_pylist() == ["x", None, None, "y"]


@pytest.mark.parametrize("content", [b"PK\x03\x04garbage", b"", b"not a workbook"])
def test_corrupt_workbook(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "bad.xlsx").write_bytes(content)
    with pytest.raises(BadInput):
        read_table(tmp_path / "bad.xlsx", fmt="xlsx")


def test_truncated_xlsx(tmp_path: Path) -> None:
    data = report_xlsx(tmp_path / "r.xlsx").read_bytes()
    (tmp_path / "cut.xlsx").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInput, match="not a readable Excel workbook"):
        read_table(tmp_path / "cut.xlsx", fmt="xlsx")


def test_number_too_large_for_the_planned_integer_column(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["n"])
    for i in range(25_000):
        ws.append([i])
    ws.append([1e20])
    wb.save(tmp_path / "big.xlsx")
    with pytest.raises(BadInput, match="column_types"):
        read_table(tmp_path / "big.xlsx")


ODS_CONTENT = """<?xml version="1.0" encoding="UTF-8"?>
<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"
 xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">
<office:body><office:spreadsheet><table:table table:name="Data">
<table:table-row>
 <table:table-cell office:value-type="string"><text:p>id</text:p></table:table-cell>
 <table:table-cell office:value-type="string"><text:p>day</text:p></table:table-cell>
</table:table-row>
<table:table-row>
 <table:table-cell office:value-type="float" office:value="7"><text:p>7</text:p></table:table-cell>
 <table:table-cell office:value-type="date" office:date-value="2026-11-05"><text:p>x</text:p></table:table-cell>
</table:table-row>
</table:table></office:spreadsheet></office:body></office:document-content>"""

ODS_MANIFEST = """<?xml version="1.0" encoding="UTF-8"?>
<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"
 manifest:version="1.2">
<manifest:file-entry manifest:full-path="/"
 manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>
<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>
</manifest:manifest>"""


def test_ods_spreadsheet(tmp_path: Path) -> None:
    path = tmp_path / "d.ods"
    content = re.sub(r">\s+<", "><", ODS_CONTENT)  # calamine wants no text between cells
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("content.xml", content, zipfile.ZIP_DEFLATED)
        archive.writestr("META-INF/manifest.xml", ODS_MANIFEST, zipfile.ZIP_DEFLATED)
    table = read_table(path)
    assert table.column("id").to_pylist() == [7]
    assert table.column("day").to_pylist() == [dt.date(2026, 11, 5)]


@pytest.mark.parametrize("name", ["locked.xlsx", "locked.xls", "locked"])
def test_a_workbook_saved_with_a_password_is_named(tmp_path: Path, name: str) -> None:
    from msoffcrypto.format.ooxml import OOXMLFile

    book = openpyxl.Workbook()
    book.active.append(["id"])
    book.active.append([1])
    plain = io.BytesIO()
    book.save(plain)
    plain.seek(0)
    path = tmp_path / name
    with path.open("wb") as locked:
        OOXMLFile(plain).encrypt("secret", locked)  # as Excel's "Encrypt with Password" does
    with pytest.raises(BadInput, match="the workbook is password-protected") as caught:
        read_table(path)
    assert caught.value.context.file == str(path)


def test_password_protected_workbook_is_named(tmp_path: Path) -> None:
    # What Excel writes for a password: an OLE2 container with an EncryptedPackage stream.
    ole2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)
    (tmp_path / "locked.xlsx").write_bytes(
        ole2 + "EncryptedPackage".encode("utf-16-le") + bytes(1000)
    )
    with pytest.raises(BadInput, match="password-protected"):
        read_table(tmp_path / "locked.xlsx")
