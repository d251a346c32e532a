"""Every Prometheus metric the transformer exports."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from services.common.metrics import LATENCY_BUCKETS, UNIT_BUCKETS

ROWS_IN = Counter("sluice_transformer_rows_in_total", "Rows received.", ["pipeline", "task"])
ROWS_OUT = Counter("sluice_transformer_rows_out_total", "Rows passed on.", ["pipeline", "task"])
ROWS_REJECTED = Counter(
    "sluice_transformer_rows_rejected_total",
    "Rows rejected by checks or filtered, by reason.",
    ["pipeline", "task", "reason"],
)
BYTES = Counter(
    "sluice_transformer_bytes_total", "Arrow bytes sent downstream.", ["pipeline", "task"]
)
BATCH_SECONDS = Histogram(
    "sluice_transformer_batch_seconds",
    "Time to transform one batch.",
    ["pipeline"],
    buckets=LATENCY_BUCKETS,
)
UNIT_SECONDS = Histogram(
    "sluice_transformer_unit_seconds",
    "Time to transform one unit.",
    ["pipeline"],
    buckets=UNIT_BUCKETS,
)
