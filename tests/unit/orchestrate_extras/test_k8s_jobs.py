"""The Kubernetes ``job`` runner against a loopback fake of the API endpoints it calls.

The real ``kubernetes`` client talks HTTP to the fake, so the test checks the requests it really
sends (the Job body above all) and how it reads real-shaped answers.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes import client as k8s

from services.common.errors import Terminal, Transient
from services.common.spec.model import JobTask
from services.orchestrator.jobs import JobFailed, JobTimedOut, JobTransientFailure
from services.orchestrator.k8s_jobs import KubernetesJobRunner, job_manifest
from services.orchestrator.settings import JobSettings

NS = "etl-jobs"


@dataclass
class FakeCluster:
    """Answers like the API server for one Job; tests set what its reads return."""

    job_statuses: list[dict[str, Any]] = field(default_factory=lambda: [{"succeeded": 1}])
    pod_status: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    log_text: str = "fetched 3 files\n"
    requests: list[tuple[str, str, dict[str, list[str]], Any]] = field(default_factory=list)
    created: dict[str, Any] | None = None
    reads: int = 0

    def handle(self, method: str, url: str, body: Any) -> tuple[int, Any]:
        parsed = urlparse(url)
        path, query = parsed.path, parse_qs(parsed.query)
        self.requests.append((method, path, query, body))
        jobs = f"/apis/batch/v1/namespaces/{NS}/jobs"
        if method == "POST" and path == jobs:
            self.created = body
            return 201, body
        name = self.created["metadata"]["name"] if self.created else "?"
        if method == "GET" and path == f"{jobs}/{name}":
            status = self.job_statuses[min(self.reads, len(self.job_statuses) - 1)]
            self.reads += 1
            return 200, {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": name},
                "status": status,
            }
        if method == "DELETE" and path == f"{jobs}/{name}":
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
        if method == "GET" and path == f"/api/v1/namespaces/{NS}/pods":
            pod = {
                "metadata": {"name": f"{name}-abcde", "creationTimestamp": "2026-11-24T05:00:00Z"},
                "status": self.pod_status,
            }
            return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [pod]}
        if method == "GET" and path == f"/api/v1/namespaces/{NS}/pods/{name}-abcde/log":
            return 200, self.log_text
        if method == "GET" and path == f"/api/v1/namespaces/{NS}/events":
            items = [
                {"metadata": {"name": f"ev{i}"}, "involvedObject": {}, **e}
                for i, e in enumerate(self.events)
            ]
            return 200, {"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": items}
        return 404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404}

    def calls(self, method: str) -> list[str]:
        return [path for m, path, _q, _b in self.requests if m == method]


def container(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "job",
        "image": "registry.example/scraper:1",
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "state": state,
    }


def backoff_limit_exceeded(failed: int, message: str = "x") -> dict[str, Any]:
    """A Job status after its pods failed ``failed`` times and the controller gave up."""
    condition = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}
    return {"failed": failed, "conditions": [{**condition, "message": message}]}


@pytest.fixture
def cluster() -> Iterator[tuple[FakeCluster, k8s.ApiClient]]:
    fake = FakeCluster()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            status, payload = fake.handle(self.command, self.path, json.loads(raw) if raw else None)
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(status)
            kind = "text/plain" if isinstance(payload, str) else "application/json"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    configuration = k8s.Configuration(host=f"http://127.0.0.1:{server.server_address[1]}")
    api = k8s.ApiClient(configuration)
    yield fake, api
    api.close()
    server.shutdown()
    server.server_close()


SETTINGS = JobSettings(
    runner="kubernetes",
    namespace=NS,
    service_account="portal-scraper",
    ttl_seconds_after_finished=600,
    poll_seconds=0.05,
)
TASK = JobTask.model_validate(
    {
        "id": "fetch_portal",
        "type": "job",
        "image": "registry.example/scraper:1",
        "command": ["python", "scrape.py", "--date", "2026-11-23"],
        "env": {"PORTAL_URL": "https://portal.example"},
        "env_from_secrets": {"PORTAL_PASSWORD": "portal-credentials/password"},
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "backoff_limit": 2,
    }
)


def run(api: k8s.ApiClient, timeout: float = 30) -> str:
    runner = KubernetesJobRunner(api, SETTINGS)
    return asyncio.run(runner.run(TASK, timeout, labels={"run_id": "r1", "pipeline": "daily"}))


def test_job_body_and_success(cluster: tuple[FakeCluster, k8s.ApiClient]) -> None:
    fake, api = cluster
    fake.job_statuses = [{"active": 1}, {"active": 1}, {"succeeded": 1}]
    fake.pod_status = {
        "containerStatuses": [container({"terminated": {"exitCode": 0, "reason": "Completed"}})]
    }
    assert run(api) == "fetched 3 files\n"

    body = fake.created
    assert body is not None
    assert body["apiVersion"] == "batch/v1" and body["kind"] == "Job"
    assert body["metadata"]["name"].startswith("sluice-fetch-portal-")
    assert body["metadata"]["labels"]["sluice.dev/run_id"] == "r1"
    spec = body["spec"]
    assert spec["backoffLimit"] == 2
    assert spec["ttlSecondsAfterFinished"] == 600
    assert spec["activeDeadlineSeconds"] == 30
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "portal-scraper"
    assert pod["automountServiceAccountToken"] is False
    assert pod["restartPolicy"] == "Never"
    (box,) = pod["containers"]
    assert box["image"] == "registry.example/scraper:1"
    assert box["command"] == ["python", "scrape.py", "--date", "2026-11-23"]
    assert {"name": "PORTAL_URL", "value": "https://portal.example"} in box["env"]
    assert {
        "name": "PORTAL_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "portal-credentials", "key": "password"}},
    } in box["env"]
    assert box["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"memory": "1Gi"},
    }
    assert box["securityContext"]["allowPrivilegeEscalation"] is False
    assert box["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    # The pods are found by the label the Job controller puts on them.
    pod_lists = [q for m, p, q, _b in fake.requests if p.endswith("/pods") and m == "GET"]
    assert pod_lists[0]["labelSelector"] == [f"job-name={body['metadata']['name']}"]
    assert fake.calls("DELETE") == []  # a finished Job is left to ttlSecondsAfterFinished


def test_oom_killed_is_terminal_with_reason_and_logs(
    cluster: tuple[FakeCluster, k8s.ApiClient],
) -> None:
    fake, api = cluster
    fake.job_statuses = [backoff_limit_exceeded(3, "Job has reached the specified backoff limit")]
    fake.pod_status = {
        "containerStatuses": [container({"terminated": {"exitCode": 137, "reason": "OOMKilled"}})]
    }
    fake.log_text = "loading 2 GB of html\n"
    with pytest.raises(JobFailed) as info:
        run(api)
    assert isinstance(info.value, Terminal)
    message = info.value.message
    assert "OOMKilled" in message and "resources.limits.memory" in message
    assert "BackoffLimitExceeded" in message
    assert "loading 2 GB of html" in message


def test_image_pull_backoff_fails_fast_and_deletes_the_job(
    cluster: tuple[FakeCluster, k8s.ApiClient],
) -> None:
    fake, api = cluster
    fake.job_statuses = [{"active": 1}]
    fake.pod_status = {
        "containerStatuses": [
            container(
                {
                    "waiting": {
                        "reason": "ImagePullBackOff",
                        "message": 'Back-off pulling image "registry.example/scraper:1"',
                    }
                }
            )
        ]
    }
    with pytest.raises(JobFailed, match="ImagePullBackOff: Back-off pulling image"):
        run(api)
    assert len(fake.calls("DELETE")) == 1


def test_eviction_is_transient_and_carries_the_event(
    cluster: tuple[FakeCluster, k8s.ApiClient],
) -> None:
    fake, api = cluster
    fake.job_statuses = [backoff_limit_exceeded(1)]
    fake.pod_status = {
        "phase": "Failed",
        "reason": "Evicted",
        "message": "The node was low on resource: memory.",
    }
    fake.events = [
        {"type": "Warning", "reason": "Evicted", "message": "The node was low on resource: memory."}
    ]
    with pytest.raises(JobTransientFailure) as info:
        run(api)
    assert isinstance(info.value, Transient)
    assert "Evicted: The node was low on resource: memory." in info.value.message


def test_exit_75_is_transient(cluster: tuple[FakeCluster, k8s.ApiClient]) -> None:
    fake, api = cluster
    fake.job_statuses = [backoff_limit_exceeded(1)]
    fake.pod_status = {"containerStatuses": [container({"terminated": {"exitCode": 75}})]}
    with pytest.raises(JobTransientFailure, match="exit 75"):
        run(api)


def test_timeout_deletes_the_job(cluster: tuple[FakeCluster, k8s.ApiClient]) -> None:
    fake, api = cluster
    fake.job_statuses = [{"active": 1}]
    fake.pod_status = {"containerStatuses": [container({"running": {}})]}
    fake.log_text = "still scraping page 40\n"
    with pytest.raises(JobTimedOut) as info:
        run(api, timeout=1)
    assert "still scraping page 40" in info.value.message
    assert len(fake.calls("DELETE")) == 1
    delete_query = next(q for m, _p, q, _b in fake.requests if m == "DELETE")
    assert delete_query["propagationPolicy"] == ["Background"]  # the pods go too


def test_task_without_image_is_refused(cluster: tuple[FakeCluster, k8s.ApiClient]) -> None:
    fake, api = cluster
    task = TASK.model_copy(update={"image": None})
    runner = KubernetesJobRunner(api, SETTINGS)
    with pytest.raises(JobFailed, match="needs an image"):
        asyncio.run(runner.run(task, 10))
    assert fake.requests == []


def test_cancelling_the_run_deletes_the_job(cluster: tuple[FakeCluster, k8s.ApiClient]) -> None:
    fake, api = cluster
    fake.job_statuses = [{"active": 1}]
    fake.pod_status = {"containerStatuses": [container({"running": {}})]}

    async def scenario() -> None:
        runner = KubernetesJobRunner(api, SETTINGS)
        running = asyncio.create_task(runner.run(TASK, 300))
        while fake.reads < 2:  # noqa: ASYNC110 - the fake API server is another thread
            await asyncio.sleep(0.05)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running

    asyncio.run(scenario())
    assert len(fake.calls("DELETE")) == 1


def test_job_body_is_a_valid_batch_v1_job() -> None:
    import kubernetes_validate

    body = job_manifest(TASK, "sluice-fetch-portal-0a1b2c3d", SETTINGS, 900, {"run_id": "r1"})
    kubernetes_validate.validate(body, "1.30", strict=True)  # raises on unknown or bad fields


def test_unreachable_api_server_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]  # nothing listens here once the socket is closed
    api = k8s.ApiClient(k8s.Configuration(host=f"http://127.0.0.1:{closed}"))
    runner = KubernetesJobRunner(api, SETTINGS)
    with pytest.raises(JobTransientFailure, match="Kubernetes API unreachable"):
        asyncio.run(runner.run(TASK, 30))
    api.close()


def test_api_error_status_is_reported(cluster: tuple[FakeCluster, k8s.ApiClient]) -> None:
    _fake, api = cluster
    settings = SETTINGS.model_copy(update={"namespace": "forbidden-ns"})
    with pytest.raises(JobFailed, match=r"cannot create Job .*: Kubernetes API answered 404"):
        asyncio.run(KubernetesJobRunner(api, settings).run(TASK, 30))
