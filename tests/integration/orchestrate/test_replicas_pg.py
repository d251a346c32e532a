"""Several orchestrators on the real PostgreSQL: migrations, the lease, failover."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from services.cli.stack import free_ports
from services.orchestrator.auth import hash_token
from services.orchestrator.state.migrate import alembic_config, current_revision, head_revision
from services.orchestrator.state.models import Base
from services.orchestrator.state.store import Store
from tests.conftest import wait_for
from tests.integration.orchestrate.conftest import auth, job, job_pipeline, wait_final

TOKEN = "replica-test-token"


def test_concurrent_migrations_reach_head_once(pg_url: str) -> None:
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            store = Store(pg_url)
            store.migrate()
            store.engine.dispose()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    store = Store(pg_url)
    assert current_revision(store.engine) == head_revision()
    with store.engine.connect() as conn:
        # The migrated schema is exactly what the models declare.
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    store.engine.dispose()


def test_database_from_before_migrations_is_upgraded_in_place(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'old.db'}")
    with store.engine.connect() as conn:
        command.upgrade(alembic_config(conn), "0001")
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(
            text(
                "INSERT INTO runs (id, pipeline, trigger, logical_date, params, status, created_at)"
                " VALUES ('old', 'p', 'api', '2026-01-01', '{}', 'succeeded', '2026-01-01')"
            )
        )
        conn.commit()
    store.migrate()
    assert current_revision(store.engine) == head_revision()
    assert store.get_run("old")["status"] == "succeeded"
    assert store.get_run("old")["cancel_requested"] is False


def test_only_one_holder_of_the_lease(pg_url: str) -> None:
    store = Store(pg_url)
    store.migrate()
    assert store.acquire_lease("scheduler", "a", 1.0)
    assert not store.acquire_lease("scheduler", "b", 1.0)
    assert store.acquire_lease("scheduler", "a", 1.0)  # renewal
    time.sleep(1.2)
    assert store.acquire_lease("scheduler", "b", 30.0)  # expired: b takes over
    assert not store.acquire_lease("scheduler", "a", 30.0)
    assert store.lease_holder("scheduler") == "b"
    store.engine.dispose()


class Orchestrator:
    def __init__(
        self, name: str, state_url: str, pipelines: Path, logs: Path, ports: list[int]
    ) -> None:
        """``ports``: three free ones (HTTP, and the unused data-plane targets)."""
        self.name = name
        self.port, extractor_port, loader_port = ports
        self.url = f"http://127.0.0.1:{self.port}"
        tokens = [{"name": "test", "sha256": hash_token(TOKEN), "role": "operator"}]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        env.update(
            {
                "SLUICE_HTTP__HOST": "127.0.0.1",
                "SLUICE_HTTP__PORT": str(self.port),
                "SLUICE_STATE__URL": state_url,
                "SLUICE_PIPELINES__DIR": str(pipelines),
                "SLUICE_AUTH__TOKENS": json.dumps(tokens),
                "SLUICE_SCHEDULER__REPLICA_ID": name,
                "SLUICE_SCHEDULER__LEASE_SECONDS": "2",
                "SLUICE_EXECUTION__POLL_SECONDS": "0.2",
                "SLUICE_EXECUTION__HEARTBEAT_SECONDS": "0.5",
                "SLUICE_EXECUTION__HEARTBEAT_TIMEOUT_SECONDS": "3",
                "SLUICE_LOG__FORMAT": "console",
                # No data-plane services: these pipelines only run job tasks.
                "SLUICE_EXTRACTOR__TARGET": f"127.0.0.1:{extractor_port}",
                "SLUICE_LOADER__TARGET": f"127.0.0.1:{loader_port}",
            }
        )
        self.log = (logs / f"{name}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.orchestrator"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.client = httpx.Client(base_url=self.url, headers=auth(TOKEN), timeout=10)

    def wait_up(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"{self.name} exited"
            try:
                if self.client.get("/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.name} did not start")

    def leader(self) -> bool:
        return bool(self.client.get("/api/v1/config").json()["leader"])

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(30)
        self.client.close()
        self.log.close()


@pytest.fixture
def two_orchestrators(pg_url: str, tmp_path: Path) -> Iterator[tuple[Any, Path]]:
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    marks = tmp_path / "marks"
    marks.mkdir()
    script = (
        "import os, sys, time; "
        f"open(os.path.join({str(marks)!r}, str(os.getpid())), 'w').write(sys.argv[1] "
        "if len(sys.argv) > 1 else ''); time.sleep(float(os.environ.get('NAP', '0')))"
    )
    (pipelines / "p.yaml").write_text(
        job_pipeline(
            "work", job("only", script, extra="    env: {NAP: '{{ params.nap }}'}\n")
        ).replace("name: work\n", "name: work\nparams: {nap: '0'}\n")
    )
    # All six ports at once: picked one by one, beta could get the port alpha has not bound yet.
    ports = free_ports(6)
    nodes = [
        Orchestrator(n, pg_url, pipelines, tmp_path, ports[i * 3 : i * 3 + 3])
        for i, n in enumerate(("alpha", "beta"))
    ]
    try:
        for node in nodes:
            node.wait_up()
        yield nodes, marks
    finally:
        for node in nodes:
            node.stop()
        for mark in marks.iterdir():  # jobs orphaned by a killed orchestrator
            with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                os.killpg(int(mark.name), signal.SIGKILL)


def test_one_leader_executes_and_a_survivor_takes_over_a_dead_leaders_run(
    two_orchestrators: tuple[list[Orchestrator], Path],
) -> None:
    nodes, _marks = two_orchestrators
    wait_for(lambda: sum(n.leader() for n in nodes) == 1, 30, "a single leader", poll=0.2)
    leader = next(n for n in nodes if n.leader())
    follower = next(n for n in nodes if n is not leader)

    # A trigger on the follower is executed by the leader.
    run_id = follower.client.post("/api/v1/pipelines/work/runs").json()["run_id"]
    run = wait_final(follower.client, run_id, 90)
    assert (run["status"], run["owner"]) == ("succeeded", leader.name)

    # The leader dies (SIGKILL: no goodbye) in the middle of a run.
    body = {"params": {"nap": "5"}}
    run_id = follower.client.post("/api/v1/pipelines/work/runs", json=body).json()["run_id"]
    wait_for(
        lambda: (
            follower.client.get(f"/api/v1/runs/{run_id}").json()["tasks"][0]["status"] == "running"
        ),
        30,
        "the run to start",
    )
    killed_at = datetime.now(UTC)
    leader.stop(signal.SIGKILL)

    run = wait_final(follower.client, run_id, 90)
    assert run["status"] == "succeeded"
    assert run["owner"] == follower.name
    assert datetime.fromisoformat(run["tasks"][0]["finished_at"]) > killed_at
    assert follower.leader()
