from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pytest

from services.common.errors import BadInput, CheckFailed, SpecError
from services.common.spec.expr import parse_expression
from services.transformer.steps import UnitTransform
from tests.unit.transform.conftest import steps


def batch(**cols: list[object]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(cols)


def test_rename_cast_filter_derive() -> None:
    transform = UnitTransform(
        steps(
            {"rename": {"Amt": "amount", "Store No": "store"}},
            {"cast": {"store": "int64", "amount": "decimal(12,2)", "day": "date"}},
            {"filter": "amount > 0"},
            {"derive": {"double": "amount * 2"}},
        ),
        file="f.csv",
        header_lines=1,
    )
    result = transform.apply(
        batch(
            **{
                "Store No": ["1", "2", "3"],
                "Amt": ["1.5", "-2", "3.25"],
                "day": ["2026-01-01", "2026-01-02", "2026-01-03"],
            }
        ),
        row_offset=0,
    )
    assert result.good is not None
    data = result.good.to_pydict()
    assert data["store"] == [1, 3]
    assert data["amount"] == [Decimal("1.50"), Decimal("3.25")]
    assert result.good.schema.field("store").type == pa.int64()
    assert result.filtered == 1
    assert "_sluice_line" not in data


def test_cast_error_names_line_and_column() -> None:
    transform = UnitTransform(steps({"cast": {"n": "int64"}}), file="f.csv", header_lines=1)
    with pytest.raises(BadInput) as info:
        transform.apply(batch(n=["1", "2", "x"]), row_offset=10)
    assert info.value.context.line == 14  # header line + 10 earlier rows + third row
    assert info.value.context.column == "n"
    assert "'x'" in info.value.full_message


def test_quarantine_keeps_line_and_reason() -> None:
    transform = UnitTransform(
        steps(
            {
                "check": {"not_null": ["id"], "range": {"v": [0, 10]}},
                "on_fail": "quarantine",
                "max_reject_ratio": 0.5,
            }
        ),
        file="f.csv",
        header_lines=1,
    )
    result = transform.apply(batch(id=[1, None, 3, 4], v=[1, 2, 30, 4]), row_offset=0)
    assert result.good is not None and result.good.num_rows == 2
    assert result.rejected is not None
    rejected = result.rejected.to_pydict()
    assert rejected["_sluice_line"] == [3, 4]
    assert rejected["_sluice_check"] == ["not_null", "range"]
    transform.finish()


def test_reject_ratio_exceeded_fails_unit() -> None:
    transform = UnitTransform(
        steps({"check": {"not_null": ["id"]}, "on_fail": "quarantine", "max_reject_ratio": 0.1}),
        file="f.csv",
        header_lines=1,
    )
    transform.apply(batch(id=[None, None, 3]), row_offset=0)
    with pytest.raises(CheckFailed, match="max_reject_ratio"):
        transform.finish()


def test_unique_spans_batches() -> None:
    transform = UnitTransform(
        steps({"check": {"unique": ["id"]}, "on_fail": "drop", "max_reject_ratio": 1}),
        file="f.csv",
        header_lines=1,
    )
    first = transform.apply(batch(id=[1, 2]), row_offset=0)
    second = transform.apply(batch(id=[2, 3, 3]), row_offset=2)
    assert first.good is not None and second.good is not None
    assert second.good.to_pydict()["id"] == [3]
    assert second.dropped == 2


@pytest.mark.parametrize(
    "source",
    [
        "__import__('os').system('id')",
        "a.__class__",
        "open('/etc/passwd')",
        "[x for x in a]",
        "lambda: 1",
        "a[0]",
    ],
)
def test_unsafe_expressions_are_rejected(source: str) -> None:
    with pytest.raises(SpecError, match="invalid expression"):
        parse_expression(source)
