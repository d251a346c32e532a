"""The four services as real processes: files -> extractor -> transformer -> loader -> databases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from tests.conftest import pg_query, trigger, wait_for_run, write_pipeline


def make_csvs(directory: Path, files: int = 3, rows: int = 500) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    total = 0
    for f in range(files):
        lines = ["Receipt;Store No;Amt;Sold At"]
        for r in range(rows):
            amount = -1 if r % 50 == 0 else r + 0.25  # every 50th row is filtered out
            lines.append(f"R{f}-{r};{r % 7};{amount};2026-11-0{f + 1} 10:{r % 60:02d}:00")
            total += amount > 0
        (directory / f"sales_{f}.csv").write_text("\n".join(lines) + "\n")
    return total


PIPELINE = """\
name: {name}
tasks:
  - id: sales
    source:
      uri: file://{data}/*.csv
      format: csv
      options: {{delimiter: ";"}}
    transform:
      - rename: {{Receipt: receipt_id, "Store No": store_id, Amt: amount, "Sold At": sold_at}}
      - cast: {{store_id: int64, amount: "decimal(12,2)", sold_at: timestamp}}
      - filter: "amount > 0"
    destination:
      uri: {uri}
      table: {table}
"""


@pytest.fixture
def two_pipelines(tmp_path: Path, pg_dsn: str, pg_schema: str) -> dict[str, Any]:
    data = tmp_path / "data"
    expected = make_csvs(data)
    pipelines = tmp_path / "pipelines"
    duck = tmp_path / "out.duckdb"
    write_pipeline(
        pipelines,
        PIPELINE.format(name="to_pg", data=data, uri=pg_dsn, table=f"{pg_schema}.sales"),
        "pg.yaml",
    )
    write_pipeline(
        pipelines,
        PIPELINE.format(name="to_duck", data=data, uri=f"duckdb:///{duck}", table="sales"),
        "duck.yaml",
    )
    return {"dir": pipelines, "expected": expected, "duck": duck, "schema": pg_schema}


def test_runs_load_once_into_postgres_and_duckdb(
    stack_factory: Any, two_pipelines: dict[str, Any], pg_dsn: str
) -> None:
    stack = stack_factory(two_pipelines["dir"])
    expected = two_pipelines["expected"]
    table = f'"{two_pipelines["schema"]}"."sales"'

    runs = [trigger(stack.url, "to_pg"), trigger(stack.url, "to_duck")]
    for run_id in runs:
        run = wait_for_run(stack.url, run_id)
        assert run["status"] == "succeeded", run["tasks"]
        units = run["tasks"][0]["units"]
        assert [u["status"] for u in units] == ["succeeded"] * 3
        assert sum(u["rows_loaded"] for u in units) == expected
        assert run["totals"]["rows_loaded"] == expected

    assert pg_query(pg_dsn, f"SELECT count(*), count(DISTINCT receipt_id) FROM {table}") == [
        (expected, expected)
    ]
    types = dict(
        pg_query(
            pg_dsn,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'sales'",
            (two_pipelines["schema"],),
        )
    )
    assert types == {
        "receipt_id": "text",
        "store_id": "bigint",
        "amount": "numeric",
        "sold_at": "timestamp without time zone",
    }
    with duckdb.connect(str(two_pipelines["duck"]), read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT receipt_id) FROM sales").fetchone() == (
            expected,
            expected,
        )

    # Second trigger: the ledger already has every unit, nothing is written twice.
    for name in ("to_pg", "to_duck"):
        run = wait_for_run(stack.url, trigger(stack.url, name))
        assert run["status"] == "succeeded"
        assert [u["status"] for u in run["tasks"][0]["units"]] == ["skipped"] * 3
        assert run["totals"]["rows_loaded"] == 0
    assert pg_query(pg_dsn, f"SELECT count(*) FROM {table}") == [(expected,)]
    with duckdb.connect(str(two_pipelines["duck"]), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM sales").fetchone() == (expected,)
    ledger = pg_query(
        pg_dsn,
        "SELECT count(*) FROM _sluice_ledger WHERE pipeline = 'to_pg' AND unit_key LIKE %s",
        (f"{two_pipelines['dir'].parent}%",),
    )
    assert ledger == [(3,)]


def test_errors_name_file_and_line(stack_factory: Any, tmp_path: Path, pg_dsn: str) -> None:
    data = tmp_path / "bad"
    data.mkdir()
    (data / "ragged.csv").write_text("a,b,c\n1,2,3\n4,5,6\n7,8,9,10\n11,12,13\n")
    pipelines = tmp_path / "pipelines"
    write_pipeline(
        pipelines,
        f"""\
name: ragged
tasks:
  - id: load
    source: {{uri: "file://{data}/ragged.csv"}}
    destination: {{uri: "duckdb:///{tmp_path}/x.duckdb", table: t}}
""",
        "ragged.yaml",
    )
    write_pipeline(
        pipelines, "name: broken\ntasks:\n  - id: a\n    source: {uri: 'ftp://x'}\n", "broken.yaml"
    )
    stack = stack_factory(pipelines)

    run = wait_for_run(stack.url, trigger(stack.url, "ragged"))
    assert run["status"] == "failed"
    unit = run["tasks"][0]["units"][0]
    assert unit["status"] == "failed"
    assert f"{data}/ragged.csv, line 4: expected 3 fields, found 4" in unit["error"]
    assert "line 4" in run["tasks"][0]["error"]
    assert run["tasks"][0]["attempts"] == 1  # bad input is terminal: not retried

    missing = httpx.post(f"{stack.url}/api/v1/pipelines/nope/runs", json={})
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["code"] == "pipeline_not_found"

    unknown_run = httpx.get(f"{stack.url}/api/v1/runs/does-not-exist")
    assert unknown_run.status_code == 404
    assert unknown_run.json()["code"] == "run_not_found"

    listing = httpx.get(f"{stack.url}/api/v1/pipelines").json()
    invalid = listing["invalid_files"]
    assert list(invalid) == [str(pipelines / "broken.yaml")]
    assert "line 4" in next(iter(invalid.values()))
    assert [p["name"] for p in listing["pipelines"]] == ["ragged"]

    # The services survived the bad input.
    assert httpx.get(f"{stack.url}/readyz").status_code == 200
