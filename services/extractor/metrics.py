"""Every Prometheus metric the extractor exports."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from services.common.logs import current_context
from services.common.metrics import LATENCY_BUCKETS, UNIT_BUCKETS

ROWS = Counter(
    "sluice_extractor_rows_total", "Rows read from sources.", ["pipeline", "task", "format"]
)
BYTES = Counter(
    "sluice_extractor_bytes_total",
    "Arrow bytes sent downstream.",
    ["pipeline", "task", "format"],
)
UNITS = Counter(
    "sluice_extractor_units_total",
    "Units streamed, by outcome.",
    ["pipeline", "task", "outcome"],
)
ROWS_SKIPPED = Counter(
    "sluice_extractor_rows_skipped_total",
    "Malformed rows readers skipped (source.options.on_bad_row: skip).",
    ["pipeline", "task"],
)
DISCOVERED = Counter(
    "sluice_extractor_units_discovered_total", "Units listed by Discover.", ["pipeline", "task"]
)
BATCH_SECONDS = Histogram(
    "sluice_extractor_batch_seconds",
    "Time to read and encode one batch.",
    ["format"],
    buckets=LATENCY_BUCKETS,
)
UNIT_SECONDS = Histogram(
    "sluice_extractor_unit_seconds",
    "Time to stream one unit.",
    ["format"],
    buckets=UNIT_BUCKETS,
)

WORKBOOKS_WAITING = Gauge(
    "sluice_extractor_workbooks_waiting",
    "Units of workbooks waiting for memory to decode in (SLUICE_LIMITS__MEMORY_LIMIT_BYTES).",
)
DECODE_SLOTS = Gauge(
    "sluice_extractor_decode_slots",
    "In-memory workbook decodes this extractor runs at once (0: not limited).",
)


def count_skipped_rows(count: int) -> None:
    """Count rows a reader skipped; pipeline and task come from the unit's bound log context
    (readers run in worker threads that inherit it, and know nothing about pipelines)."""
    context = current_context()
    ROWS_SKIPPED.labels(context.get("pipeline", "unknown"), context.get("task", "unknown")).inc(
        count
    )
