"""The chart ships the observability files unchanged, and the names the rules and dashboards rely
on (scrape job = Service name, pod labels Filebeat filters on) hold in the rendered manifests."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.deploy.observability.prom import (
    DASHBOARDS,
    FILES,
    load_dashboards,
    load_rules,
)
from tests.deploy.platform.chart import find, objects_of, render_templates

ENABLED = {
    "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
    "dashboards": {"enabled": True},
    "filebeat": {"enabled": True},
}
# The job selector shared by SluiceServiceDown and the "Replicas up" panel.
JOB_RE = re.compile(r".*(extractor|transformer|loader|orchestrator).*")


@pytest.fixture(scope="module", params=["sluice", "warehouse-etl"])
def manifests(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return objects_of(render_templates(ENABLED, release=request.param))


def test_prometheus_rule_carries_the_rule_file_and_not_its_tests(
    manifests: list[dict[str, Any]],
) -> None:
    (rule,) = find(manifests, "PrometheusRule")
    groups = rule["spec"]["groups"]
    assert (
        groups
        == yaml.safe_load((FILES / "prometheus" / "sluice-alerts.yaml").read_text())["groups"]
    )
    assert len([r for g in groups for r in g["rules"]]) == len(load_rules())


def test_dashboards_are_shipped_verbatim(manifests: list[dict[str, Any]]) -> None:
    shipped = {}
    for cm in find(manifests, "ConfigMap"):
        for key, value in cm.get("data", {}).items():
            if key.endswith(".json"):
                shipped[key] = json.loads(value)
    assert shipped == load_dashboards(), f"expected the files of {DASHBOARDS}"


def test_filebeat_config_is_shipped_verbatim(manifests: list[dict[str, Any]]) -> None:
    configs = [
        yaml.safe_load(cm["data"]["filebeat.yml"])
        for cm in find(manifests, "ConfigMap")
        if "filebeat.yml" in cm.get("data", {})
    ]
    assert configs == [yaml.safe_load((FILES / "filebeat" / "filebeat.yml").read_text())]


def test_scrape_jobs_match_the_job_selector(manifests: list[dict[str, Any]]) -> None:
    (monitor,) = find(manifests, "ServiceMonitor")
    wanted = monitor["spec"]["selector"]["matchLabels"]
    ports = {e["port"] for e in monitor["spec"]["endpoints"]}
    scraped = [
        svc
        for svc in find(manifests, "Service")
        if wanted.items() <= svc["metadata"].get("labels", {}).items()
        and ports & {p.get("name") for p in svc["spec"]["ports"]}
    ]
    # The operator names the job after the Service (no jobLabel is set).
    assert "jobLabel" not in monitor["spec"]
    names = sorted(svc["metadata"]["name"] for svc in scraped)
    assert len(names) == 4, names
    for component in ("extractor", "transformer", "loader", "orchestrator"):
        assert [n for n in names if JOB_RE.fullmatch(n) and component in n], (component, names)


def test_sluice_pods_carry_the_labels_filebeat_keeps(manifests: list[dict[str, Any]]) -> None:
    pods = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in manifests
        if d["kind"] in ("Deployment", "DaemonSet")
    }
    services = {n: labels for n, labels in pods.items() if not n.endswith("filebeat")}
    assert len(services) == 4, sorted(pods)
    for labels in services.values():
        assert labels["app.kubernetes.io/part-of"] == "sluice"
        assert labels["app.kubernetes.io/component"] != "filebeat"
    (filebeat,) = [labels for n, labels in pods.items() if n.endswith("filebeat")]
    assert filebeat["app.kubernetes.io/component"] == "filebeat"
