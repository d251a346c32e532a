"""A cancelled run whose COPY is stuck behind a lock: the cancel reaches PostgreSQL.

Without it the loader's COPY would sit in the server until the lock went away, holding the
unit's transaction open and a thread of the loader busy, while the run already said cancelled.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.conftest import (
    my_query,
    mysql_conn,
    pg_copies,
    pg_query,
    trigger,
    wait_for,
    wait_for_run,
    write_pipeline,
)

ROWS = 5_000
PIPELINE = """\
name: stalled
tasks:
  - id: orders
    source:
      uri: file://{data}/orders.csv
      format: csv
    destination:
      uri: {uri}
      table: orders
"""


def orders_pipeline(tmp_path: Path, uri: str) -> Path:
    """The orders csv and the pipeline loading it into ``uri``; the pipelines directory."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "orders.csv").write_text(
        "id,amount\n" + "".join(f"{i},{i * 0.5}\n" for i in range(ROWS))
    )
    pipelines = tmp_path / "pipelines"
    write_pipeline(pipelines, PIPELINE.format(data=data, uri=uri))
    return pipelines


def cancel_while_stuck(url: str, run_id: str, waiting: Callable[[], int], what: str) -> None:
    """Cancel a run whose statement waits for a lock: the run is cancelled, and the statement
    itself is gone from the server within seconds (not left waiting for the lock)."""
    started = time.monotonic()
    reply = httpx.post(f"{url}/api/v1/runs/{run_id}/cancel", timeout=10)
    assert reply.status_code in (200, 202), reply.text
    run = wait_for_run(url, run_id, timeout=60)
    assert run["status"] == "cancelled", run
    wait_for(lambda: waiting() == 0, 20, f"the {what} to go")
    assert time.monotonic() - started < 20


def waiting_copies(dsn: str, schema: str) -> int:
    return pg_copies(dsn, schema, "wait_event_type = 'Lock'")


def test_cancel_reaches_a_copy_stuck_behind_a_lock(
    tmp_path: Path, stack_factory: Any, pg_dsn: str, pg_schema: str, pg_url: str
) -> None:
    pipelines = orders_pipeline(tmp_path, pg_url)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{pg_schema}".orders (id bigint, amount double precision)')
    stack = stack_factory(pipelines)

    blocker = psycopg.connect(pg_dsn)  # a transaction holding the table, e.g. a long migration
    try:
        blocker.execute(f'LOCK TABLE "{pg_schema}".orders IN ACCESS EXCLUSIVE MODE')
        run_id = trigger(stack.url, "stalled")
        wait_for(lambda: waiting_copies(pg_dsn, pg_schema) == 1, 60, "the COPY to wait")

        cancel_while_stuck(stack.url, run_id, lambda: waiting_copies(pg_dsn, pg_schema), "COPY")
    finally:
        blocker.rollback()
        blocker.close()

    assert pg_query(pg_dsn, f'SELECT count(*) FROM "{pg_schema}".orders')[0][0] == 0
    again = wait_for_run(stack.url, trigger(stack.url, "stalled"), timeout=120)
    assert again["status"] == "succeeded", again
    assert pg_query(pg_dsn, f'SELECT count(*) FROM "{pg_schema}".orders')[0][0] == ROWS


def waiting_inserts(database: str) -> int:
    rows = my_query(
        database,
        "SELECT count(*) FROM information_schema.processlist WHERE db = %s "
        "AND info LIKE 'INSERT INTO%%' AND state LIKE '%%lock%%'",
        (database,),
    )
    return int(rows[0][0])


def test_cancel_reaches_an_insert_stuck_behind_a_lock_in_mariadb(
    tmp_path: Path, stack_factory: Any, mysql_db: str, mysql_url: str
) -> None:
    pipelines = orders_pipeline(tmp_path, mysql_url)
    my_query(mysql_db, "CREATE TABLE orders (id bigint, amount double)")
    stack = stack_factory(pipelines)

    blocker = mysql_conn(mysql_db)
    try:
        with blocker.cursor() as cursor:
            cursor.execute("LOCK TABLES orders WRITE")
        run_id = trigger(stack.url, "stalled")
        wait_for(lambda: waiting_inserts(mysql_db) == 1, 60, "the INSERT to wait")

        cancel_while_stuck(stack.url, run_id, lambda: waiting_inserts(mysql_db), "INSERT")
    finally:
        with blocker.cursor() as cursor:
            cursor.execute("UNLOCK TABLES")
        blocker.close()

    assert my_query(mysql_db, "SELECT count(*) FROM orders")[0][0] == 0
    again = wait_for_run(stack.url, trigger(stack.url, "stalled"), timeout=120)
    assert again["status"] == "succeeded", again
    assert my_query(mysql_db, "SELECT count(*) FROM orders")[0][0] == ROWS
