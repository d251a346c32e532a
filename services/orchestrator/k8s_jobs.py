"""``job`` tasks on Kubernetes: one batch/v1 Job per task attempt, waited on by polling.

The orchestrator creates the Job, polls it and its pods, and when it ends copies the pod's log
tail and the reasons Kubernetes gives (``OOMKilled``, ``ImagePullBackOff``, ``Evicted``, events)
into the task status, mapped to the same contract as the local runner (see ``jobs.py``).

The orchestrator's own ServiceAccount needs exactly :data:`ORCHESTRATOR_RBAC_RULES` in the jobs
namespace. The Job pods run under ``jobs.service_account`` with no API token mounted: a scraper
needs no access to the Kubernetes API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from services.common.errors import Transient
from services.common.spec.model import JobTask
from services.orchestrator.jobs import (
    EXIT_RETRY,
    OUTPUT_TAIL_BYTES,
    JobFailed,
    JobTimedOut,
    JobTransientFailure,
)
from services.orchestrator.settings import JobSettings

log = logging.getLogger(__name__)

ORCHESTRATOR_RBAC_RULES: list[dict[str, list[str]]] = [
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
]
"""The Role rules the orchestrator needs to run Jobs (nothing cluster-wide)."""

# Waiting reasons that will not resolve by themselves: fail now instead of at the timeout.
STUCK_REASONS = frozenset(
    {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError"}
)
LOG_TAIL_LINES = 200
API_ERRORS: tuple[type[Exception], ...] = (ApiException, urllib3.exceptions.HTTPError)
"""What the client raises: an error status, or no answer at all (connection refused, timeout)."""
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_.-]")


def dns_name(*parts: str, limit: int = 63) -> str:
    """A DNS-1123 label made from ``parts`` (lower case, dashes, at most ``limit`` characters)."""
    text = "-".join(parts).lower()
    text = re.sub(r"[^a-z0-9-]+", "-", text).strip("-")
    return text[:limit].rstrip("-")


def label_value(value: str) -> str:
    return _LABEL_VALUE.sub("-", value)[:63].strip("-_.")


def job_manifest(
    job: JobTask,
    name: str,
    settings: JobSettings,
    timeout: float,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The batch/v1 Job body for one attempt of ``job``."""
    if not job.image:
        raise JobFailed(f"job task {job.id!r} needs an image to run on Kubernetes")
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(job.env.items())]
    for var, ref in sorted(job.env_from_secrets.items()):
        secret, _, key = ref.partition("/")
        if not secret or not key:
            raise JobFailed(
                f"job task {job.id!r}: env_from_secrets.{var} must be 'secret-name/key', "
                f"got {ref!r}"
            )
        env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
    all_labels = {
        "app.kubernetes.io/name": "sluice-job",
        "app.kubernetes.io/managed-by": "sluice",
        "sluice.dev/task": label_value(job.id),
        **{f"sluice.dev/{k}": label_value(v) for k, v in (labels or {}).items()},
    }
    container: dict[str, Any] = {
        "name": "job",
        "image": job.image,
        "command": list(job.command),
        "env": env,
        "resources": {k: dict(v) for k, v in job.resources.items()},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if job.workdir:
        container["workingDir"] = job.workdir
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": settings.namespace, "labels": all_labels},
        "spec": {
            "backoffLimit": job.backoff_limit,
            "activeDeadlineSeconds": max(int(timeout), 1),
            "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
            "template": {
                "metadata": {"labels": all_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": settings.service_account,
                    "automountServiceAccountToken": False,
                    "containers": [container],
                },
            },
        },
    }


@dataclass
class PodReport:
    """What the pods of a Job said about how it went."""

    reasons: list[str] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    stuck: str | None = None
    last_pod: str | None = None

    def summary(self) -> str:
        lines = []
        if self.reasons:
            lines.append("reasons: " + ", ".join(dict.fromkeys(self.reasons)))
        if self.events:
            lines.append("events:\n  " + "\n  ".join(self.events[-10:]))
        return "\n".join(lines)


class KubernetesJobRunner:
    """Creates a Job per attempt and waits for it, through the ``kubernetes`` client."""

    _shared_client: ClassVar[k8s.ApiClient | None] = None

    def __init__(self, api_client: k8s.ApiClient, settings: JobSettings) -> None:
        # Typed as Any: the client's models declare every field optional, the API does not.
        self.batch: Any = k8s.BatchV1Api(api_client)
        self.core: Any = k8s.CoreV1Api(api_client)
        self.settings = settings

    @classmethod
    def from_settings(cls, settings: JobSettings) -> KubernetesJobRunner:
        """In a pod: the in-cluster ServiceAccount; elsewhere: the local kubeconfig."""
        if cls._shared_client is None:
            try:
                k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
            except k8s_config.ConfigException:
                try:
                    k8s_config.load_kube_config()  # type: ignore[no-untyped-call]
                except (k8s_config.ConfigException, OSError) as exc:
                    raise JobFailed(
                        "SLUICE_JOBS__RUNNER=kubernetes but no cluster is configured (neither "
                        f"in-cluster ServiceAccount nor kubeconfig): {exc}"
                    ) from None
            cls._shared_client = k8s.ApiClient()
        return cls(cls._shared_client, settings)

    async def run(
        self, job: JobTask, timeout: float, *, labels: Mapping[str, str] | None = None
    ) -> str:
        """Run one attempt; returns the log tail or raises like the local runner."""
        name = dns_name("sluice", job.id, uuid.uuid4().hex[:8])
        body = job_manifest(job, name, self.settings, timeout, labels)
        namespace = self.settings.namespace
        try:
            await asyncio.to_thread(self.batch.create_namespaced_job, namespace, body)
        except API_ERRORS as exc:
            raise _api_error(f"cannot create Job {name}", exc) from None
        log.info("kubernetes job %s created in %s", name, namespace)
        try:
            return await asyncio.wait_for(self._wait(name, job), timeout)
        except TimeoutError:
            report, tail = PodReport(), "(unavailable)"
            with contextlib.suppress(*API_ERRORS):
                report = await asyncio.to_thread(self._pod_report, name)
                tail = await asyncio.to_thread(self._logs, report.last_pod)
            await self._delete(name)
            raise JobTimedOut(
                f"Job {name} timed out after {timeout:g}s and was deleted\n"
                f"{report.summary()}\noutput tail:\n{tail}"
            ) from None
        except asyncio.CancelledError:
            await self._delete(name)
            raise
        except API_ERRORS as exc:
            await self._delete(name)
            raise _api_error(f"lost track of Job {name}", exc) from None

    async def _wait(self, name: str, job: JobTask) -> str:
        namespace = self.settings.namespace
        while True:
            current = await asyncio.to_thread(self.batch.read_namespaced_job, name, namespace)
            status = current.status
            failed_condition = next(
                (c for c in (status.conditions or []) if c.type == "Failed" and c.status == "True"),
                None,
            )
            report = await asyncio.to_thread(self._pod_report, name)
            if (status.succeeded or 0) >= 1:
                return await asyncio.to_thread(self._logs, report.last_pod)
            why = report.stuck
            if failed_condition is not None:
                why = f"{failed_condition.reason}: {failed_condition.message}"
            if why:
                tail = await asyncio.to_thread(self._logs, report.last_pod)
                if report.stuck:
                    await self._delete(name)
                raise _classify(name, why, report, tail)
            await asyncio.sleep(self.settings.poll_seconds)

    def _pod_report(self, name: str) -> PodReport:
        namespace = self.settings.namespace
        report = PodReport()
        pods = self.core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items
        pods.sort(key=lambda p: p.metadata.creation_timestamp or 0)
        for pod in pods:
            report.last_pod = pod.metadata.name
            if pod.status.reason:
                report.reasons.append(pod.status.reason)
            for cs in pod.status.container_statuses or []:
                if cs.state and cs.state.waiting and cs.state.waiting.reason:
                    reason = cs.state.waiting.reason
                    report.reasons.append(reason)
                    if reason in STUCK_REASONS:
                        report.stuck = f"{reason}: {cs.state.waiting.message or cs.image}"
                if cs.state and cs.state.terminated:
                    term = cs.state.terminated
                    if term.reason:
                        report.reasons.append(term.reason)
                    report.exit_codes.append(term.exit_code)
            events = self.core.list_namespaced_event(
                namespace, field_selector=f"involvedObject.name={pod.metadata.name}"
            ).items
            for event in events:
                if event.type == "Warning" or event.reason in ("Evicted", "OOMKilling"):
                    report.events.append(f"{event.reason}: {event.message}")
                    if event.reason == "Evicted":
                        report.reasons.append("Evicted")
        return report

    def _logs(self, pod: str | None) -> str:
        if pod is None:
            return "(no pod was started)"
        try:
            text: str = self.core.read_namespaced_pod_log(
                pod,
                self.settings.namespace,
                tail_lines=LOG_TAIL_LINES,
                limit_bytes=OUTPUT_TAIL_BYTES,
            )
        except ApiException as exc:
            return f"(logs of pod {pod} unavailable: {exc.status} {exc.reason})"
        return text[-OUTPUT_TAIL_BYTES:]

    async def _delete(self, name: str) -> None:
        # Shielded: a cancelled run must still take its pods down.
        with contextlib.suppress(*API_ERRORS):
            await asyncio.shield(
                asyncio.to_thread(
                    self.batch.delete_namespaced_job,
                    name,
                    self.settings.namespace,
                    propagation_policy="Background",
                )
            )
        log.info("kubernetes job %s deleted", name)


def _classify(name: str, why: str, report: PodReport, tail: str) -> JobFailed | Transient:
    detail = f"Job {name} failed ({why})\n{report.summary()}\noutput tail:\n{tail}"
    if why.startswith("DeadlineExceeded"):
        # activeDeadlineSeconds is the task timeout: the same outcome as the local timeout.
        return JobTimedOut(f"timed out; {detail}")
    if "Evicted" in report.reasons:
        return JobTransientFailure(f"pod evicted; {detail}")
    if "OOMKilled" in report.reasons:
        return JobFailed(f"out of memory (OOMKilled): raise resources.limits.memory; {detail}")
    if report.stuck:
        return JobFailed(f"image or container config problem; {detail}")
    if report.exit_codes and report.exit_codes[-1] == EXIT_RETRY:
        return JobTransientFailure(f"job asked to be retried (exit {EXIT_RETRY}); {detail}")
    if report.exit_codes:
        return JobFailed(f"job exited with status {report.exit_codes[-1]}; {detail}")
    return JobFailed(detail)


def _api_error(what: str, exc: Exception) -> JobFailed | JobTransientFailure:
    if not isinstance(exc, ApiException):
        return JobTransientFailure(f"{what}: Kubernetes API unreachable: {exc}")
    message = f"{what}: Kubernetes API answered {exc.status} {exc.reason}: {exc.body or ''}"
    if exc.status in (429, 500, 502, 503, 504) or exc.status == 0:
        return JobTransientFailure(message)
    return JobFailed(message)
