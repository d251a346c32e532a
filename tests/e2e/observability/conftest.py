"""One real run through a local stack scraped by a real Prometheus, shared by this folder.

Two pipelines run once each: ``obs_sales`` loads two csv files into DuckDB, skips one ragged
row and quarantines the rows without a store id; ``obs_broken`` reads a ragged csv and fails with bad input.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from services.cli.stack import LocalStack
from tests.conftest import start_stack, trigger, wait_for_run, write_pipeline
from tests.deploy.observability.prom import RULES, Prometheus, run_prometheus, scrape_targets

SALES = """\
name: obs_sales
schedule: "0 0 1 1 *"  # yearly: exports a schedule interval, never fires during the test
tasks:
  - id: sales
    source:
      uri: file://{data}/sales/*.csv
      format: csv
      options: {{on_bad_row: skip}}
    transform:
      - cast: {{store_id: int64, amount: float64}}
      - check: {{not_null: [store_id]}}
        on_fail: quarantine
        max_reject_ratio: 0.5
    destination:
      uri: duckdb:///{duck}
      table: sales
"""
BROKEN = """\
name: obs_broken
tasks:
  - id: ragged
    source:
      uri: file://{data}/broken/*.csv
      format: csv
    destination:
      uri: duckdb:///{duck}
      table: ragged
"""
FILES, ROWS_PER_FILE = 2, 100


@dataclass
class ObservedRuns:
    stack: LocalStack
    prometheus: Prometheus
    duck: Path
    sales: dict[str, Any]
    broken: dict[str, Any]
    rows_read: int

    @property
    def log_dir(self) -> Path:
        return self.stack.config.workdir / self.stack.config.log_dir


def make_sales(directory: Path) -> int:
    directory.mkdir(parents=True)
    for f in range(FILES):
        lines = ["receipt,store_id,amount"]
        for r in range(ROWS_PER_FILE):
            store = "" if r % 10 == 3 else str(r % 7)  # every tenth row lacks its store id
            lines.append(f"R{f}-{r},{store},{r + 0.5}")
            if f == 0 and r == 50:
                lines.append("R0-ragged,1,2.5,an extra field")  # skipped by the extractor
        (directory / f"sales_{f}.csv").write_text("\n".join(lines) + "\n")
    return FILES * ROWS_PER_FILE


@pytest.fixture(scope="package")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObservedRuns]:
    workdir = tmp_path_factory.mktemp("obs-e2e")
    data = workdir / "data"
    rows_read = make_sales(data / "sales")
    (data / "broken").mkdir(parents=True)
    (data / "broken" / "ragged.csv").write_text("a,b,c\n1,2,3\n4,5,6\n7,8,9,10\n11,12,13\n")
    duck = workdir / "out.duckdb"
    pipelines = workdir / "pipelines"
    write_pipeline(pipelines, SALES.format(data=data, duck=duck), "sales.yaml")
    write_pipeline(pipelines, BROKEN.format(data=data, duck=workdir / "broken.duckdb"), "b.yaml")
    stack = start_stack(workdir, pipelines)
    try:
        targets = scrape_targets(stack)
        with run_prometheus(workdir / "prometheus", targets, [RULES]) as prometheus:
            prometheus.wait_scraped(targets)
            sales = wait_for_run(stack.url, trigger(stack.url, "obs_sales"))
            broken = wait_for_run(stack.url, trigger(stack.url, "obs_broken"))
            yield ObservedRuns(stack, prometheus, duck, sales, broken, rows_read)
    finally:
        stack.stop()
