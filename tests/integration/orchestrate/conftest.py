"""An in-process orchestrator (FastAPI TestClient) over a SQLite state DB, with tokens."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from services.orchestrator.app import create_app
from services.orchestrator.auth import hash_token
from services.orchestrator.settings import (
    AuthSettings,
    ExecutionSettings,
    OrchestratorSettings,
    PipelineSettings,
    SchedulerSettings,
    StateSettings,
    TokenEntry,
)
from services.orchestrator.state.models import FINAL_STATUSES

OPERATOR = "operator-token-0123456789"
VIEWER = "viewer-token-0123456789"
PY = sys.executable


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_settings(tmp_path: Path, **overrides: Any) -> OrchestratorSettings:
    values: dict[str, Any] = {
        "state": StateSettings(url=f"sqlite:///{tmp_path / 'state.db'}"),
        "pipelines": PipelineSettings(dir=tmp_path / "pipelines"),
        "execution": ExecutionSettings(
            poll_seconds=0.1, heartbeat_seconds=0.2, heartbeat_timeout_seconds=5
        ),
        "scheduler": SchedulerSettings(enabled=False, lease_seconds=3),
        "auth": AuthSettings(
            tokens=[
                TokenEntry(name="ops", sha256=hash_token(OPERATOR), role="operator"),
                TokenEntry(name="dash", sha256=hash_token(VIEWER), role="viewer"),
            ]
        ),
    }
    values.update(overrides)
    return OrchestratorSettings(**values)


@contextlib.contextmanager
def started_clients(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """``start(files: dict[file name, yaml], settings)`` writes the pipeline files and returns a
    client of an in-process orchestrator; every one started is stopped on exit."""
    clients: list[TestClient] = []

    def start(files: dict[str, str], settings: OrchestratorSettings) -> TestClient:
        directory = tmp_path / "pipelines"
        directory.mkdir(exist_ok=True)
        for name, text in files.items():
            (directory / name).write_text(text)
        client = TestClient(create_app(settings))
        client.__enter__()
        clients.append(client)
        return client

    try:
        yield start
    finally:
        for client in clients:
            client.__exit__(None, None, None)


@pytest.fixture
def orchestrator(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """``start(files: dict[file name, yaml], **settings)`` returns a client with operator auth."""
    with started_clients(tmp_path) as launch:

        def start(files: dict[str, str], **overrides: Any) -> TestClient:
            client = launch(files, make_settings(tmp_path, **overrides))
            client.headers.update(auth(OPERATOR))
            return client

        yield start


def wait_final(
    client: httpx.Client,
    run_id: str,
    timeout: float = 60,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The run once final; ``headers`` when the client carries no token of its own."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run: dict[str, Any] = client.get(f"/api/v1/runs/{run_id}", headers=headers).json()
        if run["status"] in FINAL_STATUSES:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} not final after {timeout}s: {run}")


def job_pipeline(name: str, tasks: str, extra: str = "") -> str:
    return f"name: {name}\n{extra}tasks:\n{tasks}"


def job(task_id: str, script: str, *, depends_on: list[str] | None = None, extra: str = "") -> str:
    deps = f"    depends_on: {depends_on}\n" if depends_on else ""
    return (
        f"  - id: {task_id}\n    type: job\n{deps}{extra}    command: [{PY!r}, '-c', {script!r}]\n"
    )
