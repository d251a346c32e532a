"""Through the real stack into MariaDB: good rows without lineage columns, rejects with them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import my_query, trigger, wait_for_run, write_pipeline

PIPELINE = """\
name: shop
tasks:
  - id: orders
    source:
      uri: file://{data}/*.csv
      format: csv
    transform:
      - cast: {{qty: int64}}
      - check: {{range: {{qty: [0, 100]}}}}
        on_fail: quarantine
        max_reject_ratio: 0.5
    destination:
      uri: {url}
      table: orders
      mode: merge
      keys: [order_id]
"""


def test_orders_merge_into_mariadb_with_quarantine(
    stack_factory: Any, tmp_path: Path, mysql_db: str, mysql_url: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("order_id,qty\nA1,1\nA2,500\nA3,3\n")
    (data / "b.csv").write_text("order_id,qty\nA1,10\nA4,4\n")
    pipelines = tmp_path / "pipelines"
    write_pipeline(pipelines, PIPELINE.format(data=data, url=mysql_url))
    stack = stack_factory(pipelines)

    run = wait_for_run(stack.url, trigger(stack.url, "shop"), timeout=180)
    assert run["status"] == "succeeded", run["tasks"][0].get("error")
    assert run["totals"]["rows_rejected"] == 1

    rows = my_query(mysql_db, "SELECT order_id, qty FROM orders ORDER BY order_id")
    assert rows in ([("A1", 10), ("A3", 3), ("A4", 4)], [("A1", 1), ("A3", 3), ("A4", 4)])
    columns = [r[0] for r in my_query(mysql_db, "SHOW COLUMNS FROM orders")]
    assert not [c for c in columns if c.startswith("_sluice_")]
    rejected = my_query(
        mysql_db, "SELECT order_id, _sluice_check, _sluice_line, _sluice_unit FROM orders__rejected"
    )
    assert [(r[0], r[1], r[2]) for r in rejected] == [("A2", "range", 3)]
    assert rejected[0][3].endswith("a.csv")

    again = wait_for_run(stack.url, trigger(stack.url, "shop"), timeout=180)
    assert again["status"] == "succeeded"
    assert again["totals"]["rows_loaded"] == 0
    assert my_query(mysql_db, "SELECT count(*) FROM orders__rejected") == [(1,)]
