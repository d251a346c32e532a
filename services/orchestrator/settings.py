"""Orchestrator settings (env ``SLUICE_<SECTION>__<KEY>``).

The names below are read by the Helm chart; keep them stable.
"""

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

Role = Literal["viewer", "operator"]


class HttpSettings(Section):
    host: str = "0.0.0.0"
    """Interface the HTTP API binds to."""
    port: int = Field(default=8080, ge=0, le=65535)
    """Port of the HTTP API, the run page, probes and ``/metrics``."""


class StateSettings(Section):
    url: str = "sqlite:///.sluice/state.db"
    """SQLAlchemy URL of the run-state database (SQLite locally, PostgreSQL in a cluster, e.g.
    ``postgresql+psycopg://sluice:${PASSWORD}@db/sluice``). Migrations run at every start."""
    migrate: bool = True
    """Apply the schema migrations at start (serialised across replicas by a database lock)."""


class PipelineSettings(Section):
    dir: Path = Path("pipelines")
    """Directory of pipeline YAML files (a mounted ConfigMap on Kubernetes)."""
    reload_seconds: float = Field(default=10.0, ge=0)
    """How often the directory is checked for added, changed or removed files (0: never; a
    changed ConfigMap then needs a restart)."""


class ExecutionSettings(Section):
    max_units_in_flight: int = Field(default=4, ge=1)
    """Units loaded at the same time across all runs (bounded fan-out to the loaders)."""
    unit_retry_backoff_seconds: float = Field(default=1.0, ge=0)
    """First delay before retrying a task when the pipeline sets no ``retry_delay_seconds``;
    doubled per attempt, with jitter."""
    max_retry_delay_seconds: float = Field(default=600.0, ge=0)
    """Upper bound of one retry delay, whatever the attempt number."""
    max_active_runs: int = Field(default=16, ge=1)
    """Runs executing at the same time in this orchestrator, all pipelines together."""
    max_queued_runs: int = Field(default=50, ge=1)
    """Queued runs allowed per pipeline; further triggers answer 429 and the scheduler waits."""
    poll_seconds: float = Field(default=0.5, gt=0)
    """How often the lease holder looks for queued runs created by other replicas."""
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    """How often a running run's heartbeat is written to the state DB."""
    heartbeat_timeout_seconds: float = Field(default=60.0, gt=0)
    """A running run whose heartbeat is older than this was orphaned (its orchestrator died):
    the lease holder takes it over and retries its unfinished tasks."""


class SchedulerSettings(Section):
    enabled: bool = True
    """Run the cron scheduler (only the lease holder actually schedules)."""
    tick_seconds: float = Field(default=1.0, gt=0)
    """How often due schedules are checked."""
    misfire_grace_seconds: float = Field(default=300.0, ge=0)
    """With ``catchup: none``, a fire time missed by less than this still runs (the scheduler
    was briefly down or busy); older missed times are skipped."""
    lease_seconds: float = Field(default=15.0, gt=0)
    """Lifetime of the scheduler lease; the holder renews it every third of that. A replica that
    dies loses the lease after this long and another replica takes over."""
    replica_id: str | None = None
    """Name of this replica in the lease table (default: host name and process id)."""


class TokenEntry(Section):
    name: str
    """Who the token belongs to (appears in logs, never the token)."""
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """Hex SHA-256 of the token (``printf %s "$TOKEN" | sha256sum``); the token itself is never
    stored."""
    role: Role = "viewer"
    """``viewer`` reads; ``operator`` also triggers, cancels and retries."""


class AuthSettings(Section):
    disabled: bool = False
    """Serve the API without authentication. Required, explicitly, when no token is configured;
    a warning is logged at start."""
    tokens: list[TokenEntry] = []
    """Bearer tokens as JSON, e.g. ``[{"name": "ci", "sha256": "…", "role": "operator"}]``."""
    tokens_file: Path | None = None
    """A file (a mounted Secret) with more tokens: one ``name:role:sha256`` per line or the same
    JSON list as ``tokens``."""


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
    """Fan-out, retries, concurrency and heartbeats."""
    scheduler: SchedulerSettings = SchedulerSettings()
    """Cron scheduler and the lease that elects one scheduling replica."""
    auth: AuthSettings = AuthSettings()
    """Bearer-token authentication of the HTTP API."""
    loader: UpstreamSettings = UpstreamSettings(target="127.0.0.1:50053")
    """Loader service (Load, Status, Execute)."""
    extractor: UpstreamSettings = UpstreamSettings(target="127.0.0.1:50051")
    """Extractor service (Discover)."""
    jobs: JobSettings = JobSettings()
    """Runner of ``job`` tasks."""
    alerts: AlertSettings = AlertSettings()
    """Alert delivery (webhooks need no settings; e-mail needs SMTP)."""
