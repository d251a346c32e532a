"""Every Prometheus metric the loader exports."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prometheus_client import Counter, Histogram

from services.common.errors import DestinationError, SchemaMismatch
from services.common.metrics import LATENCY_BUCKETS, UNIT_BUCKETS

ROWS = Counter(
    "sluice_loader_rows_total",
    "Rows committed to destinations.",
    ["pipeline", "task", "destination"],
)
ROWS_REJECTED = Counter(
    "sluice_loader_rows_rejected_total",
    "Rows written to <table>__rejected.",
    ["pipeline", "task", "destination"],
)
BYTES = Counter(
    "sluice_loader_bytes_total", "Arrow bytes received.", ["pipeline", "task", "destination"]
)
UNITS = Counter(
    "sluice_loader_units_total",
    "Units handled, by outcome (loaded, skipped, failed).",
    ["pipeline", "task", "destination", "outcome"],
)
DESTINATION_ERRORS = Counter(
    "sluice_loader_destination_errors_total",
    "Errors raised by destination databases (connection, write, commit, schema mismatch).",
    ["destination"],
)
BATCH_SECONDS = Histogram(
    "sluice_loader_batch_seconds",
    "Time to write one batch.",
    ["destination"],
    buckets=LATENCY_BUCKETS,
)
UNIT_SECONDS = Histogram(
    "sluice_loader_unit_seconds",
    "Time to load one unit, pull to commit.",
    ["destination"],
    buckets=UNIT_BUCKETS,
)


@contextlib.contextmanager
def count_destination_errors(destination: str) -> Iterator[None]:
    """Count a DestinationError (or schema mismatch) raised by a sink inside the block."""
    try:
        yield
    except (DestinationError, SchemaMismatch):
        DESTINATION_ERRORS.labels(destination).inc()
        raise
