"""Human-readable run summaries for the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.common.spec.model import EtlTask, Pipeline


def print_summary(run: dict[str, Any]) -> None:
    totals = run.get("totals", {})
    print()
    print(
        f"run {run['run_id']}: {run['status'].upper()}"
        + (f" in {run['duration_seconds']:.1f}s" if run.get("duration_seconds") else "")
    )
    print(
        f"  {'task':<20} {'status':<10} {'loaded':>7} {'skipped':>7} {'failed':>6} "
        f"{'rows':>10} {'rejected':>9}"
    )
    for task in run["tasks"]:
        units = task.get("units", [])
        count = {
            s: sum(1 for u in units if u["status"] == s) for s in ("succeeded", "skipped", "failed")
        }
        print(
            f"  {task['task_id']:<20} {task['status']:<10} {count['succeeded']:>7} "
            f"{count['skipped']:>7} {count['failed']:>6} {task.get('rows_loaded', 0):>10} "
            f"{task.get('rows_rejected', 0):>9}"
        )
        if task.get("error"):
            print(f"    error: {task['error']}")
    loaded_units = sum(
        1 for t in run["tasks"] for u in t.get("units", []) if u["status"] == "succeeded"
    )
    if run["status"] == "succeeded" and loaded_units == 0 and totals.get("units"):
        print(f"nothing new to load: all {totals['units']} units are already in the ledger.")
    elif run["status"] == "succeeded":
        print(f"loaded {totals.get('rows_loaded', 0)} rows from {loaded_units} unit(s).")


def print_destinations(pipeline: Pipeline) -> None:
    """For DuckDB destinations, show what the tables hold now and how to query them."""
    seen: set[tuple[str, str]] = set()
    for task in pipeline.tasks:
        if not isinstance(task, EtlTask) or not task.destination.uri.startswith("duckdb:"):
            continue
        from services.loader.sinks.duckdb_sink import database_path

        path = database_path(task.destination.uri)
        key = (path, task.destination.table or "")
        if key in seen or not Path(path).exists():
            continue
        seen.add(key)
        import duckdb

        with duckdb.connect(path, read_only=True) as con:
            count = con.execute(f'SELECT count(*) FROM "{task.destination.table}"').fetchone()
        rows = count[0] if count else 0
        print(f"table {task.destination.table} in {path} now holds {rows} rows. Query it with:")
        query = f"SELECT * FROM {task.destination.table} LIMIT 10"
        print(
            f'  .venv/bin/python -c "import duckdb; '
            f"print(duckdb.connect('{path}', read_only=True).sql('{query}'))\""
        )
