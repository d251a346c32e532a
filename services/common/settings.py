"""Settings building blocks shared by every service.

Each service declares one settings object (``services/<svc>/settings.py``) composed of these
sections. Values come from environment variables ``SLUICE_<SECTION>__<KEY>`` (for example
``SLUICE_GRPC__PORT=50051``); unknown keys are rejected so a typo fails at start, not silently.
Business code receives the settings object and never reads ``os.environ`` itself.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

LogFormat = Literal["json", "console"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class Section(BaseModel):
    """A strict settings section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class LogSettings(Section):
    level: LogLevel = "INFO"
    """Minimum level written to stdout."""
    format: LogFormat = "json"
    """``json``: one ECS JSON object per line (for Filebeat); ``console``: readable text."""


class GrpcServerSettings(Section):
    host: str = "0.0.0.0"
    """Interface the gRPC server binds to."""
    port: int = Field(default=50051, ge=0, le=65535)
    """gRPC port; 0 picks a free port (tests)."""
    grace_seconds: float = Field(default=30.0, ge=0)
    """On SIGTERM, how long in-flight streams may finish before they are cancelled."""
    max_message_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024)
    """Largest gRPC message accepted or sent (a record batch is a few MiB)."""


class MetricsSettings(Section):
    enabled: bool = True
    """Serve Prometheus metrics on a side port."""
    host: str = "0.0.0.0"
    """Interface of the metrics endpoint."""
    port: int = Field(default=9100, ge=0, le=65535)
    """Port of the ``/metrics`` endpoint; 0 picks a free port."""


class UpstreamSettings(Section):
    target: str = "127.0.0.1:50051"
    """gRPC target of the upstream service, e.g. ``dns:///sluice-extractor:50051``."""
    load_balancing: Literal["round_robin", "pick_first"] = "round_robin"
    """Client-side balancing policy; round_robin spreads streams over every pod address."""
    deadline_seconds: float = Field(default=3600.0, gt=0)
    """Deadline of one streaming call (a whole unit)."""


def service_settings_config() -> SettingsConfigDict:
    """The environment mapping every service settings class uses."""
    return SettingsConfigDict(
        env_prefix="SLUICE_",
        env_nested_delimiter="__",
        extra="forbid",
        use_attribute_docstrings=True,
        case_sensitive=False,
    )


class ServiceSettings(BaseSettings):
    """Fields every service has."""

    model_config = service_settings_config()

    log: LogSettings = LogSettings()
    """Logging."""
    metrics: MetricsSettings = MetricsSettings()
    """Prometheus endpoint."""
