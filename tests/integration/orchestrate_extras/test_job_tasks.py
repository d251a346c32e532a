"""``job`` tasks run by the orchestrator: output in the task status, retries by exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from tests.conftest import wait_for
from tests.integration.orchestrate.conftest import auth
from tests.integration.orchestrate_extras.conftest import OPERATOR, VIEWER, trigger, wait_final

PY = sys.executable


def test_job_output_and_templating_reach_the_task_status(
    orchestrator: Callable[..., TestClient], tmp_path: Path
) -> None:
    code = "import sys; print('fetched report for', sys.argv[1])"
    client = orchestrator(
        {
            "p.yaml": f"""
name: fetch
tasks:
  - id: fetch
    type: job
    command: [{PY!r}, -c, {code!r}, "{{{{ ds }}}}"]
"""
        }
    )
    reply = client.post(
        "/api/v1/pipelines/fetch/runs",
        json={"logical_date": "2026-11-23T00:00:00Z"},
        headers=auth(OPERATOR),
    )
    run = wait_final(client, reply.json()["run_id"])
    assert run["status"] == "succeeded"
    assert run["tasks"][0]["output"].strip() == "fetched report for 2026-11-23"


def test_exit_75_is_retried_and_exit_3_is_not(
    orchestrator: Callable[..., TestClient], tmp_path: Path
) -> None:
    counter = tmp_path / "attempts"
    # Fails with 75 ("try again") on the first attempt, succeeds on the second.
    flaky = (
        "import pathlib, sys; p = pathlib.Path(sys.argv[1]); n = int(p.read_text() or 0) + 1 "
        "if p.exists() else 1; p.write_text(str(n)); print('attempt', n); "
        "sys.exit(75 if n == 1 else 0)"
    )
    client = orchestrator(
        {
            "flaky.yaml": f"""
name: flaky
retries: 3
retry_delay_seconds: 0
tasks:
  - id: fetch
    type: job
    command: [{PY!r}, -c, {flaky!r}, {str(counter)!r}]
""",
            "broken.yaml": f"""
name: broken
retries: 3
retry_delay_seconds: 0
tasks:
  - id: fetch
    type: job
    command: [{PY!r}, -c, "import sys; print('login rejected'); sys.exit(3)"]
""",
        }
    )
    run = wait_final(client, trigger(client, "flaky"))
    assert run["status"] == "succeeded"
    assert run["tasks"][0]["attempts"] == 2
    assert counter.read_text() == "2"

    run = wait_final(client, trigger(client, "broken"))
    assert run["status"] == "failed"
    task = run["tasks"][0]
    assert task["attempts"] == 1  # terminal: not retried
    assert "job exited with status 3" in task["error"]
    assert "login rejected" in task["error"]


def test_job_timeout_fails_the_task_with_its_output(
    orchestrator: Callable[..., TestClient],
) -> None:
    code = "import time; print('logging in', flush=True); time.sleep(120)"
    client = orchestrator(
        {
            "p.yaml": f"""
name: hangs
tasks:
  - id: fetch
    type: job
    timeout_seconds: 2
    command: [{PY!r}, -c, {code!r}]
"""
        }
    )
    run = wait_final(client, trigger(client, "hangs"))
    assert run["status"] == "failed"
    assert "timed out" in run["tasks"][0]["error"]


def test_running_job_output_is_visible_in_the_run(
    orchestrator: Callable[..., TestClient], tmp_path: Path
) -> None:
    go = tmp_path / "go"
    code = (
        "import pathlib, sys, time; print('logged in, page 1 of 3', flush=True)\n"
        "while not pathlib.Path(sys.argv[1]).exists(): time.sleep(0.05)\n"
        "print('done')"
    )
    client = orchestrator(
        {
            "p.yaml": f"""
name: scrape
tasks:
  - id: fetch
    type: job
    command: [{PY!r}, -c, {code!r}, {str(go)!r}]
"""
        }
    )
    run_id = trigger(client, "scrape")

    def first_task() -> dict[str, object]:
        reply = client.get(f"/api/v1/runs/{run_id}", headers=auth(VIEWER))
        task: dict[str, object] = reply.json()["tasks"][0]
        return task

    wait_for(lambda: bool(first_task()["output"]), 60, "the job's first output")
    task = first_task()
    assert task["status"] == "running"
    assert task["output"] == "logged in, page 1 of 3\n"
    go.touch()
    run = wait_final(client, run_id)
    assert run["status"] == "succeeded"
    assert run["tasks"][0]["output"] == "logged in, page 1 of 3\ndone\n"
