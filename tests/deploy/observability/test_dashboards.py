"""Grafana dashboards: fixed uids, a datasource variable, and PromQL a real Prometheus accepts
that only names metrics the services really export (read from a live /metrics scrape)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.observability.prom import (
    Prometheus,
    dashboard_panels,
    dashboard_queries,
    load_dashboards,
    metric_names,
    substitute,
)

DASHBOARDS = load_dashboards()
EXPECTED_UIDS = {
    "sluice-pipelines.json": "sluice-pipelines",
    "sluice-services.json": "sluice-services",
}
# Series Prometheus itself adds to every target.
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
QUERIES = [
    pytest.param(expr, id=f"{name}:{title}")
    for name, dashboard in DASHBOARDS.items()
    for title, expr in dashboard_queries(dashboard)
]


def test_the_two_dashboards_exist_with_fixed_uids() -> None:
    assert {name: d["uid"] for name, d in DASHBOARDS.items()} == EXPECTED_UIDS
    for dashboard in DASHBOARDS.values():
        assert len(dashboard["uid"]) <= 40  # Grafana's limit
        assert dashboard["title"].startswith("Sluice / ")
        assert "sluice" in dashboard["tags"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_panel_uses_the_datasource_variable(name: str) -> None:
    dashboard = DASHBOARDS[name]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = []
    for panel in dashboard_panels(dashboard):
        ids.append(panel["id"])
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_the_overview_shows_what_the_issue_asks_for() -> None:
    titles = {p["title"] for p in dashboard_panels(DASHBOARDS["sluice-pipelines.json"])}
    assert {"Runs by status", "Rows loaded per second", "Rejected rows per second"} <= titles
    assert any(t.startswith("Freshness") for t in titles)
    services = DASHBOARDS["sluice-services.json"]
    kinds = {p["type"] for p in dashboard_panels(services)}
    assert "heatmap" in kinds
    titles = {p["title"] for p in dashboard_panels(services)}
    assert {"Rows per second by stage", "gRPC errors by code", "Replicas up"} <= titles


@pytest.mark.parametrize("expr", QUERIES)
def test_prometheus_accepts_the_query(prometheus: Prometheus, expr: str) -> None:
    reply = prometheus.query(substitute(expr))
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "success"


@pytest.mark.parametrize("expr", QUERIES)
def test_the_query_names_only_exported_metrics(all_exported: set[str], expr: str) -> None:
    names = metric_names(expr)
    assert names, f"no metric found in {expr!r}"
    unknown = names - all_exported - SYNTHETIC
    assert not unknown, f"{sorted(unknown)} are not exported by any service"


def test_replica_panel_sees_the_four_services(prometheus: Prometheus) -> None:
    # The job selector the dashboards and alerts share matches the jobs of a real scrape.
    panel: Any = next(
        p
        for p in dashboard_panels(DASHBOARDS["sluice-services.json"])
        if p["title"] == "Replicas up"
    )
    up = prometheus.values(substitute(panel["targets"][0]["expr"]), "job")
    assert up == {
        "sluice-extractor": 1.0,
        "sluice-transformer": 1.0,
        "sluice-loader": 1.0,
        "sluice-orchestrator": 1.0,
    }


def test_the_pipeline_variable_lists_loaded_pipelines(prometheus: Prometheus) -> None:
    # label_values(sluice_runs_total, pipeline) must know a pipeline before its first run.
    variable = next(
        v
        for v in DASHBOARDS["sluice-pipelines.json"]["templating"]["list"]
        if v["name"] == "pipeline"
    )
    assert variable["definition"] == "label_values(sluice_runs_total, pipeline)"
    series = prometheus.vector("count by (pipeline) (sluice_runs_total)")
    assert {s["metric"]["pipeline"] for s in series} == {"hourly_inventory"}
