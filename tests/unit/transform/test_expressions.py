"""The safe expression language: what it computes, and what it refuses before any data flows."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pyarrow as pa
import pytest

from services.common.errors import SpecError
from services.common.spec.expr import parse_expression
from services.common.spec.loading import pipeline_from_text


def frame() -> pd.DataFrame:
    table = pa.table(
        {
            "name": [" Zoë ", None, "bob"],
            "amount": [10.5, -2.0, None],
            "day": pa.array([date(2026, 3, 29), date(2026, 12, 31), None], pa.date32()),
            "code": ["DE-01", "FR-22", "xx"],
        }
    )
    return table.to_pandas(types_mapper=pd.ArrowDtype)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("upper(strip(name))", ["ZOË", None, "BOB"]),
        ("length(name)", [5, None, 3]),
        ("substr(code, 4, 2)", ["01", "22", ""]),
        ("replace(code, '[0-9]', '#')", ["DE-##", "FR-##", "xx"]),
        ("concat(left(code, 2), '/', right(code, 2))", ["DE/01", "FR/22", "xx/xx"]),
        ("coalesce(amount, 0) * 2", [21.0, -4.0, 0.0]),
        ("round(abs(amount))", [10.0, 2.0, None]),
        ("year(day) * 100 + month(day)", [202603, 202612, None]),
        ("weekday(day)", [6, 3, None]),
        ("days_between(day, to_date('2027-01-01'))", [278, 1, None]),
        ("'neg' if amount < 0 else 'pos'", ["pos", "neg", "pos"]),
        ("code in ['DE-01', 'xx'] and not isnull(name)", [True, False, True]),
        (r"matches(code, '[A-Z]{2}-\d+')", [True, True, False]),
        ("col('amount') >= 0 or startswith(code, 'F')", [True, True, False]),
    ],
)
def test_functions_are_vectorised_and_null_aware(source: str, expected: list[object]) -> None:
    result = parse_expression(source).evaluate(frame())
    assert [None if pd.isna(v) else v for v in result.tolist()] == expected


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("__import__('os').system('id')", "only plain function calls are allowed"),
        ("__import__('os')", "unknown function '__import__'"),
        ("amount.__class__", "attribute access"),
        ("open('/etc/passwd')", "unknown function 'open'"),
        ("eval('1')", "unknown function 'eval'"),
        ("[x for x in name]", "ListComp is not allowed"),
        ("(lambda: 1)()", "only plain function calls"),
        ("name[0]", "Subscript is not allowed"),
        ("amount ** 99999999", "Pow is not allowed"),
        ("'a' * 1000000000", "repeating a string"),
        ("upper(s=name)", "keyword arguments"),
        ("amount >", "invalid expression"),
        ("a" + " + a" * 1000, "longer than 2000 characters"),
    ],
)
def test_unsafe_or_broken_input_is_refused(source: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_expression(source)
    assert fragment in info.value.message


def test_yaml_with_an_escape_attempt_fails_validation_with_file_and_line() -> None:
    text = """\
name: p
tasks:
  - id: t
    source: {uri: "file:///x.csv"}
    transform:
      - derive: {x: "__import__('os').system('rm -rf /')"}
    destination: {uri: "duckdb:///x", table: t}
"""
    with pytest.raises(SpecError) as info:
        pipeline_from_text(text, "evil.yaml")
    message = info.value.full_message
    assert message.startswith("evil.yaml: line 6:")
    assert "only plain function calls are allowed" in message


def test_unknown_column_names_the_columns() -> None:
    with pytest.raises(SpecError, match="unknown column 'amout'; columns are: name, amount"):
        parse_expression("amout > 1").evaluate(frame())
