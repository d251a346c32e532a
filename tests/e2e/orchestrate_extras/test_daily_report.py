"""The example daily-report pipeline through the real stack, and the run page in Chromium.

A stand-in portal serves the report; the job fetches it, the etl task loads it (quarantining a
refund line), the sql task rebuilds the summary in DuckDB, the webhook receives the rejects alert,
and headless Chromium renders the run page (screenshots in test-artifacts/orchestrate_extras/).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from services.cli.stack import free_port
from tests.conftest import ROOT, trigger, wait_for, wait_for_run

ARTIFACTS = ROOT / "test-artifacts" / "orchestrate_extras"
DAY = date(2026, 11, 20)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def expected_report(day: date) -> list[list[str]]:
    """The rows the portal serves for ``day``, computed by the portal's own code."""
    spec = importlib.util.spec_from_file_location("portal", ROOT / "examples/jobs/portal.py")
    assert spec and spec.loader
    portal = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(portal)
    text: str = portal.report(day).decode()
    return [line.split(";") for line in text.splitlines()[1:]]


@pytest.fixture
def portal() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "examples/jobs/portal.py"), "--port", str(port)],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    process.stdout.readline()  # "portal on http://..." once it listens
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/slack", received
    server.shutdown()
    server.server_close()


def chromium(args: list[str], profile: Path) -> str:
    assert CHROMIUM, "chromium is required (Debian package chromium; see .ci/apt-packages.txt)"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


def test_daily_report_pipeline_and_run_page(
    stack_factory: Any,
    tmp_path: Path,
    portal: str,
    webhook: tuple[str, list[dict[str, Any]]],
) -> None:
    webhook_url, received = webhook
    # The stack runs in tmp_path like a checkout: the job script at the path the pipeline names.
    shutil.copytree(ROOT / "examples/jobs", tmp_path / "examples/jobs")
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    text = (ROOT / "examples/pipelines/daily_report.yaml").read_text()
    assert "rejects_threshold: 5" in text
    # Alert on any reject here, so one refund line is enough to see the rejects alert.
    (pipelines / "daily_report.yaml").write_text(
        text.replace("rejects_threshold: 5", "rejects_threshold: 0")
    )
    stack = stack_factory(pipelines, extra_env={"DAILY_REPORT_ALERT_WEBHOOK": webhook_url})

    body = {"params": {"portal_url": portal}, "logical_date": f"{DAY}T06:00:00Z"}
    run_id = trigger(stack.url, "daily-report", **body)
    run = wait_for_run(stack.url, run_id, timeout=180)
    tasks = {t["task_id"]: t for t in run["tasks"]}
    assert run["status"] == "succeeded", run
    assert "fetched" in tasks["fetch_report"]["output"]
    assert (tmp_path / ".sluice/landing/daily_report/report_20261120.csv").exists()

    rows = expected_report(DAY)
    refunds = [r for r in rows if r[4].startswith("-")]
    assert len(refunds) == 1
    assert tasks["load_report"]["rows_loaded"] == len(rows) - 1
    assert tasks["load_report"]["rows_rejected"] == 1

    with duckdb.connect(str(tmp_path / ".sluice/demo.duckdb"), read_only=True) as con:
        lines, revenue = con.execute(
            "SELECT sum(lines), sum(revenue) FROM report_daily_summary WHERE day = ?", [DAY]
        ).fetchone()  # type: ignore[misc]
    assert lines == len(rows) - 1
    good = [r for r in rows if not r[4].startswith("-")]
    assert revenue == sum(Decimal(r[4].replace(",", ".")) for r in good)

    wait_for(lambda: bool(received), 30, "the rejects alert")
    kinds = [m["sluice"]["kind"] for m in received]
    assert kinds == ["rejects"], received
    assert "1 rows rejected (threshold 0)" in received[0]["text"]

    # The same day again: the file is unchanged and the ledger skips it; the summary is rebuilt.
    again = wait_for_run(stack.url, trigger(stack.url, "daily-report", **body), timeout=180)
    assert again["status"] == "succeeded"
    assert "already up to date" in again["tasks"][0]["output"]
    assert again["tasks"][1]["rows_loaded"] == 0

    # The run page in a real browser: DOM content, then screenshots kept as artifacts.
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    profile = tmp_path / "chromium"
    dom = chromium(["--dump-dom", f"{stack.url}/"], profile)
    assert "Sluice runs" in dom
    assert "daily-report" in dom
    pipelines_section = dom.split('id="pipelines"')[1]
    assert f'href="/runs/{again["run_id"]}"' in pipelines_section  # the last run
    assert '<span class="s succeeded">succeeded</span>' in pipelines_section
    assert 'http-equiv="refresh"' in dom
    dom = chromium(["--dump-dom", f"{stack.url}/runs/{run_id}"], profile)
    for expected in ("fetch_report", "load_report", "summarise", "report_20261120.csv"):
        assert expected in dom
    for name, path in (("run_page.png", "/"), ("run_detail.png", f"/runs/{run_id}")):
        target = ARTIFACTS / name
        target.unlink(missing_ok=True)
        chromium([f"--screenshot={target}", f"{stack.url}{path}"], profile)
        assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert target.stat().st_size > 10_000
    # Nothing on the pages comes from elsewhere: no scripts, no external stylesheets.
    page = httpx.get(f"{stack.url}/", timeout=10).text
    assert "<script" not in page and "http://" not in page.split("</head>")[0]
