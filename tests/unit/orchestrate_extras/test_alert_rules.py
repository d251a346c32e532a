"""When alerts fire: rejects threshold, SLA, freshness deadline in the pipeline's timezone."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.common.spec.model import Alerts, Pipeline
from services.common.spec.render import SecretResolver
from services.orchestrator.alerts import (
    Alert,
    AlertMonitor,
    AlertSender,
    freshness_due,
    late_alert,
    run_alerts,
)
from services.orchestrator.events import idempotency_key, source_matches
from services.orchestrator.settings import AlertSettings
from services.orchestrator.state.store import Store


def pipeline(alerts: dict[str, Any], timezone: str = "UTC") -> Pipeline:
    return Pipeline.model_validate(
        {
            "name": "sales",
            "timezone": timezone,
            "alerts": alerts,
            "tasks": [{"id": "j", "type": "job", "command": ["true"]}],
        }
    )


def run(status: str = "succeeded", rejected: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "run_id": "r1",
        "pipeline": "sales",
        "status": status,
        "error": None,
        "created_at": "2026-11-24T05:00:00+00:00",
        "finished_at": "2026-11-24T05:10:00+00:00",
        "tasks": [
            {
                "task_id": "load",
                "status": status,
                "error": "boom\nmore" if status == "failed" else None,
                "rows_loaded": 10,
                "rows_rejected": rejected,
            }
        ],
        **extra,
    }


def kinds(alerts: list[Alert]) -> list[str]:
    return [a.kind for a in alerts]


def test_failure_and_rejects_threshold() -> None:
    p = pipeline({"on": ["failure", "rejects"], "rejects_threshold": 5})
    assert kinds(run_alerts(p, run(), "http://x")) == []
    assert kinds(run_alerts(p, run(rejected=5), "http://x")) == []  # at the threshold: fine
    found = run_alerts(p, run(rejected=6), "http://x")
    assert kinds(found) == ["rejects"]
    assert found[0].summary == "6 rows rejected (threshold 5)"
    failed = run_alerts(p, run(status="failed"), "http://x/")
    assert kinds(failed) == ["failure"]
    assert failed[0].details == ["task load: boom\nmore"]
    assert failed[0].url == "http://x/runs/r1"
    assert kinds(run_alerts(pipeline({"on": ["success"]}), run(), "")) == ["success"]
    assert run_alerts(pipeline({"on": ["rejects"]}), run(status="failed"), "") == []


def test_sla_counts_from_creation_until_finish() -> None:
    p = pipeline({"on": ["late"], "sla_minutes": 15})
    running = run(status="running", finished_at=None)
    assert late_alert(p, running, datetime(2026, 11, 24, 5, 14, tzinfo=UTC), "") is None
    late = late_alert(p, running, datetime(2026, 11, 24, 5, 16, tzinfo=UTC), "")
    assert late is not None and "still running" in late.summary
    # Finished in 10 minutes: never late, whenever it is checked.
    assert late_alert(p, run(), datetime(2026, 11, 25, tzinfo=UTC), "") is None
    slow = run(finished_at="2026-11-24T05:20:00+00:00")
    assert late_alert(p, slow, datetime(2026, 11, 25, tzinfo=UTC), "") is not None
    assert (
        late_alert(
            pipeline({"on": ["failure"], "sla_minutes": 1}),
            running,
            datetime(2026, 11, 25, tzinfo=UTC),
            "",
        )
        is None
    )


def test_freshness_deadline_is_local_time() -> None:
    p = pipeline({"on": ["freshness"], "fresh_by": "09:30"}, timezone="Europe/Berlin")
    # Winter: Berlin is UTC+1, so 09:30 local is 08:30 UTC.
    assert freshness_due(p, datetime(2026, 11, 24, 8, 29, tzinfo=UTC)) is None
    midnight, deadline = freshness_due(p, datetime(2026, 11, 24, 8, 31, tzinfo=UTC)) or (0, 0)
    assert midnight == datetime(2026, 11, 23, 23, 0, tzinfo=UTC)
    assert deadline == datetime(2026, 11, 24, 8, 30, tzinfo=UTC)
    # Summer: UTC+2.
    assert freshness_due(p, datetime(2026, 7, 1, 7, 29, tzinfo=UTC)) is None
    assert freshness_due(p, datetime(2026, 7, 1, 7, 31, tzinfo=UTC)) is not None


def test_freshness_is_quiet_when_a_file_was_loaded_today(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    store.create_schema()
    p = pipeline({"on": ["freshness"], "fresh_by": "00:00", "webhook": "http://127.0.0.1:9/x"})
    sent: list[Alert] = []

    class Recorder(AlertSender):
        async def send(self, targets: Alerts, alert: Alert) -> dict[str, str]:
            sent.append(alert)
            return {"webhook": "sent"}

    monitor = AlertMonitor(
        Recorder(AlertSettings(), SecretResolver({})), lambda: {"sales": p}, store, AlertSettings()
    )
    new = store.create_run(
        pipeline="sales",
        trigger="api",
        logical_date=datetime.now(UTC),
        params={},
        tasks=[("load", "etl")],
    )
    store.record_unit(
        new.run["run_id"], "load", unit_key="a.csv", fingerprint="1", status="skipped", attempt=1
    )
    asyncio.run(monitor.check())
    assert kinds(sent) == ["freshness"]  # a skipped (already loaded) file is not a new one

    sent.clear()
    monitor.sent.clear()
    store.record_unit(
        new.run["run_id"], "load", unit_key="b.csv", fingerprint="1", status="succeeded", attempt=1
    )
    asyncio.run(monitor.check())
    assert sent == []
    store.engine.dispose()


def test_gcs_source_matching() -> None:
    assert source_matches("gs://landing/sales/*.csv", "landing", "sales/a.csv")
    assert not source_matches("gs://landing/sales/*.csv", "other", "sales/a.csv")
    assert not source_matches("gs://landing/sales/*.csv", "landing", "stock/a.csv")
    assert source_matches("gs://landing/in/{{ ds }}/x.csv", "landing", "in/2026-11-24/x.csv")
    assert not source_matches("file://landing/sales/*.csv", "landing", "sales/a.csv")
    assert idempotency_key("b", "o", "1") != idempotency_key("b", "o", "2")
    assert len(idempotency_key("b", "o" * 1024, "1")) < 256


def test_failure_alert_quotes_the_end_of_a_long_job_output() -> None:
    error = "job exited with status 3; output tail:\n" + "\n".join(f"line {i}" for i in range(50))
    long_run = run(status="failed")
    long_run["tasks"][0]["error"] = error
    (alert,) = run_alerts(pipeline({"on": ["failure"]}), long_run, "")
    assert alert.details == [
        "task load: job exited with status 3; output tail:\n...\n"
        "line 45\nline 46\nline 47\nline 48\nline 49"
    ]
