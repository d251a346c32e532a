"""Orchestrator settings (env ``SLUICE_<SECTION>__<KEY>``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from services.common.settings import (
    MetricsSettings,
    Section,
    ServiceSettings,
    UpstreamSettings,
    service_settings_config,
)


class HttpSettings(Section):
    host: str = "0.0.0.0"
    """Interface the HTTP API binds to."""
    port: int = Field(default=8080, ge=0, le=65535)
    """Port of the HTTP API, the run page, probes and ``/metrics``."""


class StateSettings(Section):
    url: str = "sqlite:///.sluice/state.db"
    """SQLAlchemy URL of the run-state database (SQLite locally, PostgreSQL in a cluster)."""


class PipelineSettings(Section):
    dir: Path = Path("pipelines")
    """Directory of pipeline YAML files (a mounted ConfigMap on Kubernetes)."""


class ExecutionSettings(Section):
    max_units_in_flight: int = Field(default=4, ge=1)
    """Units loaded at the same time across all runs (bounded fan-out to the loaders)."""
    unit_retry_backoff_seconds: float = Field(default=1.0, ge=0)
    """First delay before retrying a task; doubled per attempt, with jitter."""


class JobSettings(Section):
    runner: Literal["local", "kubernetes"] = "local"
    """Where ``job`` tasks run: a local subprocess, or a batch/v1 Job on Kubernetes."""
    namespace: str = "default"
    """Kubernetes namespace the Jobs are created in."""
    service_account: str = "sluice-job"
    """ServiceAccount of the Job pods (give it only what the job needs; none by default)."""
    ttl_seconds_after_finished: int = Field(default=3600, ge=0)
    """Seconds Kubernetes keeps a finished Job (and its logs) before deleting it."""
    poll_seconds: float = Field(default=2.0, gt=0)
    """How often the orchestrator polls a running Job."""


class AlertSettings(Section):
    smtp_host: str = "127.0.0.1"
    """SMTP server for e-mail alerts."""
    smtp_port: int = Field(default=25, ge=0, le=65535)
    """SMTP port."""
    smtp_starttls: bool = False
    """Upgrade the SMTP connection with STARTTLS."""
    smtp_username: str | None = None
    """SMTP login (optional)."""
    smtp_password: str | None = None
    """SMTP password (optional; prefer a secret file)."""
    email_from: str = "sluice@localhost"
    """Sender address of alert e-mails."""
    base_url: str = "http://127.0.0.1:8080"
    """Public URL of the run page, used for links in alerts."""
    check_seconds: float = Field(default=30.0, gt=0)
    """How often late (SLA) and freshness alerts are checked."""


class OrchestratorSettings(ServiceSettings):
    """Everything the orchestrator reads from its environment."""

    model_config = service_settings_config()

    http: HttpSettings = HttpSettings()
    """HTTP server."""
    metrics: MetricsSettings = MetricsSettings(enabled=False, port=0)
    """The orchestrator serves ``/metrics`` on its HTTP port; a side port is not needed."""
    state: StateSettings = StateSettings()
    """Run-state database."""
    pipelines: PipelineSettings = PipelineSettings()
    """Where pipeline definitions are read from."""
    execution: ExecutionSettings = ExecutionSettings()
    """Fan-out and retries."""
    loader: UpstreamSettings = UpstreamSettings(target="127.0.0.1:50053")
    """Loader service (Load, Status, Execute)."""
    extractor: UpstreamSettings = UpstreamSettings(target="127.0.0.1:50051")
    """Extractor service (Discover)."""
    jobs: JobSettings = JobSettings()
    """Runner of ``job`` tasks."""
    alerts: AlertSettings = AlertSettings()
    """Alert delivery (webhooks need no settings; e-mail needs SMTP)."""
