"""A live local stack scraped by a real Prometheus, shared by the tests of this folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.cli.stack import LocalStack, Ports, StackConfig
from tests.conftest import write_pipeline
from tests.deploy.observability.prom import Prometheus, run_prometheus, scrape_stack, scrape_targets

PIPELINE = """\
name: hourly_inventory
schedule: "@hourly"
tasks:
  - id: stock
    source: {{uri: "file://{data}/*.csv", format: csv}}
    destination: {{uri: "duckdb:///{data}/out.duckdb", table: stock}}
"""


@pytest.fixture(scope="session")
def live_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The four services as real processes, one scheduled pipeline loaded."""
    workdir = tmp_path_factory.mktemp("obs-stack")
    data = workdir / "data"
    data.mkdir()
    pipelines = workdir / "pipelines"
    write_pipeline(pipelines, PIPELINE.format(data=data))
    stack = LocalStack(
        StackConfig(
            pipelines_dir=pipelines,
            state_url=f"sqlite:///{workdir / 'state.db'}",
            workdir=workdir,
            ports=Ports.free(),
            log_dir=Path("logs"),
        )
    )
    stack.start(timeout=90)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def exported(live_stack: LocalStack) -> dict[str, dict[str, str]]:
    """{job: {series name: type}} scraped from the live stack's /metrics endpoints."""
    return scrape_stack(live_stack)


@pytest.fixture(scope="session")
def all_exported(exported: dict[str, dict[str, str]]) -> set[str]:
    return {name for names in exported.values() for name in names}


@pytest.fixture(scope="session")
def prometheus(
    live_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    """A real Prometheus scraping the live stack."""
    targets = scrape_targets(live_stack)
    with run_prometheus(tmp_path_factory.mktemp("prometheus"), targets) as server:
        server.wait_scraped(targets)
        yield server
