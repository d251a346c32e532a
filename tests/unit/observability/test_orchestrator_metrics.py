"""Orchestrator metrics that are computed rather than counted: queued runs read from the state
DB, freshness restored at start, schedule intervals, state-DB errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY, generate_latest
from sqlalchemy import text

from services.common.spec.model import Pipeline
from services.orchestrator import metrics
from services.orchestrator.state.store import Store


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    yield store
    metrics.QUEUED_RUNS.source = None  # the collector is process-wide
    store.engine.dispose()


def queue(store: Store, pipeline: str) -> str:
    run = store.create_run(
        pipeline=pipeline,
        trigger="api",
        logical_date=datetime(2026, 11, 1, tzinfo=UTC),
        params={},
        tasks=[("t", "sql")],
    )
    run_id: str = run.run["run_id"]
    return run_id


def pipeline(**fields: Any) -> Pipeline:
    spec = {"name": "p", "tasks": [{"id": "t", "type": "sql", "sql": "select 1",
            "destination": {"uri": "duckdb:///x.duckdb"}}], **fields}  # fmt: skip
    return Pipeline.model_validate(spec)


def test_queued_runs_are_read_from_the_state_db(store: Store) -> None:
    metrics.QUEUED_RUNS.watch(store.queued_counts)
    assert sample("sluice_queued_runs", pipeline="daily") is None
    queue(store, "daily")
    queue(store, "daily")
    queue(store, "hourly")
    assert sample("sluice_queued_runs", pipeline="daily") == 2.0
    assert sample("sluice_queued_runs", pipeline="hourly") == 1.0


def test_a_broken_state_db_does_not_break_the_scrape(store: Store) -> None:
    def broken() -> dict[str, int]:
        raise RuntimeError("database is locked")

    metrics.QUEUED_RUNS.watch(broken)
    exposition = generate_latest(REGISTRY).decode()
    assert "# TYPE sluice_queued_runs gauge" in exposition
    assert 'sluice_queued_runs{pipeline="daily"}' not in exposition
    assert "# TYPE sluice_runs_total counter" in exposition


def test_last_success_is_restored_from_the_state_db(store: Store) -> None:
    run_id = queue(store, "restored")
    store.set_run_status(run_id, "running")
    store.set_run_status(run_id, "succeeded")
    finished = store.get_run(run_id)["finished_at"]
    metrics.seed_last_success(store, ["restored", "never_ran"])
    assert sample("sluice_last_success_timestamp_seconds", pipeline="restored") == pytest.approx(
        datetime.fromisoformat(finished).timestamp()
    )
    assert sample("sluice_last_success_timestamp_seconds", pipeline="never_ran") is None


@pytest.mark.parametrize(
    ("schedule", "timezone", "seconds"),
    [
        ("0 5 * * *", "Europe/Berlin", 86400.0),
        ("*/15 * * * *", "UTC", 900.0),
        ("@hourly", "UTC", 3600.0),
        ("@weekly", "UTC", 7 * 86400.0),
    ],
)
def test_schedule_interval(schedule: str, timezone: str, seconds: float) -> None:
    now = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
    p = pipeline(schedule=schedule, timezone=timezone)
    assert metrics.schedule_interval(p, now) == seconds


def test_export_schedules_publishes_scheduled_pipelines_and_zero_counters() -> None:
    metrics.export_schedules([pipeline(name="sched", schedule="@daily"), pipeline(name="manual")])
    assert sample("sluice_pipeline_schedule_interval_seconds", pipeline="sched") == 86400.0
    assert sample("sluice_pipeline_schedule_interval_seconds", pipeline="manual") is None
    # present at 0 before the first run, so increase() sees the first failure
    assert sample("sluice_runs_total", pipeline="manual", status="failed") == 0.0
    assert sample("sluice_rows_loaded_total", pipeline="manual", task="t") == 0.0
    metrics.export_schedules([pipeline(name="manual")])
    assert sample("sluice_pipeline_schedule_interval_seconds", pipeline="sched") is None


def test_state_db_errors_are_counted(store: Store) -> None:
    before = sample("sluice_state_db_errors_total") or 0.0
    with pytest.raises(Exception, match="no such table"), store.engine.connect() as conn:
        conn.execute(text("SELECT * FROM no_such_table"))
    assert sample("sluice_state_db_errors_total") == before + 1
