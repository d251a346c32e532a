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
    loaded_units = 0
    for task in run["tasks"]:
        units = task.get("units", [])
        count = {
            s: sum(1 for u in units if u["status"] == s) for s in ("succeeded", "skipped", "failed")
        }
        loaded_units += count["succeeded"]
        print(
            f"  {task['task_id']:<20} {task['status']:<10} {count['succeeded']:>7} "
            f"{count['skipped']:>7} {count['failed']:>6} {task.get('rows_loaded', 0):>10} "
            f"{task.get('rows_rejected', 0):>9}"
        )
        if task.get("error"):
            print(f"    error: {task['error']}")
    if run["status"] == "succeeded" and loaded_units == 0 and totals.get("units"):
        print(f"nothing new to load: all {totals['units']} units are already in the ledger.")
    elif run["status"] == "succeeded":
        print(f"loaded {totals.get('rows_loaded', 0)} rows from {loaded_units} unit(s).")


def print_destinations(pipeline: Pipeline) -> None:
    """For DuckDB destinations, show what the tables hold now and how to query them."""
    import duckdb

    from services.loader.sinks.duckdb_sink import database_path

    tables: dict[str, list[str]] = {}
    for task in pipeline.tasks:
        if isinstance(task, EtlTask) and task.destination.uri.startswith("duckdb:"):
            path = database_path(task.destination.uri)
            names = tables.setdefault(path, [])
            if task.destination.table and task.destination.table not in names:
                names.append(task.destination.table)
    for path, names in tables.items():
        if not Path(path).exists():
            continue
        print(f"\nDuckDB database {path}:")
        with duckdb.connect(path, read_only=True) as con:
            for name in names:
                count = con.execute(f'SELECT count(*) FROM "{name}"').fetchone()
                print(f"  {name:<24} {count[0] if count else 0:>10} rows")
        query = f"SELECT * FROM {names[0]} LIMIT 10"
        print("Query it with:")
        print(
            f'  .venv/bin/python -c "import duckdb; '
            f"print(duckdb.connect('{path}', read_only=True).sql('{query}'))\""
        )
