"""A cancelled run whose COPY is stuck behind a lock: the cancel reaches PostgreSQL.

Without it the loader's COPY would sit in the server until the lock went away, holding the
unit's transaction open and a thread of the loader busy, while the run already said cancelled.
"""

from __future__ import annotations

import time
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


def waiting_copies(dsn: str, schema: str) -> int:
    return pg_copies(dsn, schema, "wait_event_type = 'Lock'")


def test_cancel_reaches_a_copy_stuck_behind_a_lock(
    tmp_path: Path, stack_factory: Any, pg_dsn: str, pg_schema: str, pg_url: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "orders.csv").write_text(
        "id,amount\n" + "".join(f"{i},{i * 0.5}\n" for i in range(ROWS))
    )
    pipelines = tmp_path / "pipelines"
    write_pipeline(pipelines, PIPELINE.format(data=data, uri=pg_url))
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{pg_schema}".orders (id bigint, amount double precision)')
    stack = stack_factory(pipelines)

    blocker = psycopg.connect(pg_dsn)  # a transaction holding the table, e.g. a long migration
    try:
        blocker.execute(f'LOCK TABLE "{pg_schema}".orders IN ACCESS EXCLUSIVE MODE')
        run_id = trigger(stack.url, "stalled")
        wait_for(lambda: waiting_copies(pg_dsn, pg_schema) == 1, 60, "the COPY to wait")

        started = time.monotonic()
        reply = httpx.post(f"{stack.url}/api/v1/runs/{run_id}/cancel", timeout=10)
        assert reply.status_code in (200, 202), reply.text
        run = wait_for_run(stack.url, run_id, timeout=60)
        assert run["status"] == "cancelled", run
        # The statement itself is cancelled in the server, not left waiting for the lock.
        wait_for(lambda: waiting_copies(pg_dsn, pg_schema) == 0, 20, "the COPY to go")
        assert time.monotonic() - started < 20
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
    tmp_path: Path, stack_factory: Any, mysql_db: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "orders.csv").write_text(
        "id,amount\n" + "".join(f"{i},{i * 0.5}\n" for i in range(ROWS))
    )
    pipelines = tmp_path / "pipelines"
    uri = f"mysql://root@127.0.0.1:3306/{mysql_db}"
    write_pipeline(pipelines, PIPELINE.format(data=data, uri=uri))
    my_query(mysql_db, "CREATE TABLE orders (id bigint, amount double)")
    stack = stack_factory(pipelines)

    blocker = mysql_conn(mysql_db)
    try:
        with blocker.cursor() as cursor:
            cursor.execute("LOCK TABLES orders WRITE")
        run_id = trigger(stack.url, "stalled")
        wait_for(lambda: waiting_inserts(mysql_db) == 1, 60, "the INSERT to wait")

        started = time.monotonic()
        reply = httpx.post(f"{stack.url}/api/v1/runs/{run_id}/cancel", timeout=10)
        assert reply.status_code in (200, 202), reply.text
        run = wait_for_run(stack.url, run_id, timeout=60)
        assert run["status"] == "cancelled", run
        wait_for(lambda: waiting_inserts(mysql_db) == 0, 20, "the INSERT to go")
        assert time.monotonic() - started < 20
    finally:
        with blocker.cursor() as cursor:
            cursor.execute("UNLOCK TABLES")
        blocker.close()

    assert my_query(mysql_db, "SELECT count(*) FROM orders")[0][0] == 0
    again = wait_for_run(stack.url, trigger(stack.url, "stalled"), timeout=120)
    assert again["status"] == "succeeded", again
    assert my_query(mysql_db, "SELECT count(*) FROM orders")[0][0] == ROWS
