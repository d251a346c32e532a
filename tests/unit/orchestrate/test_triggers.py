"""``queue_run``: the run gets the pipeline's tasks, and only a new run counts as a trigger."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import REGISTRY

from services.common.spec.model import Pipeline
from services.orchestrator.state.store import Store
from services.orchestrator.triggers import queue_run


def triggers(pipeline: str, trigger: str) -> float:
    labels = {"pipeline": pipeline, "trigger": trigger}
    return REGISTRY.get_sample_value("sluice_run_triggers_total", labels) or 0.0


def test_queue_run_creates_the_tasks_and_counts_new_runs_only(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    pipeline = Pipeline.model_validate(
        {
            "name": "queue-run-test",
            "tasks": [
                {"id": "fetch", "type": "job", "command": ["true"]},
                {"id": "sum", "type": "job", "command": ["true"], "depends_on": ["fetch"]},
            ],
        }
    )
    before = triggers("queue-run-test", "event")

    def queue() -> tuple[str, bool]:
        new = queue_run(
            store,
            pipeline,
            trigger="event",
            logical_date=datetime(2026, 11, 24, tzinfo=UTC),
            params={"gcs_object": "a.csv"},
            idempotency_key="gcs:abc",
            max_queued=5,
        )
        return new.run["run_id"], new.created

    first, created = queue()
    assert created is True
    assert queue() == (first, False)  # a redelivered event is the same run
    run = store.get_run(first)
    assert [t["task_id"] for t in run["tasks"]] == ["fetch", "sum"]
    assert run["trigger"] == "event" and run["params"] == {"gcs_object": "a.csv"}
    assert triggers("queue-run-test", "event") == before + 1
    store.engine.dispose()
