"""The HTTP API as a client sees it: auth, triggers, idempotency, history, cancel, retry, config."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from services.orchestrator.app import create_app
from services.orchestrator.auth import AuthConfigError, hash_token
from services.orchestrator.settings import AuthSettings
from tests.conftest import wait_for
from tests.integration.orchestrate.conftest import (
    OPERATOR,
    VIEWER,
    auth,
    job,
    job_pipeline,
    make_settings,
    wait_final,
)

Start = Callable[..., TestClient]
QUICK = job_pipeline("quick", job("only", "print('hi')"))
SLOW = job_pipeline("slow", job("sleepy", "import time; time.sleep(30)"))
SCHEDULED = job_pipeline(
    "nightly", job("only", "print(1)"), extra='schedule: "30 2 * * *"\ntimezone: Europe/Berlin\n'
)


def test_every_api_route_needs_a_token_and_writes_need_operator(orchestrator: Start) -> None:
    client = orchestrator({"q.yaml": QUICK})
    anonymous = TestClient(client.app)
    reply = anonymous.get("/api/v1/runs")
    assert reply.status_code == 401
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.headers["www-authenticate"].startswith("Bearer")
    assert reply.json()["code"] == "unauthorized"
    reply = anonymous.get("/api/v1/pipelines", headers=auth("not-a-token"))
    assert reply.status_code == 401
    assert "unknown" in reply.json()["detail"]

    assert anonymous.get("/api/v1/pipelines", headers=auth(VIEWER)).status_code == 200
    reply = anonymous.post("/api/v1/pipelines/quick/runs", headers=auth(VIEWER))
    assert reply.status_code == 403
    assert reply.json()["code"] == "forbidden"
    assert "operator" in reply.json()["detail"]
    assert anonymous.post("/api/v1/runs/x/cancel", headers=auth(VIEWER)).status_code == 403

    # Probes, metrics and the API docs stay open.
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/metrics").status_code == 200
    assert anonymous.get("/readyz").status_code in (200, 503)
    assert anonymous.get("/docs").status_code == 200
    spec = anonymous.get("/openapi.json").json()
    assert "/api/v1/runs/{run_id}/retry" in spec["paths"]
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


def test_start_without_tokens_needs_explicit_disable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(AuthConfigError, match="SLUICE_AUTH__DISABLED=true"):
        create_app(make_settings(tmp_path, auth=AuthSettings()))
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "q.yaml").write_text(QUICK)
    with caplog.at_level(logging.WARNING):
        app = create_app(make_settings(tmp_path, auth=AuthSettings(disabled=True)))
    assert "authentication is DISABLED" in caplog.text
    with TestClient(app) as client:
        reply = client.post("/api/v1/pipelines/quick/runs")
        assert reply.status_code == 202


def test_tokens_file_and_its_errors(tmp_path: Path) -> None:
    good = tmp_path / "tokens"
    good.write_text(f"# name:role:sha256\nrobot:operator:{hash_token('robot-secret')}\n")
    (tmp_path / "pipelines").mkdir()
    app = create_app(make_settings(tmp_path, auth=AuthSettings(tokens_file=good)))
    with TestClient(app) as client:
        assert client.get("/api/v1/runs", headers=auth("robot-secret")).status_code == 200
        assert client.get("/api/v1/runs", headers=auth(OPERATOR)).status_code == 401
    bad = tmp_path / "bad-tokens"
    bad.write_text(f"robot:operator:{hash_token('x')}\nrobot:admin:{hash_token('y')}\n")
    with pytest.raises(AuthConfigError) as info:
        create_app(make_settings(tmp_path, auth=AuthSettings(tokens_file=bad)))
    assert f"{bad}, line 2" in info.value.full_message
    assert "role" in info.value.full_message


def test_trigger_with_params_logical_date_and_idempotency_key(orchestrator: Start) -> None:
    client = orchestrator({"q.yaml": QUICK})
    started = {"pipeline": "quick"}
    before = REGISTRY.get_sample_value("sluice_trigger_to_start_seconds_count", started) or 0
    body = {"params": {"region": "eu"}, "logical_date": "2026-11-01T05:00:00+01:00"}
    first = client.post(
        "/api/v1/pipelines/quick/runs", json=body, headers={"Idempotency-Key": "k1"}
    )
    assert first.status_code == 202
    again = client.post(
        "/api/v1/pipelines/quick/runs", json=body, headers={"Idempotency-Key": "k1"}
    )
    assert again.status_code == 200
    assert again.json()["run_id"] == first.json()["run_id"]
    assert again.json()["created"] is False
    run = wait_final(client, first.json()["run_id"])
    assert run["status"] == "succeeded"
    assert run["params"] == {"region": "eu"}
    assert run["logical_date"] == "2026-11-01T04:00:00+00:00"
    assert run["tasks"][0]["output"].strip() == "hi"
    after = REGISTRY.get_sample_value("sluice_trigger_to_start_seconds_count", started)
    assert after == before + 1
    other = client.post("/api/v1/pipelines/quick/runs", headers={"Idempotency-Key": "k2"})
    assert other.json()["run_id"] != first.json()["run_id"]


def test_errors_are_problem_documents_with_stable_codes(orchestrator: Start) -> None:
    client = orchestrator({"q.yaml": QUICK})
    reply = client.post("/api/v1/pipelines/nope/runs")
    assert (reply.status_code, reply.json()["code"]) == (404, "pipeline_not_found")
    assert "quick" in reply.json()["detail"]  # names the known pipelines
    reply = client.get("/api/v1/runs/does-not-exist")
    assert (reply.status_code, reply.json()["code"]) == (404, "run_not_found")
    reply = client.post("/api/v1/pipelines/quick/runs", json={"param": {}})
    assert (reply.status_code, reply.json()["code"]) == (422, "invalid_request")
    assert "param" in reply.json()["detail"]
    reply = client.get("/api/v1/runs", params={"status": "exploded"})
    assert (reply.status_code, reply.json()["code"]) == (422, "invalid_request")


def test_run_history_filters_and_pages(orchestrator: Start) -> None:
    client = orchestrator({"q.yaml": QUICK, "s.yaml": SLOW})
    quick = [client.post("/api/v1/pipelines/quick/runs").json()["run_id"] for _ in range(3)]
    for run_id in quick:
        wait_final(client, run_id)
    slow = client.post("/api/v1/pipelines/slow/runs").json()["run_id"]
    page = client.get("/api/v1/runs", params={"pipeline": "quick", "limit": 2}).json()
    assert [r["run_id"] for r in page["runs"]] == quick[::-1][:2]  # newest first
    assert page["next_offset"] == 2
    rest = client.get("/api/v1/runs", params={"pipeline": "quick", "limit": 2, "offset": 2}).json()
    assert [r["run_id"] for r in rest["runs"]] == [quick[0]]
    assert rest["next_offset"] is None
    succeeded = client.get("/api/v1/runs", params={"status": "succeeded"}).json()["runs"]
    assert {r["run_id"] for r in succeeded} == set(quick)
    client.post(f"/api/v1/runs/{slow}/cancel")


def test_cancel_stops_the_running_task_and_retry_reruns_only_what_failed(
    orchestrator: Start, tmp_path: Path
) -> None:
    marker = tmp_path / "after-sleep"
    counter = tmp_path / "counter"
    pid_file = tmp_path / "pid"
    tasks = job("first", f"open({str(counter)!r}, 'a').write('x')") + job(
        "second",
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
        f"time.sleep(30); open({str(marker)!r}, 'w').write('done')",
        depends_on=["first"],
    )
    client = orchestrator({"c.yaml": job_pipeline("cancellable", tasks)})
    run_id = client.post("/api/v1/pipelines/cancellable/runs").json()["run_id"]

    def second_running() -> bool:
        run = client.get(f"/api/v1/runs/{run_id}").json()
        return bool(run["tasks"][1]["status"] == "running") and pid_file.exists()

    wait_for(second_running, what="the second task to start")
    reply = client.post(f"/api/v1/runs/{run_id}/cancel")
    assert reply.status_code == 202
    run = wait_final(client, run_id, timeout=15)
    assert run["status"] == "cancelled"
    assert [t["status"] for t in run["tasks"]] == ["succeeded", "cancelled"]
    wait_for(lambda: not process_alive(int(pid_file.read_text())), 10, "the job process to die")
    again = client.post(f"/api/v1/runs/{run_id}/cancel")
    assert (again.status_code, again.json()["code"]) == (409, "conflict")

    # Retry: the succeeded task is kept, the cancelled one runs again (quickly this time).
    (tmp_path / "pipelines" / "c.yaml").write_text(
        job_pipeline(
            "cancellable",
            job("first", f"open({str(counter)!r}, 'a').write('x')")
            + job("second", "print('quick')", depends_on=["first"]),
        )
    )
    client.app.state.runtime.registry.reload()
    reply = client.post(f"/api/v1/runs/{run_id}/retry")
    assert reply.status_code == 202
    run = wait_final(client, run_id)
    assert run["status"] == "succeeded"
    assert counter.read_text() == "x"  # first ran once in total
    assert not marker.exists()  # the cancelled sleep never finished
    reply = client.post(f"/api/v1/runs/{run_id}/retry")
    assert (reply.status_code, reply.json()["code"]) == (409, "conflict")


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


def test_queue_cap_answers_429_and_max_active_runs_keeps_runs_queued(orchestrator: Start) -> None:
    from services.orchestrator.settings import ExecutionSettings

    client = orchestrator(
        {"s.yaml": SLOW},
        execution=ExecutionSettings(poll_seconds=0.1, heartbeat_seconds=0.2, max_queued_runs=1),
    )
    running = client.post("/api/v1/pipelines/slow/runs").json()["run_id"]
    wait_for(
        lambda: client.get(f"/api/v1/runs/{running}").json()["status"] == "running",
        what="the first run to start",
    )
    waiting = client.post("/api/v1/pipelines/slow/runs").json()["run_id"]
    reply = client.post("/api/v1/pipelines/slow/runs")
    assert (reply.status_code, reply.json()["code"]) == (429, "too_many_queued_runs")
    assert client.get(f"/api/v1/runs/{waiting}").json()["status"] == "queued"  # max_active_runs 1
    assert client.post(f"/api/v1/runs/{waiting}/cancel").json()["status"] == "cancelled"
    client.post(f"/api/v1/runs/{running}/cancel")
    assert wait_final(client, running)["status"] == "cancelled"


def test_pipelines_show_last_and_next_runs(orchestrator: Start) -> None:
    client = orchestrator({"n.yaml": SCHEDULED, "q.yaml": QUICK})
    run_id = client.post("/api/v1/pipelines/quick/runs").json()["run_id"]
    wait_final(client, run_id)
    pipelines = {p["name"]: p for p in client.get("/api/v1/pipelines").json()["pipelines"]}
    assert pipelines["quick"]["last_run"]["run_id"] == run_id
    assert pipelines["quick"]["next_runs"] == []
    nightly = client.get("/api/v1/pipelines/nightly").json()
    assert nightly["last_run"] is None
    assert len(nightly["next_runs"]) == 3
    assert all(t.endswith(("01:30:00+00:00", "00:30:00+00:00")) for t in nightly["next_runs"])
    assert nightly["next_runs"] == sorted(nightly["next_runs"])


def test_config_shows_effective_settings_with_secrets_masked(orchestrator: Start) -> None:
    client = orchestrator({"q.yaml": QUICK})
    reply = client.get("/api/v1/config", headers=auth(VIEWER))
    assert reply.status_code == 200
    settings = reply.json()["settings"]
    assert settings["execution"]["poll_seconds"] == 0.1
    assert settings["auth"]["tokens"][0] == {"name": "ops", "sha256": "***", "role": "operator"}
    assert hash_token(OPERATOR) not in reply.text
    assert reply.json()["leader"] is True


def test_mask_secrets_in_urls_and_keys() -> None:
    from services.orchestrator.api import mask_secrets

    masked = mask_secrets(
        {"url": "postgresql+psycopg://etl:s3cret@db:5432/x", "smtp_password": "pw", "n": 1}
    )
    assert masked == {
        "url": "postgresql+psycopg://etl:***@db:5432/x",
        "smtp_password": "***",
        "n": 1,
    }


def test_pipeline_files_are_reloaded_when_they_change(orchestrator: Start, tmp_path: Path) -> None:
    from services.orchestrator.settings import PipelineSettings

    client = orchestrator(
        {"q.yaml": QUICK},
        pipelines=PipelineSettings(dir=tmp_path / "pipelines", reload_seconds=0.1),
    )
    (tmp_path / "pipelines" / "s.yaml").write_text(SCHEDULED)
    (tmp_path / "pipelines" / "q.yaml").unlink()

    def names() -> set[str]:
        return {p["name"] for p in client.get("/api/v1/pipelines").json()["pipelines"]}

    wait_for(lambda: names() == {"nightly"}, what="the pipelines directory to be reloaded")
    (tmp_path / "pipelines" / "s.yaml").write_text("name: nightly\ntasks: []\n")
    wait_for(
        lambda: bool(client.get("/api/v1/pipelines").json()["invalid_files"]),
        what="the broken file to be reported",
    )


def test_a_full_pipeline_backlog_does_not_starve_other_pipelines(orchestrator: Start) -> None:
    client = orchestrator({"s.yaml": SLOW, "q.yaml": QUICK})
    slow = [client.post("/api/v1/pipelines/slow/runs").json()["run_id"] for _ in range(30)]
    quick = client.post("/api/v1/pipelines/quick/runs").json()["run_id"]
    assert wait_final(client, quick, timeout=30)["status"] == "succeeded"
    statuses = [client.get(f"/api/v1/runs/{r}").json()["status"] for r in slow]
    assert statuses.count("running") == 1  # max_active_runs: 1
    for run_id in slow:
        client.post(f"/api/v1/runs/{run_id}/cancel")


def test_a_stopping_orchestrator_requeues_its_runs_and_the_next_one_finishes_them(
    orchestrator: Start, tmp_path: Path
) -> None:
    pid_file, nap_file = tmp_path / "pid", tmp_path / "nap"
    nap_file.write_text("30")
    script = (
        f"import os, time; open({str(pid_file)!r}, 'a').write(str(os.getpid()) + ' '); "
        f"time.sleep(float(open({str(nap_file)!r}).read()))"
    )
    pipeline = job_pipeline("resumable", job("nap", script))
    first = orchestrator({"r.yaml": pipeline})
    run_id = first.post("/api/v1/pipelines/resumable/runs").json()["run_id"]
    wait_for(pid_file.exists, what="the job to start")
    first.__exit__(None, None, None)  # the orchestrator stops (SIGTERM, a rolling update)
    assert not process_alive(int(pid_file.read_text().split()[0]))
    nap_file.write_text("0")
    second = orchestrator({})
    run = wait_final(second, run_id)
    assert run["status"] == "succeeded"
    assert len(pid_file.read_text().split()) == 2  # the task ran again, once
