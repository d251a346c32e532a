"""The ``sluice`` CLI against a real local stack with authentication on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from tests.conftest import write_pipeline

TOKEN = "e2e-operator-token"
PIPELINE = """\
name: cli_demo
tasks:
  - id: load
    source: {{uri: "file://{data}/*.csv", format: csv}}
    destination: {{uri: "duckdb:///{db}", table: items}}
  - id: wait
    type: job
    depends_on: [load]
    command: ["{py}", "-c", "import time; time.sleep(float('{{{{ params.nap }}}}'))"]
params: {{nap: "0"}}
"""


def sluice(url: str, *args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SLUICE_TOKEN", "SLUICE_URL")}
    if token:
        env["SLUICE_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", *args, "--url", url],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def wait_status(url: str, run_id: str, wanted: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        out = sluice(url, "status", run_id).stdout
        if f": {wanted}" in out.splitlines()[0]:
            return out
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} never {wanted}: {out}")


def test_trigger_runs_status_cancel(stack_factory: Callable[..., Any], tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("id,name\n1,x\n2,y\n3,z\n")
    db = tmp_path / "out.duckdb"
    pipelines = tmp_path / "pipelines"
    write_pipeline(pipelines, PIPELINE.format(data=data, db=db, py=sys.executable))
    stack = stack_factory(pipelines, token=TOKEN)
    url = stack.url

    denied = sluice(url, "runs", token="wrong")
    assert denied.returncode == 1
    assert "HTTP 401" in denied.stderr

    done = sluice(url, "trigger", "cli_demo", "--param", "nap=0")
    assert done.returncode == 0, done.stderr
    done_id = done.stdout.split()[0]
    out = wait_status(url, done_id, "succeeded")
    assert "load" in out and "3 rows" in out
    with duckdb.connect(str(db), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM items").fetchall() == [(3,)]

    slow = sluice(url, "trigger", "cli_demo", "--param", "nap=60")
    slow_id = slow.stdout.split()[0]
    wait_status(url, slow_id, "running")
    cancelled = sluice(url, "cancel", slow_id)
    assert cancelled.returncode == 0, cancelled.stderr
    out = wait_status(url, slow_id, "cancelled", timeout=30)
    assert sluice(url, "status", slow_id).returncode == 1  # a cancelled run is not a success

    listing = sluice(url, "runs", "--pipeline", "cli_demo")
    assert listing.returncode == 0
    lines = listing.stdout.splitlines()
    assert lines[0].split()[:3] == ["RUN", "ID", "PIPELINE"]
    assert [line.split()[0] for line in lines[1:3]] == [slow_id, done_id]
    assert "cancelled" in lines[1] and "succeeded" in lines[2]

    missing = sluice(url, "trigger", "nope")
    assert missing.returncode == 1
    assert "pipeline_not_found" in missing.stderr
