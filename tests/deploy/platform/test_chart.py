"""What the rendered chart promises: workloads, headless gRPC Services, HPA, PDB, RBAC,
NetworkPolicies, security, probes, draining, secrets by reference, monitoring switches."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from tests.deploy.platform.chart import (
    CHART,
    GRPC_SERVICES,
    NAMESPACE,
    SERVICES,
    VALUES_CASES,
    copy_chart,
    env_of,
    find,
    notes_of,
    objects_of,
    one,
    pod_specs,
    render_case,
    render_templates,
)

CASES = list(VALUES_CASES)
PORTS = {"extractor": 50051, "transformer": 50052, "loader": 50053, "orchestrator": 8080}


def container(objects: list[dict[str, Any]], svc: str) -> dict[str, Any]:
    deployment = one(objects, "Deployment", f"sluice-{svc}")
    (main,) = deployment["spec"]["template"]["spec"]["containers"]
    return main


@pytest.mark.parametrize("case", CASES)
def test_four_deployments_with_their_images(case: str) -> None:
    objects = render_case(case)
    names = sorted(d["metadata"]["name"] for d in find(objects, "Deployment"))
    assert names == sorted(f"sluice-{s}" for s in SERVICES)
    for svc in SERVICES:
        image = container(objects, svc)["image"]
        assert f"sluice-{svc}" in image
        assert not image.endswith(":latest") and (":" in image.rsplit("/", 1)[1] or "@" in image)


@pytest.mark.parametrize("case", CASES)
def test_grpc_services_are_headless_and_clients_use_dns_round_robin(case: str) -> None:
    objects = render_case(case)
    for svc in GRPC_SERVICES:
        service = one(objects, "Service", f"sluice-{svc}")
        assert service["spec"]["clusterIP"] == "None", f"{svc} Service must be headless"
        ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
        assert ports["grpc"] == PORTS[svc]
    upstreams = {
        "transformer": {"EXTRACTOR": "extractor"},
        "loader": {"TRANSFORMER": "transformer", "EXTRACTOR": "extractor"},
        "orchestrator": {"LOADER": "loader", "EXTRACTOR": "extractor"},
    }
    for client, targets in upstreams.items():
        env = env_of(container(objects, client))
        for section, svc in targets.items():
            assert env[f"SLUICE_{section}__TARGET"]["value"] == f"dns:///sluice-{svc}:{PORTS[svc]}"
            assert env[f"SLUICE_{section}__LOAD_BALANCING"]["value"] == "round_robin"


@pytest.mark.parametrize("case", CASES)
def test_orchestrator_service_and_optional_ingress(case: str) -> None:
    objects = render_case(case)
    service = one(objects, "Service", "sluice-orchestrator")
    assert service["spec"].get("clusterIP") != "None"
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    ingresses = find(objects, "Ingress")
    enabled = case in ("production", "gke")
    assert bool(ingresses) == enabled
    for ingress in ingresses:
        backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        assert backend["name"] == "sluice-orchestrator"


@pytest.mark.parametrize("case", CASES)
def test_hpa_owns_replicas_when_enabled(case: str) -> None:
    objects = render_case(case)
    hpas = {
        h["spec"]["scaleTargetRef"]["name"]: h for h in find(objects, "HorizontalPodAutoscaler")
    }
    for svc in SERVICES:
        deployment = one(objects, "Deployment", f"sluice-{svc}")
        hpa = hpas.get(f"sluice-{svc}")
        if hpa is None:
            assert deployment["spec"]["replicas"] >= 1
            continue
        assert hpa["apiVersion"] == "autoscaling/v2"
        # With an HPA the Deployment must not carry replicas: an upgrade would reset the count.
        assert "replicas" not in deployment["spec"]
        assert hpa["spec"]["maxReplicas"] >= hpa["spec"]["minReplicas"] >= 1
        cpu = [m for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
        assert cpu and cpu[0]["resource"]["name"] == "cpu"
    if case == "no-autoscaling":
        assert not hpas
    if case == "defaults":
        assert sorted(hpas) == sorted(f"sluice-{s}" for s in GRPC_SERVICES)


def test_hpa_passes_custom_metrics_through() -> None:
    hpa = one(render_case("production"), "HorizontalPodAutoscaler", "sluice-extractor")
    pods = [m for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    # A series the extractor really exports (docs/metrics.md), narrowed to its Pull streams.
    assert pods[0]["pods"]["metric"] == {
        "name": "sluice_grpc_server_inflight_streams",
        "selector": {"matchLabels": {"service": "extractor", "method": "Pull"}},
    }


def test_hpa_without_any_metric_fails_with_a_clear_message() -> None:
    values = {"loader": {"autoscaling": {"targetCPUUtilizationPercentage": 0}}}
    with pytest.raises(helm_python.HelmError, match=r"loader\.autoscaling: set targetCPU"):
        render_templates(values)


@pytest.mark.parametrize("case", CASES)
def test_pdbs_select_their_deployments(case: str) -> None:
    objects = render_case(case)
    for pdb in find(objects, "PodDisruptionBudget"):
        deployment = one(objects, "Deployment", pdb["metadata"]["name"])
        assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
        assert "maxUnavailable" in pdb["spec"]


@pytest.mark.parametrize("case", CASES)
def test_pods_are_hardened(case: str) -> None:
    objects = render_case(case)
    for obj, spec in pod_specs(objects):
        if obj["metadata"]["name"].endswith("-filebeat"):
            continue  # reads root-owned node logs; checked in test_filebeat_is_read_only
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] > 0
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert set(c["resources"]["limits"]) >= {"cpu", "memory"}
            assert set(c["resources"]["requests"]) >= {"cpu", "memory"}
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            volumes = {v["name"]: v for v in spec["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], "/tmp must be a writable emptyDir"


def test_filebeat_is_read_only() -> None:
    (ds,) = find(render_case("monitoring"), "DaemonSet")
    c = ds["spec"]["template"]["spec"]["containers"][0]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert all(m.get("readOnly") for m in c["volumeMounts"] if m["name"] == "varlog")


@pytest.mark.parametrize("case", CASES)
def test_probes_are_native_grpc_or_http(case: str) -> None:
    objects = render_case(case)
    for svc in GRPC_SERVICES:
        c = container(objects, svc)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["grpc"]["port"] == env_int(c, "SLUICE_GRPC__PORT")
    c = container(objects, "orchestrator")
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["livenessProbe"]["httpGet"]["port"] == "http"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["http"] == env_int(c, "SLUICE_HTTP__PORT")


def env_int(c: dict[str, Any], name: str) -> int:
    return int(env_of(c)[name]["value"])


@pytest.mark.parametrize("case", CASES)
def test_grace_period_covers_prestop_and_unit_drain(case: str) -> None:
    objects = render_case(case)
    for svc in SERVICES:
        deployment = one(objects, "Deployment", f"sluice-{svc}")
        spec = deployment["spec"]["template"]["spec"]
        c = spec["containers"][0]
        pre_stop = int(c["lifecycle"]["preStop"]["exec"]["command"][1])
        drain = (
            30.0
            if svc == "orchestrator"
            else float(env_of(c)["SLUICE_GRPC__GRACE_SECONDS"]["value"])
        )
        assert spec["terminationGracePeriodSeconds"] > pre_stop + drain


def test_orchestrator_drain_matches_uvicorn_shutdown_timeout() -> None:
    # The orchestrator's grace period assumes uvicorn's graceful-shutdown timeout (drainSeconds).
    source = (CHART.parents[1] / "services" / "orchestrator" / "__main__.py").read_text()
    match = re.search(r"timeout_graceful_shutdown=([0-9.]+)", source)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    if match:
        assert float(match.group(1)) <= values["orchestrator"]["drainSeconds"]


@pytest.mark.parametrize("case", CASES)
def test_secrets_only_by_reference(case: str) -> None:
    objects = render_case(case)
    assert not find(objects, "Secret"), "the chart must not create Secrets (secrets by reference)"
    env = env_of(container(objects, "orchestrator"))
    state = env["SLUICE_STATE__URL"]
    assert "value" not in state and state["valueFrom"]["secretKeyRef"]["name"]


def test_pipeline_secrets_mounted_where_secret_references_resolve() -> None:
    objects = render_case("production")
    assert container(objects, "orchestrator")["envFrom"] == [
        {"secretRef": {"name": "sluice-pipeline-secrets"}}
    ]
    assert "envFrom" not in container(render_case("defaults"), "orchestrator")
    for svc in ("extractor", "transformer", "loader"):
        c = container(objects, svc)
        assert env_of(c)["SLUICE_SECRETS_DIR"]["value"] == "/etc/sluice/secrets"
        assert {
            "mountPath": "/etc/sluice/secrets",
            "name": "pipeline-secrets",
            "readOnly": True,
        } in c["volumeMounts"]


@pytest.mark.parametrize("case", CASES)
def test_pipelines_configmap_mounted_at_pipelines_dir(case: str) -> None:
    objects = render_case(case)
    deployment = one(objects, "Deployment", "sluice-orchestrator")
    spec = deployment["spec"]["template"]["spec"]
    c = spec["containers"][0]
    directory = env_of(c)["SLUICE_PIPELINES__DIR"]["value"]
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == directory)
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    configmap = one(objects, "ConfigMap", volume["configMap"]["name"])
    if case == "production":
        pipeline = yaml.safe_load(configmap["data"]["daily_sales.yaml"])
        assert pipeline["name"] == "daily_sales"
        assert "{{ ds }}" in pipeline["tasks"][0]["source"]["uri"], "templating must reach the file"


def test_pipeline_file_names_are_checked() -> None:
    values = {"orchestrator": {"pipelines": {"files": {"../evil.yaml": "name: x"}}}}
    with pytest.raises(helm_python.HelmError, match="is not a pipeline file name"):
        render_templates(values)


def test_job_rbac_is_least_privilege() -> None:
    objects = render_case("defaults")
    role = one(objects, "Role", "sluice-orchestrator-jobs")
    rules = {
        (g, r): sorted(rule["verbs"])
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert rules == {
        ("batch", "jobs"): ["create", "delete", "get", "list", "watch"],
        ("", "pods"): ["get", "list"],
        ("", "pods/log"): ["get"],
        ("", "events"): ["list"],
    }
    binding = one(objects, "RoleBinding", "sluice-orchestrator-jobs")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "sluice-orchestrator", "namespace": NAMESPACE}
    ]
    assert not find(objects, "ClusterRole"), "job tasks need no cluster-wide rights"
    env = env_of(container(objects, "orchestrator"))
    assert env["SLUICE_JOBS__RUNNER"]["value"] == "kubernetes"
    assert (
        env["SLUICE_JOBS__NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    )
    job_sa = one(objects, "ServiceAccount", env["SLUICE_JOBS__SERVICE_ACCOUNT"]["value"])
    assert job_sa["automountServiceAccountToken"] is False
    # Only the orchestrator pod gets an API token.
    tokens = {
        o["metadata"]["name"]: s["automountServiceAccountToken"] for o, s in pod_specs(objects)
    }
    assert tokens == {
        "sluice-extractor": False,
        "sluice-transformer": False,
        "sluice-loader": False,
        "sluice-orchestrator": True,
    }


def test_local_job_runner_has_no_rbac() -> None:
    objects = render_case("no-autoscaling")
    assert not find(objects, "Role") and not find(objects, "RoleBinding")
    assert (
        one(objects, "Deployment", "sluice-orchestrator")["spec"]["template"]["spec"][
            "automountServiceAccountToken"
        ]
        is False
    )


def test_workload_identity_annotations() -> None:
    objects = render_case("production")
    annotation = "iam.gke.io/gcp-service-account"
    sa = one(objects, "ServiceAccount", "sluice-loader")
    assert (
        sa["metadata"]["annotations"][annotation]
        == "sluice-loader@acme-data.iam.gserviceaccount.com"
    )
    assert one(objects, "ServiceAccount", "sluice-job")["metadata"]["annotations"][annotation]
    assert "annotations" not in one(objects, "ServiceAccount", "sluice-transformer")["metadata"]
    for _obj, spec in pod_specs(objects):
        assert one(objects, "ServiceAccount", spec["serviceAccountName"])


def _allowed_ingress(policy: dict[str, Any], port: int) -> list[str] | None:
    """Components allowed to reach `port` (None: any source)."""
    for rule in policy["spec"].get("ingress", []):
        if any(p["port"] == port for p in rule["ports"]):
            if "from" not in rule:
                return None
            return sorted(
                peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
                for peer in rule["from"]
            )
    return []


def test_network_policies_allow_only_the_pull_chain() -> None:
    objects = render_case("defaults")
    deny = one(objects, "NetworkPolicy", "sluice-default-deny")
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    policies = {svc: one(objects, "NetworkPolicy", f"sluice-{svc}") for svc in SERVICES}
    assert _allowed_ingress(policies["extractor"], 50051) == [
        "loader",
        "orchestrator",
        "transformer",
    ]
    assert _allowed_ingress(policies["transformer"], 50052) == ["loader"]
    assert _allowed_ingress(policies["loader"], 50053) == ["orchestrator"]
    assert _allowed_ingress(policies["orchestrator"], 8080) is None

    def egress_ports(svc: str) -> set[int]:
        return {p["port"] for r in policies[svc]["spec"]["egress"] for p in r["ports"]}

    # The transformer reads lookup tables from the destination databases, nothing else.
    assert egress_ports("transformer") == {53, 50051, 5432, 3306}
    assert 5432 in egress_ports("loader") and 443 in egress_ports("loader")
    assert 5432 not in egress_ports("extractor") and 50053 not in egress_ports("extractor")
    assert {50053, 50051, 5432, 6443} <= egress_ports("orchestrator")
    # GKE metadata server for Workload Identity on the Google-facing services.
    for svc in ("extractor", "loader", "orchestrator"):
        cidrs = {
            peer["ipBlock"]["cidr"]
            for r in policies[svc]["spec"]["egress"]
            for peer in r.get("to", [])
            if "ipBlock" in peer
        }
        assert "169.254.169.254/32" in cidrs


def test_network_policy_peers_come_from_values() -> None:
    objects = render_case("production")
    orchestrator = one(objects, "NetworkPolicy", "sluice-orchestrator")
    sources = [peer for rule in orchestrator["spec"]["ingress"] for peer in rule["from"]]
    names = {p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in sources}
    assert names == {"ingress-nginx", "monitoring"}, "ingress controller and Prometheus only"
    loader = one(objects, "NetworkPolicy", "sluice-loader")
    db_rule = next(
        r for r in loader["spec"]["egress"] if any(p["port"] == 5432 for p in r["ports"])
    )
    assert db_rule["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
    assert not find(render_case("no-autoscaling"), "NetworkPolicy")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"extractor": {"replica": 2}}, "additional properties 'replica' not allowed"),
        ({"global": {"image": {"tag": "latest"}}}, "'latest' is not allowed"),
        ({"global": {"image": {"tag": "v1 beta"}}}, "/global/image/tag"),
        ({"orchestrator": {"port": "8080x"}}, "want integer"),
        ({"global": {"logLevel": "TRACE"}}, "logLevel"),
        ({"metrics": {"serviceMonitor": {"enabld": True}}}, "additional properties 'enabld'"),
        ({"orchestrator": {"state": {"existingSecret": ""}}}, "existingSecret"),
    ],
)
def test_values_schema_rejects_typos_and_bad_values(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmError, match=message):
        render_templates(values)


def test_latest_tag_refused_even_per_service() -> None:
    with pytest.raises(helm_python.HelmError, match="latest"):
        render_templates({"loader": {"image": {"tag": "latest"}}})


def test_every_values_key_is_documented_and_in_the_schema() -> None:
    """helm-docs style: each key of a structured block has a `# --` comment above it."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []
    undocumented: list[str] = []
    for number, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z][\w.-]*):", line)
        if not match or line.lstrip().startswith("#"):
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parents = [k for _, k in stack]
        stack.append((indent, match.group(2)))
        parent = schema
        for key in parents:
            if parent.get("additionalProperties") is not False:
                break
            parent = parent["properties"][key]
        if parent.get("additionalProperties") is not False:
            continue  # inside a free-form value (resources, annotations, ...)
        assert match.group(2) in parent["properties"], (
            f"line {number + 1}: {match.group(2)} not in schema"
        )
        previous = number - 1
        while (
            previous >= 0
            and lines[previous].strip().startswith("#")
            and "# --" not in lines[previous]
        ):
            previous -= 1
        if previous < 0 or "# --" not in lines[previous]:
            undocumented.append(f"line {number + 1}: {'.'.join([*parents, match.group(2)])}")
    assert not undocumented, "values keys without a `# --` comment:\n" + "\n".join(undocumented)


def test_schema_objects_are_closed() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: dict[str, Any], value: Any, path: str) -> None:
        if "properties" in node:
            assert node.get("additionalProperties") is False, f"{path} is open"
            assert sorted(node["properties"]) == sorted(value), f"{path}: schema and values differ"
            for key, child in node["properties"].items():
                walk(child, value[key], f"{path}.{key}")

    walk(schema, values, "values")


@pytest.mark.parametrize("case", CASES)
def test_notes_tell_how_to_reach_the_run_page(case: str) -> None:
    notes = notes_of(case)
    assert "sluice-state" in notes or "sluice-state-prod" in notes
    if case in ("production", "gke"):
        assert re.search(r"https?://sluice\.", notes)
    else:
        assert "port-forward svc/sluice-orchestrator 8080:80" in notes


def test_monitoring_objects_follow_their_switches() -> None:
    off = render_case("defaults")
    for kind in ("ServiceMonitor", "PrometheusRule", "DaemonSet"):
        assert not find(off, kind)
    assert not [c for c in find(off, "ConfigMap") if "grafana_dashboard" in c["metadata"]["labels"]]
    on = render_case("monitoring")
    (monitor,) = find(on, "ServiceMonitor")
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {"metrics", "http"}
    selected = [
        s
        for s in find(on, "Service")
        if all(
            s["metadata"]["labels"].get(k) == v
            for k, v in monitor["spec"]["selector"]["matchLabels"].items()
        )
    ]
    assert sorted(s["metadata"]["name"] for s in selected) == sorted(
        f"sluice-{s}" for s in SERVICES
    )
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_prometheus_rule_carries_every_shipped_rule_group() -> None:
    groups = []
    for path in sorted((CHART / "files" / "prometheus").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text()) or {}
        groups += doc.get("groups", [])
    rules = find(render_case("monitoring"), "PrometheusRule")
    if not groups:
        assert not rules
        return
    (rule,) = rules
    assert rule["spec"]["groups"] == groups, "alert rules must reach the cluster unchanged"


def test_dashboards_become_sidecar_configmaps() -> None:
    files = sorted(
        p for p in (CHART / "files" / "dashboards").glob("*.json") if p.read_text().strip()
    )
    maps = [
        c
        for c in find(render_case("monitoring"), "ConfigMap")
        if c["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    assert sorted(k for c in maps for k in c["data"]) == sorted(p.name for p in files)
    for c in maps:
        for name, text in c["data"].items():
            assert json.loads(text) == json.loads(
                (CHART / "files" / "dashboards" / name).read_text()
            )


def test_monitoring_renders_without_the_observability_files(tmp_path: Path) -> None:
    chart = copy_chart(tmp_path)
    for sub in ("dashboards", "prometheus", "filebeat", "kibana"):
        target = chart / "files" / sub
        if target.exists():
            for f in target.rglob("*"):
                if f.is_file():
                    f.write_text("")  # empty files first, then no files at all
    values = yaml.safe_load((CHART / "ci" / "values-monitoring.yaml").read_text())
    objects = objects_of(render_templates(values, chart=chart))
    assert not find(objects, "PrometheusRule")
    assert find(objects, "ServiceMonitor") and find(objects, "DaemonSet")
    shutil.rmtree(chart / "files", ignore_errors=True)
    objects = objects_of(render_templates(values, chart=chart))
    (config,) = [
        c for c in find(objects, "ConfigMap") if c["metadata"]["name"] == "sluice-filebeat"
    ]
    assert "filebeat.inputs" in config["data"]["filebeat.yml"]


def test_filebeat_config_comes_from_the_shipped_file() -> None:
    shipped = CHART / "files" / "filebeat" / "filebeat.yml"
    (config,) = [
        c
        for c in find(render_case("monitoring"), "ConfigMap")
        if c["metadata"]["name"] == "sluice-filebeat"
    ]
    assert config["data"]["filebeat.yml"].strip() == shipped.read_text().strip()


def test_lint_is_clean_in_strict_mode() -> None:
    for case, path in VALUES_CASES.items():
        values = {} if path is None else yaml.safe_load(path.read_text())
        result = helm_python.lint(str(CHART), values, strict=True, kube_version="v1.30.0")
        # Helm severities: 1 info, 2 warning, 3 error.
        problems = [m for m in result["messages"] if m["severity"] >= 2]
        assert not problems and not result["errors"], f"{case}: {problems} {result['errors']}"
    bad = helm_python.lint(str(CHART), {"extractor": {"replica": 2}}, strict=True)
    assert bad["errors"], "lint must report a values typo"


@pytest.mark.parametrize("case", CASES)
def test_no_hooks_and_nothing_that_holds_data(case: str) -> None:
    """Install and upgrade must never run once-only hooks or own the state database: the
    orchestrator migrates at start under a lock, and data lives outside the release."""
    objects = render_case(case)
    hooked = [
        o["metadata"]["name"]
        for o in objects
        if "helm.sh/hook" in o["metadata"].get("annotations", {})
    ]
    assert not hooked, f"hooks are skipped by GitOps tools and run once: {hooked}"
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"Job", "CronJob", "PersistentVolumeClaim", "StatefulSet", "Secret"}
    env = env_of(container(objects, "orchestrator"))
    assert env.get("SLUICE_STATE__MIGRATE", {}).get("value", "true") == "true"


def test_orchestrator_migrates_at_start_by_default() -> None:
    from services.orchestrator.settings import OrchestratorSettings

    assert OrchestratorSettings.model_fields["state"].default.migrate is True


def test_extra_volumes_reach_the_pod() -> None:
    deployment = one(render_case("production"), "Deployment", "sluice-extractor")
    spec = deployment["spec"]["template"]["spec"]
    assert {"name": "drops", "mountPath": "/data/drops", "readOnly": True} in spec["containers"][0][
        "volumeMounts"
    ]
    assert any(
        v["name"] == "drops" and v["persistentVolumeClaim"]["claimName"] == "sluice-drops"
        for v in spec["volumes"]
    )


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _peer_matches_pod(peer: dict[str, Any], labels: dict[str, str]) -> bool:
    """A NetworkPolicy peer matching a pod of the same namespace (ipBlocks never match pods)."""
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer and peer["namespaceSelector"] != {}:
        return False
    return _selects(peer.get("podSelector", {}), labels)


def _port_matches(rule: dict[str, Any], port: int) -> bool:
    return "ports" not in rule or any(p.get("port") == port for p in rule["ports"])


def reachable(objects: list[dict[str, Any]], src: str, dst: str, port: int) -> bool:
    """Whether NetworkPolicies let pods of `src` open TCP `port` on pods of `dst`."""
    labels = {
        svc: one(objects, "Deployment", f"sluice-{svc}")["spec"]["template"]["metadata"]["labels"]
        for svc in SERVICES
    }
    policies = find(objects, "NetworkPolicy")

    def admits(rule: dict[str, Any], peer_key: str, other: dict[str, str]) -> bool:
        if not _port_matches(rule, port):
            return False
        peers = rule.get(peer_key)
        return peers is None or any(_peer_matches_pod(peer, other) for peer in peers)

    def allowed(pod: dict[str, str], direction: str, peer_key: str, other: dict[str, str]) -> bool:
        selecting = [p for p in policies if _selects(p["spec"]["podSelector"], pod)]
        relevant = [p for p in selecting if direction.capitalize() in p["spec"]["policyTypes"]]
        if not relevant:
            return True  # not isolated in this direction
        return any(
            admits(rule, peer_key, other) for p in relevant for rule in p["spec"].get(direction, [])
        )

    return allowed(labels[src], "egress", "to", labels[dst]) and allowed(
        labels[dst], "ingress", "from", labels[src]
    )


@pytest.mark.parametrize("case", ["defaults", "production", "gke", "monitoring"])
def test_network_policies_allow_exactly_the_pull_chain(case: str) -> None:
    objects = render_case(case)
    grpc_edges = {
        (src, dst)
        for src in SERVICES
        for dst in GRPC_SERVICES
        if src != dst and reachable(objects, src, dst, PORTS[dst])
    }
    assert grpc_edges == {
        ("orchestrator", "loader"),
        ("orchestrator", "extractor"),  # Discover
        ("loader", "transformer"),
        ("loader", "extractor"),  # units without transform steps
        ("transformer", "extractor"),
    }
    # Nothing inside the release calls the orchestrator; the data plane never calls back.
    assert not any(
        reachable(objects, s, "orchestrator", 8080) for s in GRPC_SERVICES if case != "defaults"
    )
