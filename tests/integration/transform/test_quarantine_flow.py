"""Through the real stack: 3 bad rows of 10,000 go to <table>__rejected with their lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from tests.conftest import pg_query, trigger, wait_for_run, write_pipeline

ROWS = 10_000
# Data row i sits on physical line i + 2 (line 1 is the header).
BAD = {100: "not_null", 5000: "range", 9000: "regex"}

PIPELINE = """\
name: {name}
tasks:
  - id: sales
    source:
      uri: file://{data}/sales.csv
      format: csv
      options: {{delimiter: ";"}}
    transform:
      - rename: {{Receipt: receipt_id, "Store No": store_id, Amt: amount, Code: code,
                  "Sold At": sold_at}}
      - trim: [code]
      - parse: {{amount: {{decimal: ",", thousands: ".", to: "decimal(12,2)"}}}}
      - cast: {{store_id: int64, sold_at: {{type: timestamp, format: "%d.%m.%Y %H:%M",
                                             timezone: Europe/Berlin}}}}
      - check:
          not_null: [store_id]
          range: {{amount: [0, 100000]}}
          regex: {{code: "[A-Z]{{2}}\\\\d{{2}}"}}
          unique: [receipt_id]
        on_fail: quarantine
        max_reject_ratio: 0.01
      - add_metadata: {{line: source_line}}
    destination:
      uri: {uri}
      table: {table}
"""


def make_csv(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["Receipt;Store No;Amt;Code;Sold At"]
    for i in range(ROWS):
        store = "" if i == 100 else str(i % 7)
        amount = "999.999,00" if i == 5000 else f"1.{i % 1000:03d},{i % 100:02d}"
        code = "??" if i == 9000 else f" DE{i % 100:02d} "
        lines.append(f"R{i};{store};{amount};{code};29.03.2026 0{i % 4}:15")
    (directory / "sales.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_pipeline(stack_factory: Any, tmp_path: Path, uri: str, table: str) -> None:
    data = tmp_path / "data"
    make_csv(data)
    pipelines = tmp_path / "pipelines"
    write_pipeline(
        pipelines, PIPELINE.format(name="sales", data=data, uri=uri, table=table), "sales.yaml"
    )
    stack = stack_factory(pipelines)
    run = wait_for_run(stack.url, trigger(stack.url, "sales"), timeout=240)
    assert run["status"] == "succeeded", run["tasks"][0].get("error")
    unit = run["tasks"][0]["units"][0]
    assert unit["rows_loaded"] == ROWS - len(BAD)
    assert unit["rows_rejected"] == len(BAD)


def test_quarantine_into_duckdb(stack_factory: Any, tmp_path: Path) -> None:
    duck = tmp_path / "out.duckdb"
    run_pipeline(stack_factory, tmp_path, f"duckdb:///{duck}", "sales")
    with duckdb.connect(str(duck), read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT receipt_id) FROM sales").fetchone() == (
            ROWS - len(BAD),
            ROWS - len(BAD),
        )
        rejected = con.execute(
            "SELECT _sluice_line, _sluice_check, _sluice_column, receipt_id "
            "FROM sales__rejected ORDER BY _sluice_line"
        ).fetchall()
        types = dict(
            con.execute("SELECT column_name, column_type FROM (DESCRIBE sales)").fetchall()
        )
        first = con.execute(
            "SELECT amount, (sold_at AT TIME ZONE 'UTC')::VARCHAR, source_line FROM sales "
            "WHERE receipt_id = 'R1'"
        ).fetchone()
    assert [r[0] for r in rejected] == sorted(i + 2 for i in BAD)
    assert [(r[1], r[3]) for r in rejected] == [(BAD[i], f"R{i}") for i in sorted(BAD)]
    assert [r[2] for r in rejected] == ["store_id", "amount", "code"]
    assert not [c for c in types if c.startswith("_sluice")]
    assert types["amount"] == "DECIMAL(12,2)"
    assert first is not None
    assert str(first[0]) == "1001.01"
    assert types["sold_at"] == "TIMESTAMP WITH TIME ZONE"
    assert first[1] == "2026-03-29 00:15:00"  # 01:15 in Berlin, still winter time
    assert first[2] == 3  # the line travels as a column only when asked for


def test_quarantine_into_postgres(
    stack_factory: Any, tmp_path: Path, pg_dsn: str, pg_schema: str
) -> None:
    run_pipeline(stack_factory, tmp_path, pg_dsn, f"{pg_schema}.sales")
    table = f'"{pg_schema}"."sales"'
    assert pg_query(pg_dsn, f"SELECT count(*) FROM {table}") == [(ROWS - len(BAD),)]
    rejected = pg_query(
        pg_dsn,
        f'SELECT _sluice_line, _sluice_check FROM "{pg_schema}"."sales__rejected" '
        "ORDER BY _sluice_line",
    )
    assert rejected == [(i + 2, BAD[i]) for i in sorted(BAD)]
    # 03:15 on 29 March 2026 in Berlin is summer time: 01:15 UTC.
    instant = pg_query(
        pg_dsn, f"SELECT sold_at AT TIME ZONE 'UTC' FROM {table} WHERE receipt_id = 'R3'"
    )
    assert str(instant[0][0]) == "2026-03-29 01:15:00"
