"""The shipped alert rules and dashboards, evaluated by a real Prometheus on a real run: the
failed run and the 10% rejects page, nothing else does; the panels show data."""

from __future__ import annotations

import time

import pytest

from tests.deploy.observability.prom import (
    dashboard_queries,
    load_dashboards,
    metric_names,
    substitute,
)
from tests.e2e.observability.conftest import ObservedRuns

# Metrics with nothing (or only zeros) to show here: nothing queued, no database error, no run
# created by the schedule.
EMPTY_HERE = {
    "sluice_queued_runs",
    "sluice_loader_destination_errors_total",
    "sluice_schedule_delay_seconds_bucket",
    "sluice_alerts_total",  # no pipeline here has an alerts: block
}


def firing_after(
    observed: ObservedRuns, wanted: set[tuple[str, str]], timeout: float = 60
) -> set[tuple[str, str]]:
    """(alertname, pipeline) pairs firing once all of ``wanted`` fire (or the timeout ends)."""
    deadline = time.monotonic() + timeout
    while True:
        firing = {(a["alertname"], a.get("pipeline", "")) for a in observed.prometheus.firing()}
        if wanted <= firing or time.monotonic() > deadline:
            return firing
        time.sleep(1)


def test_the_failed_run_and_the_rejects_fire_and_nothing_else(observed: ObservedRuns) -> None:
    wanted = {("SluicePipelineRunFailed", "obs_broken"), ("SluiceRejectRatioHigh", "obs_sales")}
    firing = firing_after(observed, wanted)
    assert firing == wanted
    labels = {a["alertname"]: a for a in observed.prometheus.firing()}
    assert labels["SluicePipelineRunFailed"]["severity"] == "warning"
    assert labels["SluiceRejectRatioHigh"]["task"] == "sales"


@pytest.mark.parametrize(
    ("title", "expr"),
    [
        pytest.param(t, e, id=f"{t}:{'+'.join(sorted(metric_names(e)))}")
        for d in load_dashboards().values()
        for t, e in dashboard_queries(d)
    ],
)
def test_the_panel_shows_data(observed: ObservedRuns, title: str, expr: str) -> None:
    empty_here = bool(metric_names(expr) & EMPTY_HERE)
    deadline = time.monotonic() + 30
    result = observed.prometheus.vector(substitute(expr))
    while not result and time.monotonic() < deadline and not empty_here:
        time.sleep(1)
        result = observed.prometheus.vector(substitute(expr))
    if empty_here:
        assert not [r for r in result if float(r["value"][1]) != 0], result
    else:
        assert result, f"panel {title!r} shows no data after a real run: {expr}"
