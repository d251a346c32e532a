"""The summary ``sluice run`` prints at the end of a run."""

from __future__ import annotations

from typing import Any

import pytest

from services.cli.report import print_summary


def unit(status: str) -> dict[str, Any]:
    return {"unit": f"/data/{status}.csv", "status": status}


def run(status: str, tasks: list[tuple[str, list[str], int]]) -> dict[str, Any]:
    entries = [
        {
            "task_id": task_id,
            "status": status,
            "rows_loaded": rows,
            "rows_rejected": 0,
            "units": [unit(s) for s in statuses],
        }
        for task_id, statuses, rows in tasks
    ]
    units = sum(len(statuses) for _t, statuses, _r in tasks)
    rows = sum(r for _t, _s, r in tasks)
    return {
        "run_id": "r1",
        "status": status,
        "duration_seconds": 1.5,
        "tasks": entries,
        "totals": {"units": units, "rows_loaded": rows, "rows_rejected": 0},
    }


def test_loaded_units_are_counted_across_tasks(capsys: pytest.CaptureFixture[str]) -> None:
    print_summary(
        run(
            "succeeded",
            [("sales", ["succeeded", "skipped", "succeeded"], 20), ("stock", ["succeeded"], 5)],
        )
    )
    out = capsys.readouterr().out
    assert "run r1: SUCCEEDED in 1.5s" in out
    assert out.splitlines()[-1] == "loaded 25 rows from 3 unit(s)."


def test_everything_already_loaded_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    print_summary(run("succeeded", [("sales", ["skipped", "skipped"], 0)]))
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == "nothing new to load: all 2 units are already in the ledger."
