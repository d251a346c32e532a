"""The columnar xls path gives the row path's batches and warnings, or leaves the sheet to it.

Random workbooks mix what users' files hold (title rows, blank rows, error cells, null markers,
whole and fractional numbers, dates with and without a time of day, stray texts among numbers),
and each is read both ways in process.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import xlwt

from services.common.errors import BadInput
from services.common.spec.source import SourceOptions
from services.extractor.readers import ReadLimits, excel, excel_columnar, excel_rules

_DATE = xlwt.easyxf(num_format_str="YYYY-MM-DD")
_MOMENT = xlwt.easyxf(num_format_str="YYYY-MM-DD hh:mm")
_KINDS = [
    "int", "fraction", "numbers", "text", "date", "moment", "bool", "text_markers",
    "number_markers", "number_errors", "junk", "sparse", "bool_numbers", "padded_markers",
]  # fmt: skip


class _Error(str):
    """An error cell (#DIV/0!, ...), as Excel saves one."""


def _cell(kind: str, rng: random.Random, row: int) -> Any:
    if rng.random() < 0.1:
        return None  # a blank cell in any column
    if kind == "int":
        return rng.randint(-1000, 10**6)
    if kind == "fraction":
        return rng.randint(0, 999) + 0.25
    if kind == "numbers":  # xls keeps whole numbers as integers, the others as floats
        return rng.choice([rng.randint(0, 99), rng.randint(0, 99) + 0.5])
    if kind == "text":
        return rng.choice(["north", "south", f"receipt {row}", " spaced ", "NA"])
    if kind == "date":
        return dt.datetime(2026, 1, 1) + dt.timedelta(days=rng.randint(0, 400))
    if kind == "moment":
        return dt.datetime(2026, 1, 1, rng.randint(0, 23), rng.choice([0, 30]))
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "text_markers":
        return rng.choice(["a", "b", "N/A", "-", "#N/A", ""])
    if kind == "number_markers":
        return rng.choice([rng.randint(0, 9), "NA", "-", "null"])
    if kind == "number_errors":
        return rng.choice([rng.random(), _Error("#DIV/0!"), _Error("#N/A"), xlwt.Formula("1/0")])
    if kind == "junk":
        return rng.choice([1, 2.5, "x", "12"])
    if kind == "sparse":
        return rng.randint(0, 9) if rng.random() < 0.05 else None
    if kind == "bool_numbers":
        return rng.choice([True, 1, 2])
    return rng.choice([rng.randint(0, 9), " NA ", "NA"])  # padded_markers


def _write(sheet: Any, row: int, col: int, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, _Error):
        sheet.row(row).set_cell_error(col, 0x2A if value == "#N/A" else str(value))
    elif isinstance(value, dt.datetime):
        sheet.write(row, col, value, _MOMENT if value.hour or value.minute else _DATE)
    else:
        sheet.write(row, col, value)


def _workbook(path: Path, rng: random.Random) -> dict[str, Any]:
    """A random one-sheet xls, and the options that read it."""
    book = xlwt.Workbook()
    sheet = book.add_sheet("Data")
    options: dict[str, Any] = {}
    row = 0
    if rng.random() < 0.3:  # a report: a title, maybe a blank row, then the table
        _write(sheet, 0, 0, "Monthly report")
        row = rng.choice([1, 2])
        options["skip_rows"] = rng.choice([1, row])
    elif rng.random() < 0.2:
        row = rng.randint(1, 3)  # the table starts lower, nothing above it
    kinds = rng.sample(_KINDS, rng.randint(1, 5))
    if rng.random() < 0.7:  # most sheets hold clean columns only
        kinds = [k for k in kinds if k in ("int", "fraction", "numbers", "text", "date", "moment",
                                           "bool", "number_errors")] or ["int"]  # fmt: skip
    names = [f"c{i}" for i in range(len(kinds))]
    if len(names) > 1 and rng.random() < 0.1:
        names[1] = names[0]  # a duplicate name
    if rng.random() < 0.05:
        names[-1] = None  # a blank header cell
    for col, name in enumerate(names):
        _write(sheet, row, col, name)
    for offset in range(rng.randint(0, 60)):
        if rng.random() < 0.05:
            continue  # a blank row
        for col, kind in enumerate(kinds):
            _write(sheet, row + 1 + offset, col, _cell(kind, rng, offset))
    book.save(str(path))
    if rng.random() < 0.2:
        options["null_values"] = rng.choice([["-"], [], ["NA", "N/A", "null"]])
    if rng.random() < 0.1:
        options["max_rows"] = rng.randint(0, 20)
    return options


def _read(path: Path, options: SourceOptions, columnar: bool) -> tuple[Any, list[str]]:
    """The batches (or the error) and the warnings of a read."""
    handler = _Records()
    logger = logging.getLogger(excel.__name__)
    logger.addHandler(handler)
    try:
        batches = list(excel.decode_in_memory(path, options, ReadLimits(), columnar))
    except BadInput as exc:
        return str(exc), handler.messages
    finally:
        logger.removeHandler(handler)
    return [(b.schema, b.to_pydict()) for b in batches], handler.messages


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("sample_rows", [20_000, 7])
def test_random_workbooks_read_the_same_both_ways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sample_rows: int
) -> None:
    # A small sample puts the later rows in later batches, where the type is already decided.
    monkeypatch.setattr(excel_rules, "SAMPLE_ROWS", sample_rows)
    rng = random.Random(sample_rows)
    columnar = 0
    for case in range(120):
        path = tmp_path / f"book{case}.xls"
        options = SourceOptions(**_workbook(path, rng))
        rows = _read(path, options, columnar=False)
        fast = _read(path, options, columnar=True)
        assert fast == rows, f"case {case}: {options}"
        columnar += excel_columnar.read(path, options) is not None
    assert columnar >= 40, f"only {columnar} of 120 workbooks took the columnar path"


def _xls(path: Path, rows: list[list[Any]]) -> Path:
    book = xlwt.Workbook()
    sheet = book.add_sheet("Data")
    for r, values in enumerate(rows):
        for c, value in enumerate(values):
            _write(sheet, r, c, value)
    book.save(str(path))
    return path


def _columnar(path: Path, **options: Any) -> excel_columnar.ColumnarSheet | None:
    return excel_columnar.read(path, SourceOptions(**options))


def test_a_clean_sheet_is_read_in_columns_with_the_row_paths_types(tmp_path: Path) -> None:
    path = _xls(tmp_path / "clean.xls", [
        ["id", "price", "day", "at", "ok", "name"],
        [1, 10, dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 1, 9, 30), True, "a"],
        [2, 10.5, dt.datetime(2026, 1, 2), dt.datetime(2026, 1, 2), False, None],
        [],
        [3, 11, None, dt.datetime(2026, 1, 3, 18, 0), True, "c"],
    ])  # fmt: skip
    sheet = _columnar(path)
    assert sheet is not None
    table = pa.Table.from_batches(sheet.batches)
    assert table.schema.types[:6] == [
        pa.int64(), pa.float64(), pa.date32(), pa.timestamp("us"), pa.bool_(), pa.string()
    ]  # fmt: skip
    assert table.column("price").to_pylist() == [10.0, 10.5, 11.0]
    assert table.column("_sluice_line").to_pylist() == [2, 3, 5]  # the blank row 4 skipped
    assert table.column("name").to_pylist() == ["a", None, "c"]


@pytest.mark.parametrize(
    ("rows", "options"),
    [
        ([["n"], [1], ["x"]], {}),  # a text among numbers: the row path makes it a text column
        ([["n"], [1], [True]], {}),  # a boolean among numbers
        ([["n"], [1], ["NA"]], {"null_values": ["-"]}),  # NA is no null marker here
        ([[2024], [1]], {}),  # a number as header: fastexcel writes it its own way
        ([["a", None, "b"], [1, 2, 3]], {}),  # a blank header cell
        ([["n"], [None], [1]], {"sheet": "*"}),  # every sheet: the row path unifies them
        ([["n"], [1]], {"cell_range": "A1:A2"}),
        ([["n"], [1], [2]], {"max_rows": 1}),  # the row path reads part of the sheet
        ([["t"], [dt.datetime(2026, 1, 1)], [dt.datetime(2026, 1, 2, 10, 0)]], {}),  # sampled
    ],
)
def test_what_the_columnar_path_cannot_promise_is_left_to_the_row_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows: list[list[Any]], options: dict[str, Any]
) -> None:
    monkeypatch.setattr(excel_rules, "SAMPLE_ROWS", 1)  # the last case: dates only in the sample
    path = _xls(tmp_path / "book.xls", rows)
    assert _columnar(path, **options) is None


def test_a_header_below_blank_rows_is_found_as_the_row_path_finds_it(tmp_path: Path) -> None:
    path = _xls(tmp_path / "low.xls", [[], [], ["id", "v"], [1, "a"], [2, "b"]])
    sheet = _columnar(path)
    assert sheet is not None
    assert sheet.header_row == 3
    assert pa.Table.from_batches(sheet.batches).column("_sluice_line").to_pylist() == [4, 5]


def test_null_markers_and_error_cells_in_a_number_column_read_as_null(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _xls(tmp_path / "marks.xls", [["n"], [1.5], ["N/A"], [_Error("#DIV/0!")], [2]])
    sheet = _columnar(path)
    assert sheet is not None
    assert pa.Table.from_batches(sheet.batches).column("n").to_pylist() == [1.5, None, 2.0]
    with caplog.at_level(logging.WARNING):
        list(excel.decode_in_memory(path, SourceOptions(), ReadLimits()))
    assert "sheet 'Data': A4" in caplog.text
