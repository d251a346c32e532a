"""Custom python steps from an installed package, and lookups against reference tables."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from services.transformer.errors import StepFailed
from services.transformer.steps import UnitContext
from tests.unit.transform.conftest import batch, run, transform


@pytest.mark.usefixtures("step_package")
def test_custom_step_from_an_entry_point_keeps_lineage_and_args() -> None:
    t = transform(
        {"python": "clean_names", "args": {"suffix": "!"}},
        {"check": {"not_null": ["v"]}, "on_fail": "quarantine", "max_reject_ratio": 1},
    )
    result = t.apply(batch(name=["ann lee", None, "bo"], v=[1, 2, None]), row_offset=0)
    assert result.good is not None and result.good.to_pydict() == {"name": ["Ann Lee!"], "v": [1]}
    assert result.rejected is not None
    assert result.rejected.to_pydict()["_sluice_line"] == [4]  # line survived the custom step
    assert result.filtered == 1
    by_value = run({"python": "acme_steps:clean_names"}, name=["x"])
    assert by_value == {"name": ["X"]}


@pytest.mark.usefixtures("step_package")
@pytest.mark.parametrize(
    ("ref", "fragment"),
    [
        ("explode", "failed on unit file:///d/f.csv: ValueError: bad things happened in user code"),
        ("not_a_frame", "returned list, not a pandas DataFrame"),
        ("loses_index", "changed the DataFrame's index"),
        ("nobody.home:fn", "is not registered in the entry-point group 'sluice.steps'"),
        ("os:system", "is not registered"),  # only registered functions can run
    ],
)
def test_custom_step_errors_name_the_step_and_unit(ref: str, fragment: str) -> None:
    with pytest.raises(StepFailed) as info:
        transform({"rename": {"a": "name"}}, {"python": ref}).apply(batch(a=["x", "y"]), 100)
    message = info.value.full_message
    assert f"step 2 (python: {ref})" in message
    assert fragment in message
    assert info.value.context.unit == "file:///d/f.csv"


@pytest.mark.usefixtures("step_package")
def test_a_column_arrow_cannot_carry_fails_the_unit_cleanly() -> None:
    with pytest.raises(StepFailed, match="the transformed rows cannot be sent on"):
        transform({"python": "mixed_types"}).apply(batch(a=["x", "y"]), 0)


def test_null_keys_never_match_a_null_reference_key(tmp_path: Path) -> None:
    ref = tmp_path / "ref.csv"
    ref.write_text("k,v\n,null-key\n1,one\n")
    out = run({"lookup": {"file": str(ref), "on": "k"}}, k=pa.array([None, 1], pa.int64()))
    assert out == {"k": [None, 1], "v": [None, "one"]}


def test_lookup_from_csv_is_read_once_per_unit(tmp_path: Path) -> None:
    ref = tmp_path / "stores.csv"
    ref.write_text("store_id;store_name;region\n1;Köln;West\n2;Berlin;Ost\n")
    t = transform(
        {
            "lookup": {
                "file": f"file://{ref}",
                "delimiter": ";",
                "on": "store_id",
                "columns": {"store_name": "store"},
            }
        }
    )
    first = t.apply(batch(store_id=[2, 1, 9, None]), 0)
    ref.write_text("store_id;store_name;region\n1;changed;West\n")  # same unit: cached
    second = t.apply(batch(store_id=[1]), 4)
    assert first.good is not None and second.good is not None
    assert first.good.to_pydict()["store"] == ["Berlin", "Köln", None, None]
    assert second.good.to_pydict()["store"] == ["Köln"]


def test_lookup_from_xlsx_with_text_keys_and_required_match(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "codes"
    for row in (["code", "label"], ["A", "Alpha"], ["B", "Beta"]):
        sheet.append(row)
    path = tmp_path / "codes.xlsx"
    book.save(path)
    spec = {"file": str(path), "sheet": "codes", "on": {"c": "code"}, "required": True}
    assert run({"lookup": spec}, c=["B", "A"]) == {"c": ["B", "A"], "label": ["Beta", "Alpha"]}
    with pytest.raises(StepFailed, match=r"no row in .*codes.xlsx for \{'c': 'Z'\}"):
        transform({"lookup": spec}).apply(batch(c=["A", "Z"]), 0)


def test_lookup_from_a_destination_table_and_its_errors(tmp_path: Path) -> None:
    db = tmp_path / "dw.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE fx AS FROM (VALUES ('EUR', 1.0), ('USD', 0.9)) t(cur, rate)")
        con.execute("CREATE TABLE dup AS SELECT * FROM (VALUES ('EUR', 1), ('EUR', 2)) t(cur, n)")
    ctx = UnitContext(file="f.csv", unit="u", destination_uri=f"duckdb:///{db}")
    t = transform({"lookup": {"table": "fx", "on": "cur"}}, context=ctx)
    result = t.apply(batch(cur=["USD", "GBP"]), 0)
    assert result.good is not None
    assert [float(r) if r is not None else None for r in result.good.to_pydict()["rate"]] == [
        0.9,
        None,
    ]
    with pytest.raises(StepFailed, match="reference key \\['EUR'\\] appears 2 times"):
        transform({"lookup": {"table": "dup", "on": "cur"}}, context=ctx).apply(batch(cur=["x"]), 0)
    (tmp_path / "r.csv").write_text("a,b\n1,2\n")
    with pytest.raises(StepFailed, match="reference has no column\\(s\\) 'cur'"):
        transform({"lookup": {"file": str(tmp_path / "r.csv"), "on": "cur"}}).apply(
            batch(cur=["x"]), 0
        )
    with pytest.raises(StepFailed, match="is int64 in the data but string"):
        transform({"lookup": {"table": "fx", "on": "cur"}}, context=ctx).apply(
            pa.RecordBatch.from_pydict({"cur": pa.array([1], pa.int64())}), 0
        )
