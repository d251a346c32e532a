"""Trigger latency benchmark: HTTP trigger to the first unit starting, on an idle local stack.

Starts the four services as real processes (SQLite state, DuckDB destination, auth on), then
triggers one small pipeline N times, one run at a time, and reads the orchestrator's own
timestamps from ``GET /api/v1/runs/{id}``:

  - ``trigger -> running``:          run created (202 answered) to run claimed by the executor
  - ``trigger -> first unit start``: run created to the first unit's ``Load`` call starting
    (after Discover on the extractor and Status on the loader)
  - ``trigger -> run finished``:     to the final state (one small csv unit loaded)

As a baseline measured in the same run it times an authenticated ``GET /api/v1/runs/{id}``
round trip (the floor of any API call) and prints each latency as a multiple of it. The target
is "well under a second" for trigger -> first unit start.

Environment: SLUICE_BENCH_TRIGGERS (default 30).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.cli.stack import LocalStack, StackConfig  # noqa: E402
from services.orchestrator.auth import new_token  # noqa: E402

PIPELINE = """\
name: bench_trigger
tasks:
  - id: load
    source: {{uri: "file://{data}/*.csv", format: csv, incremental: false}}
    destination: {{uri: "duckdb:///{db}", table: items}}
"""


def seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def summary(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return statistics.median(ordered), p90, ordered[-1]


def main() -> int:
    count = int(os.environ.get("SLUICE_BENCH_TRIGGERS", "30"))
    with tempfile.TemporaryDirectory(prefix="sluice-bench-trigger-") as tmp:
        work = Path(tmp)
        data = work / "data"
        data.mkdir()
        (data / "items.csv").write_text("id,name\n" + "".join(f"{i},n{i}\n" for i in range(100)))
        pipelines = work / "pipelines"
        pipelines.mkdir()
        (pipelines / "p.yaml").write_text(PIPELINE.format(data=data, db=work / "out.duckdb"))
        token = new_token()
        with (
            LocalStack(StackConfig.private(work, pipelines, token=token)) as stack,
            httpx.Client(
                base_url=stack.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
            ) as client,
        ):
            to_running, to_unit, to_final, baseline = [], [], [], []
            for i in range(count + 1):  # the first run warms up connections and is dropped
                run_id = client.post("/api/v1/pipelines/bench_trigger/runs").json()["run_id"]
                while True:
                    started = time.perf_counter()
                    run = client.get(f"/api/v1/runs/{run_id}").json()
                    baseline.append(time.perf_counter() - started)
                    if run["status"] in ("succeeded", "failed", "cancelled"):
                        break
                    time.sleep(0.02)
                if run["status"] != "succeeded":
                    print(f"run {run_id} ended {run['status']}: {run['error']}", file=sys.stderr)
                    return 1
                if i == 0:
                    continue
                units = [u for t in run["tasks"] for u in t.get("units", [])]
                first_unit = min(u["started_at"] for u in units)
                to_running.append(seconds(run["created_at"], run["started_at"]))
                to_unit.append(seconds(run["created_at"], first_unit))
                to_final.append(seconds(run["created_at"], run["finished_at"]))
    base = statistics.median(baseline)
    print(f"trigger latency over {count} runs, idle local stack (SQLite state, auth on)")
    print(f"{'measure':32} {'median ms':>10} {'p90 ms':>8} {'max ms':>8} {'x API RTT':>10}")
    rows = [
        ("API round trip (baseline)", baseline),
        ("trigger -> running", to_running),
        ("trigger -> first unit start", to_unit),
        ("trigger -> run finished", to_final),
    ]
    for name, values in rows:
        median, p90, worst = summary(values)
        print(
            f"{name:32} {median * 1000:10.1f} {p90 * 1000:8.1f} {worst * 1000:8.1f} "
            f"{median / base:10.1f}"
        )
    verdict = "under" if summary(to_unit)[1] < 1.0 else "OVER"
    print(f"p90 trigger -> first unit start is {verdict} one second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
