"""The type a sampled sheet column is given, whichever way (Arrow's inference or the rules for
mixed columns) decides it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pytest

from services.extractor.readers.excel import _infer_sample
from services.extractor.readers.excel_errors import ERROR_TEXTS

NULLS = {"", "N/A"} | ERROR_TEXTS
DAY = dt.date(2026, 3, 29)
MOMENT = dt.datetime(2026, 3, 29, 2, 30)


def expected_value(cell: Any, kind: pa.DataType) -> Any:
    if kind == pa.int64():
        return int(cell)
    if kind == pa.float64():
        return float(cell)
    return cell


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        ([1, 2, 3], pa.int64()),
        ([1.0, 2.0, 3.0], pa.int64()),  # whole numbers stored as floats, as Excel does
        ([1.0, 2.5], pa.float64()),
        ([1, 2.5], pa.float64()),
        ([2**53, 1], pa.float64()),  # beyond what a float holds exactly
        ([float(2**60), 1.0], pa.float64()),
        ([float("inf"), 1.0], pa.float64()),
        ([True, False], pa.bool_()),
        ([True, 1], pa.string()),
        ([1, True], pa.string()),
        ([1.5, True], pa.string()),  # Arrow alone would read TRUE as 1.0
        ([False, 2.5], pa.string()),
        ([DAY, DAY], pa.date32()),
        ([DAY, MOMENT], pa.timestamp("us")),  # Arrow alone would cut the time off
        ([MOMENT, DAY], pa.timestamp("us")),
        ([MOMENT, MOMENT], pa.timestamp("us")),
        (["a", "b"], pa.string()),
        (["a", ""], pa.string()),
        ([1.0, "", 3.0], pa.int64()),  # blank cells do not make a number column text
        ([1.5, "N/A"], pa.float64()),  # nor do null markers
        ([1.0, "#DIV/0!"], pa.int64()),  # nor error cells
        ([1.0, "x"], pa.string()),
        (["", ""], pa.string()),
        ([dt.time(8, 30), dt.time(9)], pa.string()),
    ],
)
def test_sampled_column_type(cells: list[Any], expected: pa.DataType) -> None:
    kind, converted = _infer_sample(tuple(cells), NULLS)
    assert kind == expected
    if converted is not None:  # kept for the first batch: exactly the cells, as that type
        assert converted.type == expected
        assert converted.to_pylist() == [expected_value(c, expected) for c in cells]
