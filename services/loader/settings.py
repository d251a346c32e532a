"""Loader settings (env ``SLUICE_<SECTION>__<KEY>``)."""

from __future__ import annotations

from pathlib import Path

from services.common.settings import (
    GrpcServerSettings,
    MetricsSettings,
    ServiceSettings,
    UpstreamSettings,
    service_settings_config,
)


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
    secrets_dir: Path | None = None
    """Directory of secret files (one file per ``${NAME}`` reference), e.g. a mounted Secret."""
