"""Which decoder a workbook gets: calamine in memory, or streaming above the size limit."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest
import xlwt

from services.common.spec.source import SourceOptions
from services.extractor.readers import ReadLimits, read_batches
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
