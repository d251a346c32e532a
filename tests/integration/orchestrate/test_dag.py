"""DAG execution: order, parallelism, retries with backoff, timeouts, final states."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.common.spec.model import Pipeline
from services.orchestrator.executor import RunExecutor
from services.orchestrator.settings import ExecutionSettings, OrchestratorSettings
from tests.integration.orchestrate.conftest import job, job_pipeline, wait_final

Start = Callable[..., TestClient]


def stamp(path: Path, sleep: float = 0) -> str:
    """A job script that records its start and end (monotonic clock, shared by processes)."""
    return (
        f"import time; f = open({str(path)!r}, 'w'); f.write(str(time.monotonic()) + ' '); "
        f"f.flush(); time.sleep({sleep}); f.write(str(time.monotonic()))"
    )


def span(path: Path) -> tuple[float, float]:
    start, end = path.read_text().split()
    return float(start), float(end)


def test_independent_tasks_overlap_and_dependants_wait(orchestrator: Start, tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    tasks = (
        job("a", stamp(a, 1.5))
        + job("b", stamp(b, 1.5))
        + job("c", stamp(c), depends_on=["a", "b"])
    )
    client = orchestrator({"p.yaml": job_pipeline("fan_in", tasks)})
    run = wait_final(client, client.post("/api/v1/pipelines/fan_in/runs").json()["run_id"])
    assert run["status"] == "succeeded"
    (a0, a1), (b0, b1), (c0, _) = span(a), span(b), span(c)
    assert a0 < b1 and b0 < a1, "independent tasks ran one after the other"
    assert c0 >= max(a1, b1), "a dependant started before its upstream tasks ended"


def test_retries_until_success_and_failure_skips_downstream(  # exit 75 asks for a retry
    orchestrator: Start, tmp_path: Path
) -> None:
    attempts = tmp_path / "attempts"
    flaky = (
        f"import sys; p = {str(attempts)!r}; n = len(open(p).read()) if __import__('os')"
        f".path.exists(p) else 0; open(p, 'a').write('x'); sys.exit(0 if n >= 2 else 75)"
    )
    tasks = (
        job("flaky", flaky, extra="    retries: 3\n")
        + job("broken", "import sys; sys.exit(1)", extra="    retries: 1\n")
        + job("after_broken", "print(1)", depends_on=["broken"])
        + job("after_flaky", "print(1)", depends_on=["flaky"])
    )
    pipeline = job_pipeline("retrying", tasks, extra="retry_delay_seconds: 0.05\n")
    client = orchestrator({"p.yaml": pipeline})
    run = wait_final(client, client.post("/api/v1/pipelines/retrying/runs").json()["run_id"])
    tasks_by_id = {t["task_id"]: t for t in run["tasks"]}
    assert run["status"] == "failed"
    assert "broken" in run["error"]
    assert (tasks_by_id["flaky"]["status"], tasks_by_id["flaky"]["attempts"]) == ("succeeded", 3)
    assert attempts.read_text() == "xxx"
    assert tasks_by_id["broken"]["status"] == "failed"
    assert tasks_by_id["broken"]["attempts"] == 1  # exit 1 is terminal: not retried
    assert "status 1" in tasks_by_id["broken"]["error"]
    assert tasks_by_id["after_broken"]["status"] == "skipped"
    assert tasks_by_id["after_flaky"]["status"] == "succeeded"


def test_task_timeout_fails_the_task_and_the_run_ends(orchestrator: Start) -> None:
    tasks = job("stuck", "import time; time.sleep(60)", extra="    timeout_seconds: 1\n")
    client = orchestrator({"p.yaml": job_pipeline("stuck", tasks)})
    run = wait_final(client, client.post("/api/v1/pipelines/stuck/runs").json()["run_id"], 30)
    assert run["status"] == "failed"
    assert run["tasks"][0]["status"] == "failed"
    assert "1s" in run["tasks"][0]["error"]


@pytest.mark.parametrize("attempt", [1, 2, 3, 6])
def test_retry_delay_is_exponential_with_bounded_jitter(attempt: int) -> None:
    settings = OrchestratorSettings(execution=ExecutionSettings(max_retry_delay_seconds=20))
    executor = RunExecutor.__new__(RunExecutor)
    executor.settings = settings
    pipeline = Pipeline.model_validate(
        {
            "name": "p",
            "retry_delay_seconds": 1,
            "tasks": [{"id": "t", "type": "job", "command": ["x"]}],
        }
    )
    delays = [executor.retry_delay(pipeline, attempt) for _ in range(200)]
    nominal = min(2 ** (attempt - 1), 20)
    assert all(0.5 * nominal <= d <= min(1.5 * nominal, 20) for d in delays)
    assert len({round(d, 6) for d in delays if d < 20}) > 50  # jittered, not a constant
