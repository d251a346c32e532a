"""Manifest fidelity: what the chart promises about the code, checked against the code.

For each rendered Deployment, the container's command (the Dockerfile ENTRYPOINT plus the
container's args) is started locally with the container's environment, hostnames and ports
rewritten to free loopback ports and mounted paths to temporary directories. Then the liveness,
readiness and startup probes must answer on the declared ports and paths (grpc.health.v1 for the
gRPC services, HTTP for the orchestrator), the metrics endpoints the ServiceMonitor scrapes must
serve, and SIGTERM must stop each process within its terminationGracePeriodSeconds. Every SLUICE_*
variable in the manifests must be a setting the code knows, and every required setting must be
set.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from services.cli.stack import free_ports, grpc_healthy
from tests.deploy.platform.chart import (
    GRPC_SERVICES,
    NAMESPACE,
    ROOT,
    SERVICES,
    VALUES_CASES,
    find,
    objects_of,
    one,
    render_case,
    render_templates,
)
from tests.deploy.platform.images import (
    assemble_app_tree,
    exec_form,
    final_stage,
    make_writable,
)
from tests.deploy.platform.settings_env import env_settings, settings_class

TOKEN = "fidelity-token"
IMAGE_PYTHON_M = (
    "import runpy, sys; "
    "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]; "
    "sys.argv = sys.argv[1:]; "
    "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)"
)
START_ORDER = ("extractor", "transformer", "loader", "orchestrator")


def sluice_env_names(container: dict[str, Any]) -> set[str]:
    return {e["name"] for e in container.get("env", []) if e["name"].startswith("SLUICE_")}


def deployment_containers(case: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for deployment in find(render_case(case), "Deployment"):
        component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        yield component, container


@pytest.mark.parametrize("case", list(VALUES_CASES))
def test_every_sluice_env_var_is_a_known_setting(case: str) -> None:
    problems = []
    for svc, container in deployment_containers(case):
        known = env_settings(svc)
        for name in sorted(sluice_env_names(container)):
            if name not in known:
                problems.append(f"{svc}: {name} is not a setting of {svc} (typo or removed?)")
        for setting in known.values():
            if setting.required and setting.name not in sluice_env_names(container):
                problems.append(f"{svc}: required setting {setting.name} is not set")
    assert not problems, "\n".join(problems)


def resolved_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's SLUICE_* env with references replaced by plausible values."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if not item["name"].startswith("SLUICE_"):
            continue
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif "fieldRef" in item["valueFrom"]:
            env[item["name"]] = "sluice-orchestrator-5d8f7c9b4-x2x7q"
        else:  # a Secret: the state URL, SMTP credentials
            env[item["name"]] = (
                "postgresql+psycopg://u:p@db/sluice" if "URL" in item["name"] else "x"
            )
    return env


@pytest.mark.parametrize("case", list(VALUES_CASES))
def test_manifest_env_values_parse_as_settings(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The values the chart writes (ports, booleans, literals like round_robin) are accepted."""
    for svc, container in deployment_containers(case):
        for name in [n for n in os.environ if n.upper().startswith("SLUICE_")]:
            monkeypatch.delenv(name)
        env = resolved_env(container)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings = settings_class(svc)()
        if "SLUICE_GRPC__PORT" in env:
            assert settings.grpc.port == int(env["SLUICE_GRPC__PORT"])  # type: ignore[attr-defined]
        for name in env:
            monkeypatch.delenv(name)


def test_unknown_env_var_is_reported() -> None:
    """The check above must catch a misspelt setting passed through values."""
    objects = objects_of(
        render_templates({"loader": {"env": [{"name": "SLUICE_GRPC__PORTT", "value": "1"}]}})
    )
    (container,) = one(objects, "Deployment", "sluice-loader")["spec"]["template"]["spec"][
        "containers"
    ]
    assert "SLUICE_GRPC__PORTT" in sluice_env_names(container) - set(env_settings("loader"))


def test_settings_introspection_sees_nested_sections() -> None:
    names = set(env_settings("orchestrator"))
    assert {
        "SLUICE_STATE__URL",
        "SLUICE_HTTP__PORT",
        "SLUICE_LOADER__TARGET",
        "SLUICE_LOG__LEVEL",
    } <= names
    assert "SLUICE_GRPC__PORT" in env_settings("extractor")


# Kubernetes API calls of the job runner -> the RBAC (resource, verb) each one needs.
_VERBS = {
    "create": "create",
    "read": "get",
    "list": "list",
    "delete": "delete",
    "patch": "patch",
    "replace": "update",
    "watch": "watch",
}
_RESOURCES = {
    "job": ("batch", "jobs"),
    "job_status": ("batch", "jobs/status"),
    "pod": ("", "pods"),
    "pod_log": ("", "pods/log"),
    "event": ("", "events"),
}


def test_job_rbac_covers_every_kubernetes_call_of_the_job_runner() -> None:
    source = (ROOT / "services" / "orchestrator" / "k8s_jobs.py").read_text()
    calls = set(
        re.findall(r"\.(create|read|list|delete|patch|replace|watch)_namespaced_(\w+?)\(", source)
    )
    assert calls, "the Kubernetes job runner makes no API calls?"
    role = one(render_case("defaults"), "Role", "sluice-orchestrator-jobs")
    allowed = {
        (g, r, v)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    for verb, resource in sorted(calls):
        group, plural = _RESOURCES[resource]
        assert (group, plural, _VERBS[verb]) in allowed, (
            f"Role lacks {_VERBS[verb]} on {group}/{plural}"
        )


# ---------------------------------------------------------------- starting the containers locally


def dockerfile_runtime(svc: str) -> tuple[list[str], dict[str, str]]:
    """ENTRYPOINT and ENV of the image's runtime stage."""
    stage = final_stage(ROOT / "docker" / f"{svc}.Dockerfile")
    (entrypoint,) = [s for s in stage if s.keyword == "ENTRYPOINT"]
    command = exec_form(entrypoint.args)
    assert command, "exec-form ENTRYPOINT"
    env: dict[str, str] = {}
    for step in (s for s in stage if s.keyword == "ENV"):
        for key, value in re.findall(r"(\w+)=(\S+)", step.args):
            env[key] = value
    return command, env


@dataclass
class Started:
    svc: str
    container: dict[str, Any]
    spec: dict[str, Any]
    process: subprocess.Popen[bytes]
    ports: dict[int, int]  # declared container port -> local port
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def local(self, port: int | str) -> int:
        if isinstance(port, str):
            port = next(p["containerPort"] for p in self.container["ports"] if p["name"] == port)
        return self.ports[port]

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


class ClusterOnLoopback:
    """Maps the rendered Deployments onto local processes."""

    def __init__(
        self, objects: list[dict[str, Any]], tmp: Path, secrets: dict[tuple[str, str], str]
    ) -> None:
        self.objects = objects
        self.tmp = tmp
        self.secrets = secrets
        self.services: dict[str, Started] = {}
        self.trees: list[Path] = []
        # Every declared container port gets its own free local port.
        declared = {
            svc: [p["containerPort"] for p in self.container(svc)["ports"]] for svc in SERVICES
        }
        local = iter(free_ports(sum(map(len, declared.values()))))
        self.port_map: dict[str, dict[int, int]] = {
            svc: {port: next(local) for port in ports} for svc, ports in declared.items()
        }

    def deployment(self, svc: str) -> dict[str, Any]:
        return one(self.objects, "Deployment", f"sluice-{svc}")

    def container(self, svc: str) -> dict[str, Any]:
        (container,) = self.deployment(svc)["spec"]["template"]["spec"]["containers"]
        return container

    def rewrite(self, value: str, svc: str, mounts: dict[str, Path]) -> str:
        # dns:///sluice-<svc>:<port> -> dns:///127.0.0.1:<local port of that Service's pods>
        def target(match: re.Match[str]) -> str:
            other, port = match.group(1), int(match.group(2))
            service = one(self.objects, "Service", f"sluice-{other}")
            (spec_port,) = [p for p in service["spec"]["ports"] if p["port"] == port]
            container_port = next(
                p["containerPort"]
                for p in self.container(other)["ports"]
                if p["name"] == spec_port["targetPort"]
            )
            return f"dns:///127.0.0.1:{self.port_map[other][container_port]}"

        value = re.sub(r"dns:///sluice-(\w+):(\d+)", target, value)
        if value.isdigit() and int(value) in self.port_map[svc]:
            value = str(self.port_map[svc][int(value)])
        for mount_path, local in mounts.items():
            if value == mount_path or value.startswith(mount_path + "/"):
                value = str(local) + value[len(mount_path) :]
        return value

    def materialise_volumes(self, svc: str) -> dict[str, Path]:
        spec = self.deployment(svc)["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        mounts: dict[str, Path] = {}
        for mount in self.container(svc).get("volumeMounts", []):
            local = self.tmp / svc / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            volume = volumes[mount["name"]]
            if "configMap" in volume:
                configmap = one(self.objects, "ConfigMap", volume["configMap"]["name"])
                for key, text in (configmap.get("data") or {}).items():
                    (local / key).write_text(text)
            elif "secret" in volume:
                name = volume["secret"]["secretName"]
                for (secret, key), text in self.secrets.items():
                    if secret == name:
                        (local / key).write_text(text)
                assert any(local.iterdir()), f"test has no content for Secret {name}"
            else:
                # emptyDir, or a claim the user provides (an empty directory here).
                assert {"emptyDir", "persistentVolumeClaim"} & set(volume), f"{svc}: {volume}"
            mounts[mount["mountPath"]] = local
        return mounts

    def env_for(self, svc: str, mounts: dict[str, Path]) -> dict[str, str]:
        env: dict[str, str] = {}
        for item in self.container(svc).get("env", []):
            if "value" in item:
                env[item["name"]] = self.rewrite(str(item["value"]), svc, mounts)
                continue
            source = item["valueFrom"]
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                env[item["name"]] = self.secrets[(ref["name"], ref["key"])]
            elif "fieldRef" in source:
                env[item["name"]] = {
                    "metadata.name": f"sluice-{svc}-5d8f7c9b4-x2x7q",
                    "metadata.namespace": NAMESPACE,
                }[source["fieldRef"]["fieldPath"]]
            else:
                pytest.fail(f"{svc}: unsupported env source {source}")
        for source in self.container(svc).get("envFrom", []):
            name = source["secretRef"]["name"]
            env.update(
                {key: text for (secret, key), text in self.secrets.items() if secret == name}
            )
        return env

    def start(self, svc: str) -> Started:
        container = self.container(svc)
        entrypoint, image_env = dockerfile_runtime(svc)
        command = (
            [*entrypoint, *container.get("args", [])]
            if "command" not in container
            else container["command"]
        )
        assert command[:2] == ["python", "-m"], "the image runs `python -m services.<svc>`"
        # `python -m <module>`, minus the dev environment's editable-install finder, which would
        # otherwise serve modules the image does not contain from the repository.
        command = [sys.executable, "-c", IMAGE_PYTHON_M, *command[2:]]
        mounts = self.materialise_volumes(svc)
        # The image's /app (WORKDIR and PYTHONPATH): only what the Dockerfile copies, read-only.
        app = assemble_app_tree(svc, self.tmp / svc / "image")
        self.trees.append(app)
        assert image_env.get("PYTHONPATH") == "/app"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            **image_env,
            "PYTHONPATH": str(app),
            "HOME": str(mounts.get("/tmp", self.tmp)),
            "TMPDIR": str(mounts.get("/tmp", self.tmp)),
            **self.env_for(svc, mounts),
        }
        log = self.tmp / f"{svc}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                cwd=app,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started = Started(
            svc,
            container,
            self.deployment(svc)["spec"]["template"]["spec"],
            process,
            self.port_map[svc],
            log,
            env,
        )
        self.services[svc] = started
        return started

    def stop_all(self) -> None:
        for started in self.services.values():
            if started.process.poll() is None:
                os.killpg(started.process.pid, signal.SIGKILL)
                started.process.wait(timeout=30)
        for tree in self.trees:
            make_writable(tree)


def http_probe(port: int, path: str) -> int | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=3).status_code
    except httpx.HTTPError:
        return None


def probe_ok(started: Started, probe: dict[str, Any]) -> bool:
    if "grpc" in probe:
        return grpc_healthy(f"127.0.0.1:{started.local(probe['grpc']['port'])}", 3)
    http = probe["httpGet"]
    return http_probe(started.local(http["port"]), http["path"]) == 200


def wait_until(check: Any, budget: float, started: Started, what: str) -> None:
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        if started.process.poll() is not None:
            pytest.fail(
                f"{started.svc} exited ({started.process.returncode}) before {what}:\n{started.output()}"
            )
        if check():
            return
        time.sleep(0.25)
    pytest.fail(f"{started.svc}: {what} did not succeed within {budget:.0f}s:\n{started.output()}")


@pytest.fixture(params=["defaults", "production"])
def fidelity_objects(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    """A values case rendered; the defaults get one pipeline in the chart's ConfigMap, to follow
    it to the API (the production-like values ship their own)."""
    if request.param == "production":
        return render_case("production")
    demo = (ROOT / "examples" / "pipelines" / "demo.yaml").read_text()
    return objects_of(
        render_templates({"orchestrator": {"pipelines": {"files": {"demo.yaml": demo}}}})
    )


def referenced_secrets(objects: list[dict[str, Any]], state_url: str) -> dict[tuple[str, str], str]:
    """Plausible content for every Secret key the Deployments reference."""
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    known = {"url": state_url, "tokens": f"fidelity:operator:{digest}\n"}
    refs: set[tuple[str, str]] = set()
    for deployment in find(objects, "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        for c in spec["containers"]:
            for item in c.get("env", []):
                if "secretKeyRef" in item.get("valueFrom", {}):
                    ref = item["valueFrom"]["secretKeyRef"]
                    refs.add((ref["name"], ref["key"]))
            for source in c.get("envFrom", []):
                refs.add((source["secretRef"]["name"], "FIDELITY_PIPELINE_SECRET"))
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                key = "tokens" if volume["name"] == "auth" else "FIDELITY_PIPELINE_SECRET"
                refs.add((volume["secret"]["secretName"], key))
    return {(name, key): known.get(key, f"test-{key}") for name, key in refs}


def test_containers_start_from_the_manifests_and_answer_their_probes(
    fidelity_objects: list[dict[str, Any]], tmp_path: Path, pg_url: str
) -> None:
    state_url = pg_url.replace("postgresql://", "postgresql+psycopg://", 1)
    secrets = referenced_secrets(fidelity_objects, state_url)
    cluster = ClusterOnLoopback(fidelity_objects, tmp_path, secrets)
    try:
        for svc in START_ORDER:
            started = cluster.start(svc)
            spec = started.container
            # Kubernetes gives the startup probe periodSeconds * failureThreshold; capped for CI.
            startup = spec["startupProbe"]
            budget = min(startup["periodSeconds"] * startup["failureThreshold"], 90)
            wait_until(
                lambda s=started, p=startup: probe_ok(s, p), budget, started, "the startupProbe"
            )
            for probe in ("livenessProbe", "readinessProbe"):
                wait_until(
                    lambda s=started, p=spec[probe]: probe_ok(s, p), 60, started, f"the {probe}"
                )
        # Every declared port is served: the ServiceMonitor scrapes metrics (side port) and http.
        for svc in GRPC_SERVICES:
            started = cluster.services[svc]
            response = httpx.get(f"http://127.0.0.1:{started.local('metrics')}/metrics", timeout=5)
            assert response.status_code == 200 and "sluice_" in response.text, svc
        orchestrator = cluster.services["orchestrator"]
        http = orchestrator.local("http")
        assert "sluice_" in httpx.get(f"http://127.0.0.1:{http}/metrics", timeout=5).text
        # The auth Secret and the pipelines ConfigMap reach the API through their mounts.
        assert httpx.get(f"http://127.0.0.1:{http}/api/v1/pipelines", timeout=5).status_code == 401
        listed = httpx.get(
            f"http://127.0.0.1:{http}/api/v1/pipelines",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=5,
        )
        assert listed.status_code == 200, listed.text
        (pipelines,) = [
            c
            for c in find(fidelity_objects, "ConfigMap")
            if c["metadata"]["name"] == "sluice-pipelines"
        ]
        for text in pipelines["data"].values():
            assert yaml.safe_load(text)["name"] in listed.text
        # /readyz checks the state DB and the data plane through the dns:/// targets.
        ready = httpx.get(f"http://127.0.0.1:{http}/readyz", timeout=5)
        assert ready.status_code == 200 and ready.json()["ready"] is True, ready.text
        # SIGTERM (after preStop) must stop each process well inside its grace period.
        for svc in reversed(START_ORDER):
            started = cluster.services[svc]
            grace = started.spec["terminationGracePeriodSeconds"]
            started.process.send_signal(signal.SIGTERM)
            try:
                code = started.process.wait(timeout=min(grace, 60))
            except subprocess.TimeoutExpired:
                pytest.fail(f"{svc} did not stop within {grace}s of SIGTERM:\n{started.output()}")
            if svc == "orchestrator":
                # uvicorn finishes its graceful shutdown, then re-raises SIGTERM (exit -15).
                assert code in (0, -signal.SIGTERM), f"exit {code}:\n{started.output()}"
                if started.env.get("SLUICE_LOG__LEVEL") in ("DEBUG", "INFO"):
                    assert "Application shutdown complete" in started.output()
            else:
                assert code == 0, f"{svc} exited with {code} on SIGTERM:\n{started.output()}"
    finally:
        cluster.stop_all()
