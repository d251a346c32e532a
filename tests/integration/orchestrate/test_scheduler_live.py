"""The scheduler inside a running orchestrator: missed times are created and executed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from services.orchestrator.settings import SchedulerSettings
from services.orchestrator.state.store import Store
from tests.conftest import wait_for
from tests.integration.orchestrate.conftest import job, job_pipeline, wait_final

Start = Callable[..., TestClient]
EVERY_MINUTE = job_pipeline(
    "minutely", job("only", "print(1)"), extra='schedule: "* * * * *"\ncatchup: all\n'
)


def test_leader_backfills_missed_minutes_and_runs_them(orchestrator: Start, tmp_path: Path) -> None:
    # The last scheduled run was three minutes ago; the orchestrator was down since.
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    last = (datetime.now(UTC) - timedelta(minutes=3)).replace(second=0, microsecond=0)
    store.create_run(
        pipeline="minutely",
        trigger="schedule",
        logical_date=last,
        params={},
        tasks=[("only", "job")],
        idempotency_key=f"schedule:{last.isoformat()}",
    )
    store.engine.dispose()
    client = orchestrator(
        {"m.yaml": EVERY_MINUTE},
        scheduler=SchedulerSettings(enabled=True, tick_seconds=0.1, lease_seconds=3),
    )

    def scheduled() -> list[dict[str, object]]:
        runs = client.get("/api/v1/runs", params={"pipeline": "minutely"}).json()["runs"]
        return [r for r in runs if r["trigger"] == "schedule"]

    wait_for(lambda: len(scheduled()) >= 4, what="three missed minutes to be scheduled")
    dates = sorted(str(r["logical_date"]) for r in scheduled())
    expected = [(last + timedelta(minutes=i)).isoformat() for i in range(4)]
    assert dates[:4] == expected
    for run in scheduled():
        assert wait_final(client, str(run["run_id"]))["status"] == "succeeded"
    lag = REGISTRY.get_sample_value("sluice_schedule_lag_seconds", {"pipeline": "minutely"})
    assert lag == 0
    assert REGISTRY.get_sample_value("sluice_scheduler_leader") == 1
