"""Every Prometheus metric the orchestrator exports."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from croniter import croniter
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import Response

from services.common.metrics import LATENCY_BUCKETS, UNIT_BUCKETS
from services.common.spec.model import Pipeline, cron_expression

if TYPE_CHECKING:
    from services.orchestrator.state.store import Store

FINAL_RUN_STATUSES = ("succeeded", "failed", "cancelled", "skipped")
RUNS = Counter(
    "sluice_runs_total", "Runs finished, by pipeline and final status.", ["pipeline", "status"]
)
RUN_SECONDS = Histogram(
    "sluice_run_duration_seconds",
    "Run duration, trigger to final state.",
    ["pipeline"],
    buckets=UNIT_BUCKETS,
)
TRIGGERS = Counter(
    "sluice_run_triggers_total", "Runs created, by trigger.", ["pipeline", "trigger"]
)
TRIGGER_TO_START = Histogram(
    "sluice_trigger_to_start_seconds",
    "Delay from a run's creation to its first unit starting.",
    ["pipeline"],
    buckets=LATENCY_BUCKETS,
)
UNITS = Counter(
    "sluice_units_total", "Units finished, by outcome.", ["pipeline", "task", "outcome"]
)
ROWS = Counter(
    "sluice_rows_loaded_total", "Rows loaded, as reported by loaders.", ["pipeline", "task"]
)
REJECTED = Counter(
    "sluice_rows_rejected_total", "Rows quarantined, as reported by loaders.", ["pipeline", "task"]
)
ACTIVE_RUNS = Gauge("sluice_active_runs", "Runs this replica is executing.", ["pipeline"])
LAST_SUCCESS = Gauge(
    "sluice_last_success_timestamp_seconds",
    "Unix time of the last successful run per pipeline (for freshness alerts).",
    ["pipeline"],
)
SCHEDULE_INTERVAL = Gauge(
    "sluice_pipeline_schedule_interval_seconds",
    "Expected time between two runs of a scheduled pipeline (gap between its next two fire"
    " times); freshness alerts compare the age of the last success with it.",
    ["pipeline"],
)
PIPELINE_ERRORS = Gauge(
    "sluice_pipeline_definition_errors", "Pipeline files that failed validation at load."
)
HTTP_REQUESTS = Counter(
    "sluice_http_requests_total",
    "HTTP requests the orchestrator answered, by route template, method and status code.",
    ["route", "method", "code"],
)
HTTP_SECONDS = Histogram(
    "sluice_http_request_seconds",
    "Time to answer an HTTP request, by route template and method.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
STATE_DB_ERRORS = Counter("sluice_state_db_errors_total", "Errors from the run-state database.")
ALERTS = Counter(
    "sluice_alerts_total",
    "Alert messages by kind, channel (webhook, email) and outcome (sent, failed).",
    ["pipeline", "kind", "channel", "outcome"],
)


def count_state_db_errors(engine: Engine) -> None:
    """Count the errors the state database raises through ``engine`` (connect, query, commit).

    Integrity errors are left out: the store expects them (idempotency-key races) and handles them.
    """

    def _on_error(context: Any) -> None:
        if not isinstance(context.sqlalchemy_exception, IntegrityError):
            STATE_DB_ERRORS.inc()

    event.listen(engine, "handle_error", _on_error)


def schedule_interval(pipeline: Pipeline, now: datetime | None = None) -> float | None:
    """Seconds between the next two fire times of the pipeline's schedule (None: unscheduled)."""
    if not pipeline.schedule:
        return None
    start = (now or datetime.now(UTC)).astimezone(ZoneInfo(pipeline.timezone))
    fires = croniter(cron_expression(pipeline.schedule), start)
    first = fires.get_next(datetime)
    second = fires.get_next(datetime)
    return float((second - first).total_seconds())


def export_schedules(pipelines: Iterable[Pipeline]) -> None:
    """Publish the expected interval of every scheduled pipeline, dropping removed ones.

    Also creates the run and row counters of every pipeline at zero: a series that first appears
    at 1 hides that first increment from ``increase()``, so the first failed run would not alert.
    """
    SCHEDULE_INTERVAL.clear()
    for pipeline in pipelines:
        for status in FINAL_RUN_STATUSES:
            RUNS.labels(pipeline.name, status)
        for task in pipeline.tasks:
            ROWS.labels(pipeline.name, task.id)
            REJECTED.labels(pipeline.name, task.id)
        interval = schedule_interval(pipeline)
        if interval is not None:
            SCHEDULE_INTERVAL.labels(pipeline.name).set(interval)


def seed_last_success(store: Store, pipelines: Iterable[str]) -> None:
    """Set the last-success gauge from the state DB at start, so a restart keeps freshness."""
    for name in pipelines:
        runs = store.list_runs(pipeline=name, status="succeeded", limit=1)
        finished = runs[0].get("finished_at") if runs else None
        if finished:
            LAST_SUCCESS.labels(name).set(datetime.fromisoformat(finished).timestamp())


SCHEDULE_LAG = Gauge(
    "sluice_schedule_lag_seconds",
    "How far behind its schedule a pipeline is: age of the oldest due fire time not yet turned "
    "into a run (0 when up to date).",
    ["pipeline"],
)
SCHEDULE_DELAY = Histogram(
    "sluice_schedule_delay_seconds",
    "Delay from a schedule's fire time to the creation of its run.",
    ["pipeline"],
    buckets=LATENCY_BUCKETS,
)
LEADER = Gauge(
    "sluice_scheduler_leader",
    "1 while this orchestrator replica holds the scheduler lease (schedules and executes runs).",
)


class QueuedRunsCollector(Collector):
    """``sluice_queued_runs{pipeline}``: runs waiting in the state DB, read at scrape time.

    Counted from the shared state DB rather than tracked in memory, so every replica reports the
    same numbers whoever queued the runs (API, scheduler, GCS events, another replica).
    """

    NAME = "sluice_queued_runs"
    HELP = "Runs waiting in the queue (state DB), per pipeline."

    def __init__(self) -> None:
        self.source: Callable[[], dict[str, int]] | None = None

    def watch(self, source: Callable[[], dict[str, int]]) -> None:
        """Read the counts from ``source`` (e.g. ``Store.queued_counts``) at every scrape."""
        self.source = source

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.NAME, self.HELP, labels=["pipeline"])

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=["pipeline"])
        try:
            counts = self.source() if self.source else {}
        except Exception:  # the state DB is down: counted in STATE_DB_ERRORS, scrape goes on
            counts = {}
        for pipeline, count in sorted(counts.items()):
            family.add_metric([pipeline], count)
        yield family


QUEUED_RUNS = QueuedRunsCollector()
REGISTRY.register(QUEUED_RUNS)


async def count_http_requests(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """HTTP middleware: count and time every request by its route *template* (``/api/v1/runs/
    {run_id}``), never by its path, so run ids do not become label values."""
    start = time.perf_counter()
    code = "500"  # an exception escaping every handler becomes a 500
    try:
        response = await call_next(request)
        code = str(response.status_code)
        return response
    finally:
        route = getattr(request.scope.get("route"), "path", None) or "unmatched"
        HTTP_REQUESTS.labels(route, request.method, code).inc()
        HTTP_SECONDS.labels(route, request.method).observe(time.perf_counter() - start)
