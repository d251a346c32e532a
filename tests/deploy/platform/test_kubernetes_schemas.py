"""Every rendered object against the Kubernetes OpenAPI schemas (1.30 and the newest), strict,
and the prometheus-operator objects against their models."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.observability.prom import require_tool, unavailable
from tests.deploy.platform.chart import (
    ROOT,
    VALUES_CASES,
    find,
    objects_of,
    render_case,
    render_templates,
)

# The oldest version Chart.yaml accepts (kubeVersion), the reference 1.30, and the newest known.
OLDEST = re.search(r'kubeVersion: ">=(\d+\.\d+)', (ROOT / "helm/sluice/Chart.yaml").read_text())
VERSIONS = tuple(
    dict.fromkeys(
        [
            OLDEST.group(1) if OLDEST else "1.30",
            "1.30",
            kubernetes_validate.latest_version().rsplit(".", 1)[0],
        ]
    )
)
CRD_GROUP = "monitoring.coreos.com"
NODE_MODULES = ROOT / ".sluice" / "prom-models" / "node_modules"


def schema_problems(obj: dict[str, Any], version: str) -> str | None:
    """None when valid; otherwise a one-paragraph reason (never silently passes unknown kinds)."""
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return f"no {version} schema for {obj['apiVersion']} {obj['kind']} (unknown or removed API)"
    except kubernetes_validate.ValidationError as exc:
        cause = exc.caused_by if hasattr(exc, "caused_by") else exc
        where = "/".join(str(p) for p in getattr(cause, "absolute_path", []))
        message = getattr(cause, "message", str(exc).splitlines()[0])
        return f"at {where or '/'}: {message}"
    return None


# Custom resources, checked below against their own models or field lists.
CRD_GROUPS = (CRD_GROUP, "monitoring.googleapis.com")


def built_in(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["apiVersion"].split("/")[0] not in CRD_GROUPS]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", list(VALUES_CASES))
def test_objects_match_the_kubernetes_schema(case: str, version: str) -> None:
    problems = []
    for obj in built_in(render_case(case)):
        problem = schema_problems(obj, version)
        if problem:
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {problem}")
    assert not problems, "\n".join(problems)


def test_validation_is_strict_about_unknown_fields_and_kinds() -> None:
    # A typo inside a pass-through value (extra env) slips past values.schema.json: the
    # Kubernetes schema must catch it.
    values = {"loader": {"env": [{"name": "SLUICE_LOG__LEVEL", "valu": "DEBUG"}]}}
    objects = objects_of(render_templates(values))
    (loader,) = [
        o for o in objects if o["metadata"]["name"] == "sluice-loader" and o["kind"] == "Deployment"
    ]
    assert "valu" in (schema_problems(loader, "1.30") or "")
    bogus = {"apiVersion": "apps/v1", "kind": "Deploymnt", "metadata": {"name": "x"}}
    assert "no 1.30 schema" in (schema_problems(bogus, "1.30") or "")
    removed = {
        "apiVersion": "autoscaling/v2beta2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "x"},
    }
    assert schema_problems(removed, "1.30")


def kustomize(overlay: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the kustomize overlays cannot be built here")
    result = subprocess.run(
        [kubectl, "kustomize", str(overlay)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.mark.parametrize("overlay", ["local", "gke"])
def test_kustomize_overlays_build_and_validate(overlay: str) -> None:
    objects = kustomize(ROOT / "k8s" / "overlays" / overlay)
    assert all(
        o["metadata"].get("namespace") == "sluice" for o in objects if o["kind"] != "Namespace"
    )
    problems = [
        f"{o['kind']}/{o['metadata']['name']}: {p}"
        for o in objects
        for version in VERSIONS
        if (p := schema_problems(o, version))
    ]
    assert not problems, "\n".join(problems)
    images = {
        c["image"]
        for o in objects
        if o["kind"] == "Deployment"
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    if overlay == "gke":
        assert all(i.startswith("REGION-docker.pkg.dev/PROJECT_ID/sluice/") for i in images)
        sas = {
            o["metadata"]["name"]: o["metadata"].get("annotations", {})
            for o in find(objects, "ServiceAccount")
        }
        assert "iam.gke.io/gcp-service-account" in sas["sluice-loader"]
    else:
        assert {i for i in images if "sluice-" in i} == {
            f"sluice-{s}:dev" for s in ("extractor", "transformer", "loader", "orchestrator")
        }
        secrets = {o["metadata"]["name"] for o in find(objects, "Secret")}
        assert {"sluice-state", "sluice-auth"} <= secrets


def prometheus_operator_models() -> Path:
    """Install the npm models once under .sluice/ (idempotent); skip locally when npm cannot,
    fail under CI=true."""
    marker = NODE_MODULES / "@kubernetes-models" / "prometheus-operator" / "package.json"
    if marker.exists():
        return NODE_MODULES
    require_tool("node", "nodejs npm")
    npm = require_tool("npm", "nodejs npm")
    result = subprocess.run(
        [
            npm,
            "install",
            "--prefix",
            str(NODE_MODULES.parent),
            "--no-audit",
            "--no-fund",
            "@kubernetes-models/prometheus-operator@6",
            "js-yaml",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0 or not marker.exists():
        unavailable(
            f"npm install of @kubernetes-models/prometheus-operator failed: {result.stderr[-500:]}"
        )
    return NODE_MODULES


def validate_with_models(objects: list[dict[str, Any]]) -> list[dict[str, str]]:
    modules = prometheus_operator_models()
    script = Path(__file__).with_name("validate_prometheus_operator.mjs")
    result = subprocess.run(
        ["node", str(script), str(modules)],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_service_monitor_and_prometheus_rule_match_the_operator_models() -> None:
    objects = [o for o in render_case("monitoring") if o["apiVersion"] == f"{CRD_GROUP}/v1"]
    assert {o["kind"] for o in objects} >= {"ServiceMonitor"}
    assert validate_with_models(objects) == []
    # The models must actually reject bad input, or the check above proves nothing.
    (monitor,) = [o for o in objects if o["kind"] == "ServiceMonitor"]
    broken = json.loads(json.dumps(monitor))
    broken["spec"]["endpoints"][0]["interval"] = "thirty seconds"
    assert validate_with_models([broken]), "a malformed interval must be rejected"


# The models accept unknown fields, so the keys used are also checked against the CRDs' fields.
ENDPOINT_KEYS = {
    "port",
    "path",
    "interval",
    "scrapeTimeout",
    "scheme",
    "relabelings",
    "metricRelabelings",
    "honorLabels",
    "tlsConfig",
    "targetPort",
}
RULE_KEYS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}


def test_operator_objects_use_only_known_fields() -> None:
    for obj in render_case("monitoring"):
        if obj["kind"] == "ServiceMonitor":
            assert set(obj["spec"]) <= {"selector", "namespaceSelector", "endpoints", "jobLabel"}
            for endpoint in obj["spec"]["endpoints"]:
                assert set(endpoint) <= ENDPOINT_KEYS, endpoint
        if obj["kind"] == "PrometheusRule":
            for group in obj["spec"]["groups"]:
                assert set(group) <= {"name", "interval", "rules", "limit", "labels"}, group.keys()
                for rule in group["rules"]:
                    assert set(rule) <= RULE_KEYS, rule
                    assert ("alert" in rule) != ("record" in rule)


def test_gke_pod_monitoring_uses_only_known_fields() -> None:
    (monitor,) = find(render_case("gke"), "PodMonitoring")
    assert monitor["apiVersion"] == "monitoring.googleapis.com/v1"
    assert set(monitor["spec"]) <= {
        "selector",
        "endpoints",
        "targetLabels",
        "limits",
        "filterRunning",
    }
    for endpoint in monitor["spec"]["endpoints"]:
        assert set(endpoint) <= {
            "port",
            "path",
            "interval",
            "timeout",
            "scheme",
            "params",
            "metricRelabeling",
        }
        assert re.fullmatch(r"[0-9]+(ms|s|m|h)", endpoint["interval"])
    ports = {
        p["name"]
        for d in find(render_case("gke"), "Deployment")
        for c in d["spec"]["template"]["spec"]["containers"]
        for p in c["ports"]
    }
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
    assert not find(render_case("defaults"), "PodMonitoring")
