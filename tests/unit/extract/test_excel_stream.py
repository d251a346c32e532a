"""Which decoder a workbook gets: calamine in memory, or streaming above the size limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openpyxl
import pytest
import xlwt

from services.common.spec.source import SourceOptions
from services.extractor.readers import ReadLimits, excel_rules, read_batches, sheet_xml
from services.extractor.readers import excel as excel_reader
from services.extractor.readers.excel_stream import largest_sheet_bytes


def workbook(path: Path, rows: int) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["id", "note"])
    for i in range(rows):
        ws.append([i, f"row {i}"])
    wb.create_sheet("Small").append(["x"])
    wb.save(path)
    return path


def test_largest_sheet_part_is_measured(tmp_path: Path) -> None:
    size = largest_sheet_bytes(workbook(tmp_path / "w.xlsx", 2000))
    assert size > 2000 * 20  # the big sheet, not the small one
    book = xlwt.Workbook()
    book.add_sheet("s").write(0, 0, 1)
    book.save(str(tmp_path / "w.xls"))
    assert largest_sheet_bytes(tmp_path / "w.xls") == 0  # not a zip: calamine
    (tmp_path / "broken.xlsx").write_bytes(b"PK\x03\x04 truncated")
    assert largest_sheet_bytes(tmp_path / "broken.xlsx") == 0  # calamine names the problem


@pytest.mark.parametrize(("limit", "streamed"), [(1 << 30, False), (1000, True)])
def test_sheets_over_the_limit_are_streamed(
    tmp_path: Path, limit: int, streamed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = workbook(tmp_path / "w.xlsx", 500)
    opened: list[str] = []
    real = excel_reader.StreamedWorkbook
    monkeypatch.setattr(
        excel_reader, "StreamedWorkbook", lambda p: opened.append(str(p)) or real(p)
    )
    limits = ReadLimits(excel_in_memory_bytes=limit)
    batches = list(read_batches(path, "auto", SourceOptions(), limits))
    assert sum(b.num_rows for b in batches) == 500
    assert batches[-1].column("note").to_pylist()[-1] == "row 499"
    assert opened == ([str(path)] if streamed else [])


def test_a_sparse_cell_far_right_does_not_widen_streamed_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["id", "name"])
    for i in range(1_000):
        ws.append([i, f"n{i}"])
        ws.cell(i + 2, 16_384, "far")  # column XFD, past the header's columns
    wb.save(tmp_path / "sparse.xlsx")
    seen: list[int] = []
    real = excel_reader._Sheet.columns
    monkeypatch.setattr(
        excel_reader._Sheet,
        "columns",
        lambda self, rows: seen.extend(map(len, rows)) or real(self, rows),
    )
    parsed_wide: set[int] = set()  # rows the XML parser made wider than the header
    place = sheet_xml._Handlers._place

    def placing(handlers: Any, value: Any) -> None:
        place(handlers, value)
        if len(handlers._cells) > 2:
            parsed_wide.add(handlers._row_number)

    monkeypatch.setattr(sheet_xml._Handlers, "_place", placing)
    batches = list(
        read_batches(
            tmp_path / "sparse.xlsx", "auto", SourceOptions(), ReadLimits(excel_in_memory_bytes=0)
        )
    )
    assert batches[0].column("name").to_pylist() == [f"n{i}" for i in range(1_000)]
    # Only the rows read before the header was known are as wide as the sheet.
    assert sum(width > 2 for width in seen) < excel_reader._HEADER_ROWS
    # Once it is known, the parser itself stops storing the far cells: only the rows of the
    # first small chunks of XML were parsed wide.
    assert len(parsed_wide) < 300, len(parsed_wide)


def test_a_wide_sheet_gets_batches_of_fewer_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(excel_rules, "BATCH_CELLS", 10_000)
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("Wide")
    ws.append([f"c{i}" for i in range(50)])
    for r in range(1_000):
        ws.append([r] * 50)
    wb.save(tmp_path / "wide.xlsx")
    # In this process, so that the smaller batch size applies (the decoder worker's is its own).
    batches = list(
        excel_reader.decode_in_memory(tmp_path / "wide.xlsx", SourceOptions(), ReadLimits())
    )
    assert max(b.num_rows for b in batches) == 10_000 // 50
    lines = [line for b in batches for line in b.column("_sluice_line").to_pylist()]
    assert lines == list(range(2, 1_002))
    assert [row for b in batches for row in b.column("c7").to_pylist()] == list(range(1_000))
