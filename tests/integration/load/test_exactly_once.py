"""Exactly once, proved with real processes: SIGKILL the loader in the middle of a unit.

No partial rows may be visible after the kill; the orchestrator's task retry loads the unit once
after the loader is restarted; later triggers load nothing.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import (
    my_query,
    pg_copies,
    pg_query,
    trigger,
    wait_for,
    wait_for_run,
    write_pipeline,
)

ROWS = 400_000

PIPELINE = """\
name: kill
retries: 6
retry_delay_seconds: 1
tasks:
  - id: big
    source:
      uri: file://{data}/big.csv
      format: csv
    destination:
      uri: {uri}
      table: {table}
"""


def make_csv(path: Path, rows: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        out.write("id,store,amount,note,day\n")
        for i in range(rows):
            out.write(f"{i},{i % 97},{i * 0.25:.2f},note number {i},2026-11-{i % 28 + 1:02d}\n")


def kill_mid_unit(
    tmp_path: Path,
    stack_factory: Any,
    uri: str,
    table: str,
    loading: Callable[[], bool],
    visible_rows: Callable[[], int],
    ledger_rows: Callable[[], int],
) -> None:
    make_csv(tmp_path / "data" / "big.csv", ROWS)
    pipelines = tmp_path / "pipelines"
    write_pipeline(pipelines, PIPELINE.format(data=tmp_path / "data", uri=uri, table=table))
    stack = stack_factory(pipelines)

    run_id = trigger(stack.url, "kill")
    wait_for(loading, 120, "the loader to be in the middle of the unit", poll=0.01)
    stack.stop_service("loader", signal.SIGKILL)
    assert visible_rows() == 0, "rows of a killed unit are visible"
    assert ledger_rows() == 0

    stack.start_service("loader")
    stack.wait_healthy(90)
    run = wait_for_run(stack.url, run_id, timeout=240)
    assert run["status"] == "succeeded", run
    assert visible_rows() == ROWS
    assert ledger_rows() == 1

    for _ in range(2):
        again = wait_for_run(stack.url, trigger(stack.url, "kill"), timeout=120)
        assert again["status"] == "succeeded", again
        assert again["totals"]["rows_loaded"] == 0
        assert visible_rows() == ROWS
    assert ledger_rows() == 1


def test_postgres_sigkill_mid_unit_loads_exactly_once(
    tmp_path: Path, stack_factory: Any, pg_dsn: str, pg_schema: str, pg_url: str
) -> None:
    def loading() -> bool:
        return pg_copies(pg_dsn, pg_schema, "state = 'active'") > 0

    def visible_rows() -> int:
        exists = pg_query(pg_dsn, "SELECT to_regclass(%s)", (f'"{pg_schema}"."big"',))[0][0]
        if exists is None:
            return 0
        return int(pg_query(pg_dsn, f'SELECT count(DISTINCT id) FROM "{pg_schema}"."big"')[0][0])

    def ledger_rows() -> int:
        sql = f'SELECT count(*) FROM "{pg_schema}"."_sluice_ledger" WHERE task = %s'
        exists = pg_query(pg_dsn, "SELECT to_regclass(%s)", (f'"{pg_schema}"._sluice_ledger',))
        return int(pg_query(pg_dsn, sql, ("big",))[0][0]) if exists[0][0] else 0

    kill_mid_unit(tmp_path, stack_factory, pg_url, "big", loading, visible_rows, ledger_rows)


def test_mariadb_sigkill_mid_unit_loads_exactly_once(
    tmp_path: Path, stack_factory: Any, mysql_db: str, mysql_url: str
) -> None:
    def loading() -> bool:
        rows = my_query(
            mysql_db,
            "SELECT count(*) FROM information_schema.processlist "
            "WHERE db = %s AND info LIKE 'LOAD DATA%%'",
            (mysql_db,),
        )
        return bool(rows[0][0])

    def table_exists(name: str) -> bool:
        rows = my_query(
            mysql_db,
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s "
            "AND table_name = %s",
            (mysql_db, name),
        )
        return bool(rows[0][0])

    def visible_rows() -> int:
        if not table_exists("big"):
            return 0
        return int(my_query(mysql_db, "SELECT count(DISTINCT id) FROM big")[0][0])

    def ledger_rows() -> int:
        if not table_exists("_sluice_ledger"):
            return 0
        return int(
            my_query(mysql_db, "SELECT count(*) FROM _sluice_ledger WHERE task = 'big'")[0][0]
        )

    kill_mid_unit(
        tmp_path,
        stack_factory,
        mysql_url,
        "big",
        loading,
        visible_rows,
        ledger_rows,
    )
