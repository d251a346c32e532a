"""A live local stack scraped by a real Prometheus, shared by the tests of this folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.cli.stack import LocalStack
from tests.conftest import start_stack, write_pipeline
from tests.deploy.observability.prom import (
    Prometheus,
    exported_families,
    exported_names,
    run_prometheus,
    scrape_stack,
    scrape_targets,
)

PIPELINE = """\
name: hourly_inventory
schedule: "@hourly"
tasks:
  - id: stock
    source: {{uri: "file://{data}/*.csv", format: csv}}
    destination: {{uri: "duckdb:///{data}/out.duckdb", table: stock}}
"""


@pytest.fixture(scope="package")
def live_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The four services as real processes, one scheduled pipeline loaded."""
    workdir = tmp_path_factory.mktemp("obs-stack")
    data = workdir / "data"
    data.mkdir()
    pipelines = workdir / "pipelines"
    write_pipeline(pipelines, PIPELINE.format(data=data))
    stack = start_stack(workdir, pipelines)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="package")
def expositions(live_stack: LocalStack) -> dict[str, str]:
    """{job: text} scraped from the live stack's /metrics endpoints."""
    return scrape_stack(live_stack)


@pytest.fixture(scope="package")
def all_exported(expositions: dict[str, str]) -> set[str]:
    """Every series name the live stack can expose (histogram _bucket etc. included)."""
    return {name for text in expositions.values() for name in exported_names(text)}


@pytest.fixture(scope="package")
def families(expositions: dict[str, str]) -> dict[str, str]:
    """{sluice_* family as exposed: type} over the four services."""
    found: dict[str, str] = {}
    for text in expositions.values():
        for name, kind in exported_families(text).items():
            # prometheus_client exposes counters' and histograms' _created as gauge families
            if name.startswith("sluice_") and not name.endswith("_created"):
                found[name] = kind
    return found


@pytest.fixture(scope="package")
def prometheus(
    live_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    """A real Prometheus scraping the live stack."""
    targets = scrape_targets(live_stack)
    with run_prometheus(tmp_path_factory.mktemp("prometheus"), targets) as server:
        server.wait_scraped(targets)
        yield server
