"""Helpers that write small source files and read them through the extractor's readers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openpyxl
import pyarrow as pa
import xlwt

from services.common.spec.source import Source
from services.extractor.readers import ReadLimits, read_batches
from services.extractor.settings import ExtractorSettings
from services.extractor.units import discover, materialize


def read_table(
    path: Path, fmt: str = "auto", batch_bytes: int = 1 << 20, **options: Any
) -> pa.Table:
    """Every batch of ``path`` as one table; asserts the unit kept one schema."""
    source = Source(uri=path.as_uri(), format=fmt, options=options)  # type: ignore[arg-type]
    limits = ReadLimits(batch_bytes=batch_bytes, max_line_bytes=batch_bytes)
    batches = list(read_batches(path, fmt, source.options, limits))
    if not batches:
        return pa.table({})
    schemas = {b.schema for b in batches}
    assert len(schemas) == 1, f"schema changed mid-unit: {schemas}"
    return pa.Table.from_batches(batches)


def pull_units(
    uri: str, settings: ExtractorSettings | None = None, **spec: Any
) -> dict[str, pa.Table]:
    """Discover ``uri`` and read every unit the way the service does: {unit id: table}."""
    settings = settings or ExtractorSettings()
    source = Source(uri=uri, **spec)
    tables = {}
    for unit in discover(source, settings):
        with materialize(unit.uri, unit.member, unit.format, source, settings) as (path, fmt, _):
            batches = list(read_batches(path, fmt, source.options, ReadLimits(batch_bytes=1 << 20)))
        tables[unit.id] = pa.Table.from_batches(batches) if batches else pa.table({})
    return tables


def far_cell_xlsx(path: Path) -> Path:
    """Five kilobytes that calamine would expand to 16,384 x 1,048,576 cells (512 GiB)."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["id", "name"])
    ws.append([1, "one"])
    ws.append([2, "two"])
    ws["XFD1048576"] = "far"
    wb.save(path)
    return path


def far_cell_xls(path: Path) -> Path:
    """Three sheets, each expanding to 256 x 65,536 cells: over 600 MB each inside calamine."""
    book = xlwt.Workbook()
    for n in range(3):
        sheet = book.add_sheet(f"S{n}")
        sheet.write(0, 0, "id")
        sheet.write(1, 0, 1)
        sheet.write(65_535, 255, "far")
    book.save(str(path))
    return path


def small_xls(path: Path, rows: int) -> Path:
    book = xlwt.Workbook()
    sheet = book.add_sheet("Data")
    sheet.write(0, 0, "id")
    sheet.write(0, 1, "name")
    for r in range(1, rows + 1):
        sheet.write(r, 0, r)
        sheet.write(r, 1, f"n{r}")
    book.save(str(path))
    return path
