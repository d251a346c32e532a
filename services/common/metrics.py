"""Prometheus helpers shared by every service: the side-port endpoint and gRPC call metrics.

Service-specific metrics are declared in ``services/<svc>/metrics.py``. Names follow
``sluice_<stage>_...`` with ``_total`` / ``_seconds`` / ``_bytes`` suffixes and small label sets
(never run ids or file names).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from services.common.settings import MetricsSettings

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
UNIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600)

GRPC_SERVER_CALLS = Counter(
    "sluice_grpc_server_calls_total",
    "gRPC calls handled, by service, method and status code.",
    ["service", "method", "code"],
)
GRPC_SERVER_SECONDS = Histogram(
    "sluice_grpc_server_call_seconds",
    "Duration of handled gRPC calls (streams: until the last message).",
    ["service", "method"],
    buckets=UNIT_BUCKETS,
)
GRPC_INFLIGHT = Gauge(
    "sluice_grpc_server_inflight_streams",
    "gRPC calls currently being handled.",
    ["service", "method"],
)
BUILD_INFO = Gauge("sluice_build_info", "Constant 1, labelled with the version.", ["version"])


def serve_metrics(settings: MetricsSettings) -> int:
    """Start the ``/metrics`` side port; returns the bound port (0 means disabled)."""
    if not settings.enabled:
        return 0
    server, _thread = start_http_server(settings.port, addr=settings.host)
    return int(server.server_port)


@contextlib.contextmanager
def track_seconds(histogram: Histogram, **labels: str) -> Iterator[None]:
    """Observe the duration of the block, also when it raises."""
    start = time.perf_counter()
    try:
        yield
    finally:
        (histogram.labels(**labels) if labels else histogram).observe(time.perf_counter() - start)
