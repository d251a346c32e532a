"""Checks: what each one rejects, where the rejected rows go, and the unit-level limits."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from services.common.errors import CheckFailed
from services.extractor.readers.bad_rows import CHECK_NAME, RAW_COLUMN, ragged_reason
from services.extractor.readers.base import rejected_batch
from tests.unit.transform.conftest import batch, transform


def quarantine(checks: dict[str, Any], ratio: float = 1.0) -> dict[str, Any]:
    return {"check": checks, "on_fail": "quarantine", "max_reject_ratio": ratio}


def test_each_check_marks_check_column_reason_and_line() -> None:
    t = transform(
        quarantine(
            {
                "not_null": ["id"],
                "unique": ["id"],
                "range": {"amount": [0, 100]},
                "regex": {"code": "[A-Z]{2}\\d"},
                "allowed_values": {"country": ["DE", "FR"]},
            }
        )
    )
    result = t.apply(
        batch(
            id=[1, None, 3, 3, 5, 6, 7],
            amount=[10.0, 5.0, 5.0, 5.0, 500.0, float("nan"), 1.0],
            code=["AB1", "AB1", "AB1", "AB1", "AB1", "ab1", None],
            country=["DE", "DE", "FR", "FR", "DE", "DE", "ES"],
        ),
        row_offset=0,
    )
    assert result.good is not None and result.good.to_pydict()["id"] == [1, 3]
    assert result.rejected is not None
    bad = result.rejected.to_pydict()
    assert bad["_sluice_line"] == [3, 5, 6, 7, 8]
    assert bad["_sluice_check"] == ["not_null", "unique", "range", "regex", "allowed_values"]
    assert bad["_sluice_column"] == ["id", "id", "amount", "code", "country"]
    assert bad["_sluice_reason"][2] == "amount is outside [0, 100]"
    assert bad["amount"][2] == "500.0"  # original values travel as text
    assert result.rejected.schema.field("_sluice_line").type == pa.int64()
    t.finish()


def test_drop_counts_rows_and_fail_stops_at_first_bad_row() -> None:
    dropped = transform({"check": {"not_null": ["a"]}, "on_fail": "drop", "max_reject_ratio": 1})
    result = dropped.apply(batch(a=[1, None, None]), 0)
    assert result.dropped == 2 and result.rejected is None
    failing = transform({"check": {"range": {"a": [None, 10]}}})
    with pytest.raises(CheckFailed) as info:
        failing.apply(batch(a=[1, 20, 30]), row_offset=5)
    assert info.value.context.line == 8 and info.value.context.column == "a"
    assert "check range failed: a is outside [-inf, 10] (value 20)" in info.value.full_message


def test_max_reject_ratio_is_over_the_whole_unit() -> None:
    t = transform(quarantine({"not_null": ["a"]}, ratio=0.25))
    t.apply(batch(a=[1, None, 3, 4]), 0)
    t.apply(batch(a=[1, 2, 3, 4]), 4)
    t.finish()  # 1 of 8
    t.apply(batch(a=[None, None]), 8)
    with pytest.raises(CheckFailed, match=r"3 of 10 rows \(30.00%\).*first: line 3"):
        t.finish()


def test_unique_ignores_nulls_and_spans_batches() -> None:
    t = transform(quarantine({"unique": ["k"]}))
    first = t.apply(batch(k=["a", None, None]), 0)
    second = t.apply(batch(k=["a", "b"]), 3)
    assert first.rejected is None
    assert second.rejected is not None and second.rejected.to_pydict()["_sluice_line"] == [5]


def test_row_count_bounds_the_unit() -> None:
    low = transform({"check": {"row_count": {"min": 3}}})
    low.apply(batch(a=[1, 2]), 0)
    with pytest.raises(CheckFailed, match="2 row\\(s\\), fewer than the minimum 3"):
        low.finish()
    high = transform({"check": {"row_count": {"max": 3}}})
    high.apply(batch(a=[1, 2]), 0)
    with pytest.raises(CheckFailed, match="more than the maximum 3"):
        high.apply(batch(a=[3, 4]), 2)
    empty = transform({"check": {"row_count": {"min": 1}}})
    empty.apply(pa.RecordBatch.from_pydict({"a": pa.array([], pa.int64())}), 0)
    with pytest.raises(CheckFailed, match="0 row"):
        empty.finish()


def test_schema_check_quarantines_values_of_the_wrong_type_and_types_the_rest() -> None:
    t = transform(quarantine({"schema": {"n": "int64", "day": "date"}}))
    result = t.apply(batch(n=["1", "x", "3"], day=["2026-01-01", "2026-01-02", "31.01.2026"]), 0)
    assert result.good is not None
    assert result.good.schema.field("n").type == pa.int64()
    assert result.good.to_pydict()["n"] == [1]
    assert result.rejected is not None
    bad = result.rejected.to_pydict()
    assert bad["n"] == ["x", "3"] and bad["_sluice_reason"] == [
        "n is not a valid int64",
        "day is not a valid date",
    ]


def test_check_on_unknown_column_is_a_clear_error() -> None:
    with pytest.raises(CheckFailed, match="unknown column 'nope'; columns are: a"):
        transform({"check": {"not_null": ["nope"]}}).apply(batch(a=[1]), 0)


def test_schema_check_keeps_big_integers_exact_next_to_bad_values() -> None:
    t = transform(quarantine({"schema": {"id": "int64", "small": "int8"}}))
    result = t.apply(
        batch(id=["9007199254740993", "x", "2.0", "2.5"], small=["1", "2", "300", "4"]), 0
    )
    assert result.good is not None and result.good.to_pydict() == {
        "id": [9007199254740993],  # 2**53 + 1: a float detour would change it
        "small": [1],
    }
    assert result.rejected is not None
    assert result.rejected.to_pydict()["_sluice_reason"] == [
        "id is not a valid int64",
        "small is not a valid int8",
        "id is not a valid int64",
    ]


def test_rejected_values_keep_their_python_text_for_every_type() -> None:
    t = transform(quarantine({"not_null": ["missing"]}))
    result = t.apply(
        batch(
            missing=pa.array([None, None, None], pa.string()),
            text=pa.array(["a b", None, "ü"], pa.large_string()),
            count=pa.array([-(2**62), None, 7], pa.int64()),
            small=pa.array([1, 2, None], pa.uint8()),
            ratio=[1.5, float("nan"), 1e16],
            flag=[True, None, False],
            day=pa.array([0, 19_000, None], pa.date32()),
        ),
        row_offset=0,
    )
    assert result.rejected is not None
    bad = result.rejected.to_pydict()
    assert bad["text"] == ["a b", None, "ü"]
    assert bad["count"] == [str(-(2**62)), None, "7"]
    assert bad["small"] == ["1", "2", None]
    assert bad["ratio"] == ["1.5", None, "1e+16"]
    assert bad["flag"] == ["True", None, "False"]
    assert bad["day"] == ["1970-01-01", "2022-01-08", None]
    assert all(
        result.rejected.schema.field(c).type == pa.string() for c in bad if c != "_sluice_line"
    )


def ragged(*lines: int) -> pa.RecordBatch:
    """Rows the extractor quarantined, made as its delimited reader makes them."""
    return rejected_batch(
        {RAW_COLUMN: pa.array(["1,a,2,extra"] * len(lines), pa.string())},
        lines=list(lines),
        check=CHECK_NAME,
        reasons=[ragged_reason(3, 4)] * len(lines),
    )


def test_ragged_lines_the_extractor_quarantined_count_towards_max_reject_ratio() -> None:
    t = transform(quarantine({"not_null": ["a"]}, ratio=0.25))
    t.apply(batch(a=[1, 2, 3, 4, 5, 6]), 0)
    aside = ragged(4, 9)
    t.set_aside(aside.num_rows, lambda: aside)
    t.finish()  # 2 of 8
    t.set_aside(1, lambda: ragged(11))
    with pytest.raises(
        CheckFailed,
        match=r"3 of 9 rows \(33.33%\).*first: line 4: expected 3 fields, found 4 \(too many\) "
        r"\(bad_row\)",
    ):
        t.finish()


def test_a_check_that_fails_on_bad_rows_ignores_ragged_lines_set_aside() -> None:
    t = transform({"check": {"not_null": ["a"]}})
    t.apply(batch(a=[1, 2]), 0)
    t.set_aside(3, lambda: ragged(2, 3, 4))
    t.finish()
