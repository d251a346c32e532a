"""Extractor settings (env ``SLUICE_<SECTION>__<KEY>``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.common.settings import (
    GrpcServerSettings,
    MetricsSettings,
    Section,
    ServiceSettings,
    service_settings_config,
)


class LimitSettings(Section):
    batch_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024)
    """Target size of one record batch on the wire (reader block size)."""
    max_line_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    """Longest line or field accepted before the unit fails with a clear error."""


class ExtractorSettings(ServiceSettings):
    """Everything the extractor reads from its environment."""

    model_config = service_settings_config()

    grpc: GrpcServerSettings = GrpcServerSettings(port=50051)
    """gRPC server."""
    metrics: MetricsSettings = MetricsSettings(port=9101)
    """Prometheus side port."""
    limits: LimitSettings = LimitSettings()
    """Reader limits."""
    secrets_dir: Path | None = None
    """Directory of secret files (one file per ``${NAME}`` reference), e.g. a mounted Secret."""
