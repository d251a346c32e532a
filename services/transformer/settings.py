"""Transformer settings (env ``SLUICE_<SECTION>__<KEY>``)."""

from __future__ import annotations

from pathlib import Path

from services.common.settings import (
    GrpcServerSettings,
    MetricsSettings,
    ServiceSettings,
    UpstreamSettings,
    service_settings_config,
)


class TransformerSettings(ServiceSettings):
    """Everything the transformer reads from its environment."""

    model_config = service_settings_config()

    grpc: GrpcServerSettings = GrpcServerSettings(port=50052)
    """gRPC server."""
    metrics: MetricsSettings = MetricsSettings(port=9102)
    """Prometheus side port."""
    extractor: UpstreamSettings = UpstreamSettings(target="127.0.0.1:50051")
    """Where units are pulled from."""
    secrets_dir: Path | None = None
    """Directory of secret files (one file per ``${NAME}`` reference) for lookup tables."""
