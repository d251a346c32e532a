"""Loader settings (env ``SLUICE_<SECTION>__<KEY>``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.common.settings import (
    GrpcServerSettings,
    MetricsSettings,
    Section,
    ServiceSettings,
    UpstreamSettings,
    service_settings_config,
)


class BigQuerySettings(Section):
    """How the loader talks to BigQuery (env ``SLUICE_BIGQUERY__<KEY>``).

    Credentials are Google's Application Default Credentials: ``GOOGLE_APPLICATION_CREDENTIALS``
    (a service-account key file, e.g. a mounted Secret) or Workload Identity on GKE.
    """

    api_endpoint: str | None = None
    """Base URL of the BigQuery REST API; set only for an emulator or a test fake, e.g.
    ``http://127.0.0.1:9050``. When set, requests are sent without credentials."""
    job_timeout_seconds: float = Field(default=3600.0, gt=0)
    """How long one load, copy or query job may take before the unit fails (and is retried)."""
    job_attempts: int = Field(default=5, ge=1, le=50)
    """Distinct job ids tried per step when a job fails on BigQuery's side (``<id>``,
    ``<id>_r1``, ...); a job id that already succeeded is never run again."""
    create_datasets: bool = True
    """Create the URI's dataset when it does not exist (needs ``bigquery.datasets.create``)."""


class LoaderSettings(ServiceSettings):
    """Everything the loader reads from its environment."""

    model_config = service_settings_config()

    grpc: GrpcServerSettings = GrpcServerSettings(port=50053)
    """gRPC server."""
    metrics: MetricsSettings = MetricsSettings(port=9103)
    """Prometheus side port."""
    transformer: UpstreamSettings = UpstreamSettings(target="127.0.0.1:50052")
    """Where units with transform steps are pulled from."""
    extractor: UpstreamSettings = UpstreamSettings(target="127.0.0.1:50051")
    """Where units without transform steps are pulled from directly."""
    bigquery: BigQuerySettings = BigQuerySettings()
    """BigQuery client options."""
    secrets_dir: Path | None = None
    """Directory of secret files (one file per ``${NAME}`` reference), e.g. a mounted Secret."""
