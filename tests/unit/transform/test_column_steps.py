"""Each built-in column step: the happy path and its edge cases (nulls, empty, unicode, DST)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pyarrow as pa
import pytest
from pydantic import ValidationError

from services.common.errors import BadInput, SchemaMismatch, SpecError
from services.transformer.errors import StepFailed
from tests.unit.transform.conftest import batch, run, steps, transform


def test_rename_select_drop_keep_order_and_lineage_out() -> None:
    out = run(
        {"rename": {"Store No": "store"}},
        {"select": ["b", "store"]},
        **{"Store No": [1, 2], "a": ["x", "y"], "b": [True, None]},
    )
    assert list(out) == ["b", "store"]
    assert out["store"] == [1, 2]
    assert run({"drop": ["a"]}, a=[1], b=[2]) == {"b": [2]}


def test_missing_column_names_the_step_and_the_columns() -> None:
    with pytest.raises(StepFailed) as info:
        run({"select": ["nope"]}, a=[1])
    assert "select: column(s) 'nope' not found; columns are: a" in info.value.full_message
    assert info.value.full_message.startswith("f.csv")


def test_cast_every_type_with_nulls_and_blanks() -> None:
    out = run(
        {
            "cast": {
                "i": "int32",
                "f": "float64",
                "d": "decimal(10,2)",
                "b": "bool",
                "day": "date",
                "ts": "timestamp",
                "s": "string",
            }
        },
        i=[" 1", None, ""],
        f=["1.5", "", None],
        d=["1.005", "2", None],
        b=["Ja", "no", None],
        day=["2026-01-31", None, ""],
        ts=["2026-01-31 10:00:00", None, "2026-02-01T00:00:00"],
        s=[1, None, 3],
    )
    assert out["i"] == [1, None, None]
    assert out["f"] == [1.5, None, None]
    assert out["d"] == [Decimal("1.01"), Decimal("2.00"), None]  # exact decimal rounding
    assert out["b"] == [True, False, None]
    assert out["day"] == [date(2026, 1, 31), None, None]
    assert out["ts"][2] == datetime(2026, 2, 1)
    assert out["s"] == ["1", None, "3"]


def test_cast_with_format_and_timezone_across_dst() -> None:
    out = run(
        {
            "cast": {
                "at": {
                    "type": "timestamp",
                    "format": "%d.%m.%Y %H:%M",
                    "timezone": "Europe/Berlin",
                }
            }
        },
        at=[
            "15.01.2026 12:00",  # winter, UTC+1
            "15.07.2026 12:00",  # summer, UTC+2
            "29.03.2026 02:30",  # does not exist (clocks jump 02:00 -> 03:00)
            "25.10.2026 02:30",  # happens twice (clocks go back 03:00 -> 02:00)
            None,
        ],
    )
    assert out["at"] == [
        datetime(2026, 1, 15, 11, 0, tzinfo=UTC),
        datetime(2026, 7, 15, 10, 0, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC),  # read as 03:30 summer time
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # the first 02:30 (summer time)
        None,
    ]


def test_cast_bad_value_names_file_line_column_and_value() -> None:
    with pytest.raises(BadInput) as info:
        transform({"cast": {"n": "int64"}}).apply(batch(n=["1", "2", "1.5"]), row_offset=10)
    assert info.value.context.line == 14
    assert info.value.context.column == "n"
    assert "'1.5'" in info.value.full_message
    with pytest.raises(BadInput, match=r"format '%d\.%m\.%Y'"):
        run({"cast": {"d": {"type": "date", "format": "%d.%m.%Y"}}}, d=["2026-01-01"])


def test_parse_european_numbers_and_several_date_formats() -> None:
    out = run(
        {
            "parse": {
                "amount": {"decimal": ",", "thousands": ".", "to": "decimal(12,2)"},
                "qty": {"thousands": " "},
                "day": {"formats": ["%d.%m.%Y", "%Y-%m-%d", "%m/%d/%Y"]},
            }
        },
        amount=["1.234.567,891", "-0,5", None],
        qty=["1 000", "2\u00a0500", ""],
        day=["31.12.2026", "2026-01-02", "03/04/2026"],
    )
    assert out["amount"] == [Decimal("1234567.89"), Decimal("-0.50"), None]
    assert out["qty"] == [1000.0, 2500.0, None]
    assert out["day"] == [date(2026, 12, 31), date(2026, 1, 2), date(2026, 3, 4)]
    with pytest.raises(BadInput, match="'12,5,0'"):
        run({"parse": {"a": {"decimal": ","}}}, a=["1,5", "12,5,0"])


def test_text_steps_handle_unicode_and_nulls() -> None:
    out = run(
        {"trim": ["name"]},
        {"upper": ["name"]},
        {"lower": ["city"]},
        {"replace": {"code": [{"pattern": "[^0-9]", "with": ""}, {"pattern": "^0+", "with": ""}]}},
        name=["  straße ", None, "\tÉcole"],
        city=["MÜNCHEN", "İstanbul", None],
        code=["AB-007", None, "x1y2"],
    )
    assert out["name"] == ["STRAẞE", None, "ÉCOLE"]  # Unicode upper-casing of ß
    assert out["city"][0] == "münchen" and out["city"][2] is None
    assert out["code"] == ["7", None, "12"]
    with pytest.raises(StepFailed, match="holds int64, not text"):
        run({"trim": ["n"]}, n=[1])


def test_fill_null_uses_the_column_type() -> None:
    out = run({"fill_null": {"n": 0, "s": "?", "d": "2026-01-01"}}, n=[None, 2], s=[None, "a"],
              d=pa.array([None, date(2026, 5, 1)], pa.date32()))  # fmt: skip
    assert out == {"n": [0, 2], "s": ["?", "a"], "d": [date(2026, 1, 1), date(2026, 5, 1)]}
    with pytest.raises(StepFailed, match="not a valid int64"):
        run({"fill_null": {"n": "x"}}, n=[None, 2])


def test_filter_and_derive_with_functions() -> None:
    transform_ = transform(
        {"filter": "amount > 0 and not isnull(name)"},
        {"derive": {"label": "upper(left(name, 2))", "gross": "amount * 1.2", "flag": "True"}},
    )
    result = transform_.apply(batch(amount=[5, -1, 3, None], name=["ab", "cd", None, "ef"]), 0)
    assert result.good is not None
    out = result.good.to_pydict()
    assert out["label"] == ["AB"] and out["gross"] == [6.0] and out["flag"] == [True]
    assert result.filtered == 3


def test_dedupe_within_the_unit_across_batches() -> None:
    t = transform({"dedupe": ["id"]})
    first = t.apply(batch(id=[1, 1, None, 2], v=["a", "b", "c", "d"]), 0)
    second = t.apply(batch(id=[2, 3, None], v=["e", "f", "g"]), 4)
    assert first.good is not None and second.good is not None
    assert first.good.to_pydict()["v"] == ["a", "c", "d"]
    assert second.good.to_pydict()["v"] == ["f"]  # the second null key is a duplicate too
    assert t.counts.filtered == 3
    whole_rows = transform({"dedupe": []}).apply(batch(a=[1, 1, 1], b=["x", "x", "y"]), 0)
    assert whole_rows.good is not None and whole_rows.good.num_rows == 2


def test_add_metadata_after_a_filter_keeps_source_positions() -> None:
    loaded = datetime(2026, 11, 1, 5, 0, tzinfo=UTC)
    from services.transformer.steps import UnitContext

    t = transform(
        {"filter": "v != 'skip'"},
        {"add_metadata": ["source_file", "row_number", "line", "run_id", "load_time"]},
        context=UnitContext(
            file="a.csv", unit="file:///in/a.csv", run_id="run-7", loaded_at=loaded
        ),
    )
    result = t.apply(batch(v=["a", "skip", "c"]), row_offset=100)
    assert result.good is not None
    out = result.good.to_pydict()
    assert out["source_row"] == [101, 103]
    assert out["source_line"] == [102, 104]  # one header line
    assert out["source_file"] == ["file:///in/a.csv"] * 2
    assert out["run_id"] == ["run-7"] * 2
    assert out["loaded_at"] == [loaded, loaded]


def test_extractor_line_numbers_win_and_never_leave_with_good_rows() -> None:
    t = transform({"filter": "v > 1"})
    result = t.apply(batch(v=[1, 2], _sluice_line=pa.array([7, 9], pa.int64())), row_offset=0)
    assert result.good is not None
    assert result.good.schema.names == ["v"]


def test_empty_batch_keeps_the_typed_schema() -> None:
    t = transform({"cast": {"n": "int32"}}, {"derive": {"m": "n * 2"}}, {"dedupe": ["n"]})
    result = t.apply(pa.RecordBatch.from_pydict({"n": pa.array([], pa.string())}), 0)
    assert result.good is not None and result.good.num_rows == 0
    assert result.good.schema.field("n").type == pa.int32()


def test_schema_contract_freeze_names_file_and_column() -> None:
    t = transform({"rename": {"A": "a"}}, columns={"a": "int64"}, schema_policy="freeze")
    with pytest.raises(SchemaMismatch) as info:
        t.apply(batch(A=["1"], extra=["x"]), 0)
    assert info.value.context.file == "f.csv" and info.value.context.column == "extra"
    assert "'extra' is not declared" in info.value.full_message


def test_schema_contract_evolve_adds_new_columns_and_types_declared_ones() -> None:
    t = transform({"rename": {"A": "a"}}, columns={"a": "int64", "b": "date"})
    result = t.apply(batch(A=["1", "2"], extra=["x", "y"]), 0)
    assert result.good is not None
    assert result.good.schema.names == ["a", "b", "extra"]
    assert result.good.schema.field("a").type == pa.int64()
    assert result.good.to_pydict()["b"] == [None, None]


def test_task_level_schema_policy_reaches_the_destination() -> None:
    from services.common.spec.loading import pipeline_from_text

    text = """\
name: p
tasks:
  - id: t
    source: {uri: "file:///x.csv"}
    columns: {a: int64, day: date}
    schema: freeze
    transform: [{select: [a, day]}]
    destination: {uri: "duckdb:///x", table: t}
"""
    task = pipeline_from_text(text, "p.yaml").tasks[0]
    assert task.destination.schema_policy == "freeze"  # type: ignore[union-attr]
    with pytest.raises(SpecError, match=r"line 3: .*columns of day.*daytime"):
        pipeline_from_text(text.replace("day: date", "day: daytime"), "p.yaml")
    with pytest.raises(SpecError, match="columns are enforced by the transformer"):
        pipeline_from_text(text.replace("transform: [{select: [a, day]}]", ""), "p.yaml")


@pytest.mark.parametrize(
    ("step", "fragment"),
    [
        ({"cast": {"a": "integer64"}}, "unknown type 'integer64'"),
        ({"cast": {"a": {"type": "int64", "format": "%d"}}}, "format only applies"),
        ({"cast": {"a": {"type": "timestamp", "timezone": "Mars/Base"}}}, "unknown IANA"),
        ({"parse": {"a": {"decimal": ",", "formats": ["%d"]}}}, "not both"),
        ({"replace": {"a": {"pattern": "(", "with": ""}}}, "invalid regular expression"),
        ({"python": "os.system('x')"}, "entry-point name"),
        ({"lookup": {"on": "a"}}, "exactly one of file or table"),
        ({"add_metadata": ["hostname"]}, "add_metadata"),
        ({"explode": ["a"]}, "unknown transform step"),
    ],
)
def test_step_typos_fail_validation(step: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        steps(step)
    assert fragment in str(info.value)


def test_rename_refuses_to_create_two_columns_with_one_name() -> None:
    with pytest.raises(StepFailed, match="more than one column would be called 'a'"):
        run({"rename": {"b": "a"}}, a=[1], b=[2])


@pytest.mark.parametrize("rows", [3, 0])
def test_rename_select_drop_chain_stays_arrow_and_matches_the_pandas_path(rows: int) -> None:
    chain = (
        {"rename": {"Store No": "store", "_sluice_line": "line"}},
        {"drop": ["gone"]},
        {"select": ["when", "store", "line", "amount"]},
    )
    values = {
        "Store No": pa.array([1, None, 3][:rows], pa.int64()),
        "gone": pa.array(["x", "y", "z"][:rows]),
        "amount": pa.array([Decimal("1.50"), None, Decimal("-2.25")][:rows], pa.decimal128(9, 2)),
        "when": pa.array(
            [datetime(2024, 3, 31, 1, 30, tzinfo=UTC), None, None][:rows], pa.timestamp("us", "UTC")
        ),
        "_sluice_line": pa.array([7, 9, 12][:rows], pa.int64()),
    }
    arrow, pandas = transform(*chain), transform(*chain)
    assert arrow._arrow_only
    pandas._arrow_only = False
    got = arrow.apply(batch(**values), row_offset=0)
    expected = pandas.apply(batch(**values), row_offset=0)
    assert got.good is not None and expected.good is not None
    assert got.good.schema.names == ["when", "store", "line", "amount"]
    assert got.good.equals(expected.good) and got.good.schema.equals(expected.good.schema)
    assert (got.rejected, got.filtered, got.dropped) == (None, 0, 0)
    assert arrow.counts == pandas.counts
