"""End to end: ragged csv lines with ``on_bad_row: quarantine`` through the four services.

PostgreSQL and MariaDB get them through the transformer (tasks with a check that quarantines
too, so one ``__rejected`` table holds both shapes); DuckDB straight from the extractor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from tests.conftest import my_query, pg_query, trigger, wait_for_run, write_pipeline

CSV = """\
id,name,amount
1,alpha,1.5
2,beta,2.5,surplus
3,gamma,3.5
4,delta
5,,5.5
6,zeta,6.5
"""

CHECKED = """\
    transform:
      - check: {{not_null: [name]}}
        on_fail: quarantine
        max_reject_ratio: {ratio}
"""


def ragged_task(
    task_id: str, data: Path, uri: str, table: str, *, max_reject_ratio: float | None
) -> str:
    """A task reading the ragged csv with ``on_bad_row: quarantine`` into ``table`` at ``uri``;
    a ``max_reject_ratio`` adds a not_null check on name that quarantines too, bounded by it."""
    return (
        f"  - id: {task_id}\n"
        "    source:\n"
        f"      uri: file://{data}/sales.csv\n"
        "      options: {on_bad_row: quarantine}\n"
        + ("" if max_reject_ratio is None else CHECKED.format(ratio=max_reject_ratio))
        + f"    destination:\n      uri: {uri}\n      table: {table}\n"
    )


BAD_ROWS = [
    (3, "2,beta,2.5,surplus", "expected 3 fields, found 4 (too many)"),
    (5, "4,delta", "expected 3 fields, found 2 (too few)"),
]


def ragged_data(tmp_path: Path) -> Path:
    """A data folder holding ``sales.csv`` (CSV)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "sales.csv").write_text(CSV)
    return data


def test_ragged_lines_are_quarantined_in_postgres_and_duckdb(
    stack_factory: Any,
    tmp_path: Path,
    pg_dsn: str,
    pg_schema: str,
    pg_url: str,
    mysql_db: str,
    mysql_url: str,
) -> None:
    data = ragged_data(tmp_path)
    duck = tmp_path / "out.duckdb"
    pipelines = tmp_path / "pipelines"
    tasks = [
        ragged_task("to_pg", data, pg_url, f"{pg_schema}.sales", max_reject_ratio=0.9),
        ragged_task("to_maria", data, mysql_url, "sales", max_reject_ratio=0.9),
        ragged_task("to_duck", data, f"duckdb:///{duck}", "sales", max_reject_ratio=None),
        ragged_task(
            "to_duck_checked",
            data,
            f"duckdb:///{tmp_path / 'checked.duckdb'}",
            "sales",
            max_reject_ratio=0.9,
        ),
    ]
    write_pipeline(pipelines, "name: ragged\ntasks:\n" + "".join(tasks), "r.yaml")
    stack = stack_factory(pipelines)

    run = wait_for_run(stack.url, trigger(stack.url, "ragged"))
    assert run["status"] == "succeeded", run["tasks"]
    units = {task["task_id"]: task["units"][0] for task in run["tasks"]}
    assert units["to_pg"]["rows_loaded"] == 3  # the row without a name fails the check
    assert units["to_pg"]["rows_rejected"] == 3
    assert units["to_maria"]["rows_rejected"] == 3
    assert units["to_duck"]["rows_loaded"] == 4
    assert units["to_duck"]["rows_rejected"] == 2

    table = f'"{pg_schema}"."sales"'
    assert pg_query(pg_dsn, f"SELECT id FROM {table} ORDER BY id") == [(1,), (3,), (6,)]
    rejected = pg_query(
        pg_dsn,
        f'SELECT _sluice_line, raw, _sluice_reason FROM "{pg_schema}"."sales__rejected" '
        "WHERE _sluice_check = 'bad_row' ORDER BY _sluice_line",
    )
    assert rejected == BAD_ROWS
    failed_check = pg_query(
        pg_dsn,
        f'SELECT _sluice_line, id, raw FROM "{pg_schema}"."sales__rejected" '
        "WHERE _sluice_check <> 'bad_row'",
    )
    assert failed_check == [(6, "5", None)]  # the line after two ragged ones is still exact

    assert my_query(mysql_db, "SELECT id FROM sales ORDER BY id") == [(1,), (3,), (6,)]
    maria_rejected = my_query(
        mysql_db,
        "SELECT _sluice_line, raw, _sluice_reason, id FROM sales__rejected ORDER BY _sluice_line",
    )
    assert [tuple(row) for row in maria_rejected] == [
        *((line, raw, reason, None) for line, raw, reason in BAD_ROWS),
        (6, None, "name is null", "5"),
    ]

    with duckdb.connect(str(duck), read_only=True) as con:
        assert con.execute("SELECT id FROM sales ORDER BY id").fetchall() == [
            (1,),
            (3,),
            (5,),
            (6,),
        ]
        got = con.execute(
            "SELECT _sluice_line, raw, _sluice_reason, _sluice_check, _sluice_column "
            "FROM sales__rejected ORDER BY _sluice_line"
        ).fetchall()
    assert got == [(line, raw, reason, "bad_row", None) for line, raw, reason in BAD_ROWS]
    with duckdb.connect(str(tmp_path / "checked.duckdb"), read_only=True) as con:
        got = con.execute(
            "SELECT _sluice_line, raw, _sluice_check, id FROM sales__rejected ORDER BY _sluice_line"
        ).fetchall()
    assert got == [
        (3, BAD_ROWS[0][1], "bad_row", None),
        (5, BAD_ROWS[1][1], "bad_row", None),
        (6, None, "not_null", "5"),
    ]


def test_ragged_lines_count_towards_the_checks_reject_ratio(
    stack_factory: Any, tmp_path: Path
) -> None:
    """Two ragged lines and one row failing the check are 3 of 6: over a 40% bound, although
    the check alone rejects only 1 of 4."""
    data = ragged_data(tmp_path)
    duck = tmp_path / "strict.duckdb"
    task = ragged_task("strict", data, f"duckdb:///{duck}", "sales", max_reject_ratio=0.4)
    pipelines = tmp_path / "pipelines"
    write_pipeline(pipelines, "name: strict\ntasks:\n" + task, "strict.yaml")
    stack = stack_factory(pipelines)

    run = wait_for_run(stack.url, trigger(stack.url, "strict"))
    assert run["status"] == "failed"
    unit = run["tasks"][0]["units"][0]
    assert "3 of 6 rows (50.00%) failed checks, more than max_reject_ratio 40.00%" in unit["error"]
    assert "first: line 6: name is null (not_null)" in unit["error"]
    if duck.exists():  # nothing of the failed unit is committed
        with duckdb.connect(str(duck), read_only=True) as con:
            tables = {row[0] for row in con.execute("SHOW TABLES").fetchall()}
            for table in tables & {"sales", "sales__rejected"}:
                assert con.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
