"""A real Prometheus scrapes the running stack: what it reports equals what the databases say."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import duckdb

from tests.e2e.observability.conftest import ObservedRuns


def eventually(read: Callable[[], float], expected: float, what: str, timeout: float = 45) -> None:
    """Poll a Prometheus value until it equals ``expected`` (scrapes lag the run by ~1 s)."""
    deadline = time.monotonic() + timeout
    value = read()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.5)
        value = read()
    assert value == expected, f"{what}: Prometheus says {value}, the database says {expected}"


def scalar(observed: ObservedRuns, expr: str) -> float:
    result = observed.prometheus.vector(expr)
    return float(result[0]["value"][1]) if result else float("nan")


def test_row_counts_in_prometheus_equal_the_destination(observed: ObservedRuns) -> None:
    assert observed.sales["status"] == "succeeded", observed.sales
    with duckdb.connect(str(observed.duck), read_only=True) as con:
        loaded = con.execute("SELECT count(*) FROM sales").fetchone()
        rejected = con.execute("SELECT count(*) FROM sales__rejected").fetchone()
    assert loaded is not None and rejected is not None
    loaded_rows, rejected_rows = loaded[0], rejected[0]
    assert rejected_rows == 20 and loaded_rows == 180  # every tenth row lacks its store id

    selector = '{pipeline="obs_sales",task="sales"}'
    for metric, expected in [
        ("sluice_rows_loaded_total", loaded_rows),  # orchestrator, from the loaders' replies
        ("sluice_rows_rejected_total", rejected_rows),
        ("sluice_loader_rows_total", loaded_rows),  # loader, at commit
        ("sluice_loader_rows_rejected_total", rejected_rows),
        ("sluice_extractor_rows_total", observed.rows_read),  # extractor, rows read
        ("sluice_transformer_rows_in_total", observed.rows_read),
        ("sluice_transformer_rows_out_total", loaded_rows),
    ]:
        eventually(lambda m=metric: scalar(observed, f"sum({m}{selector})"), expected, metric)
    eventually(
        lambda: scalar(observed, f"sum(sluice_extractor_rows_skipped_total{selector})"),
        1.0,  # the one ragged row, skipped with on_bad_row: skip
        "extractor skipped rows",
    )
    eventually(
        lambda: scalar(
            observed, 'sum(sluice_transformer_rows_rejected_total{pipeline="obs_sales"})'
        ),
        rejected_rows,
        "transformer rejected rows",
    )
    # The API's totals agree with both.
    assert observed.sales["totals"]["rows_loaded"] == loaded_rows
    assert observed.sales["totals"]["rows_rejected"] == rejected_rows


def test_run_outcomes_in_prometheus_equal_the_state_db(observed: ObservedRuns) -> None:
    assert observed.broken["status"] == "failed", observed.broken
    runs = observed.prometheus
    for pipeline, status in (("obs_sales", "succeeded"), ("obs_broken", "failed")):
        eventually(
            lambda p=pipeline, s=status: runs.values(
                f'sluice_runs_total{{pipeline="{p}"}}', "status"
            ).get(s, 0.0),
            1.0,
            f"{pipeline} {status} runs",
        )
        by_status = runs.values(f'sluice_runs_total{{pipeline="{pipeline}"}}', "status")
        assert {s: v for s, v in by_status.items() if v} == {status: 1.0}
    units = runs.values('sum by (outcome) (sluice_units_total{pipeline="obs_sales"})', "outcome")
    api_units = observed.sales["tasks"][0]["units"]
    assert units.get("loaded") == sum(u["status"] == "succeeded" for u in api_units) == 2


def test_last_success_time_matches_the_run(observed: ObservedRuns) -> None:
    finished = datetime.fromisoformat(observed.sales["finished_at"]).timestamp()
    eventually(
        lambda: float(
            abs(
                scalar(observed, 'sluice_last_success_timestamp_seconds{pipeline="obs_sales"}')
                - finished
            )
            < 5
        ),
        1.0,
        "last success within 5 s of the run's finished_at",
    )
    # The failing pipeline never succeeded, so it has no freshness series at all.
    assert not observed.prometheus.vector(
        'sluice_last_success_timestamp_seconds{pipeline="obs_broken"}'
    )


def test_grpc_calls_are_counted_by_method_and_code(observed: ObservedRuns) -> None:
    calls = observed.prometheus
    eventually(
        lambda: scalar(
            observed, 'sum(sluice_grpc_server_calls_total{service="loader",method="Load"})'
        ),
        3.0,  # two sales units and the ragged file
        "loader Load calls",
    )
    codes = calls.values(
        'sum by (code) (sluice_grpc_server_calls_total{service="extractor",method="Pull"})', "code"
    )
    assert codes.get("OK") == 2.0
    assert codes.get("INVALID_ARGUMENT") == 1.0, codes


def test_run_detail_has_task_and_unit_timings(observed: ObservedRuns) -> None:
    # Where time went, without Grafana: the run detail API times every task and unit.
    run = observed.sales
    assert run["started_at"] and run["finished_at"] and run["duration_seconds"] >= 0
    (task,) = run["tasks"]
    assert task["started_at"] <= task["finished_at"]
    for unit in task["units"]:
        assert unit["started_at"] <= unit["finished_at"]
        assert unit["duration_seconds"] > 0


def test_http_requests_are_counted_by_route_template(observed: ObservedRuns) -> None:
    route = "/api/v1/pipelines/{name}/runs"
    eventually(
        lambda: scalar(
            observed,
            f'sum(sluice_http_requests_total{{route="{route}",method="POST",code="202"}})',
        ),
        2.0,  # obs_sales and obs_broken were triggered once each
        "trigger requests",
    )
    routes = observed.prometheus.values("sum by (route) (sluice_http_requests_total)", "route")
    assert "/api/v1/runs/{run_id}" in routes
    assert not [r for r in routes if observed.sales["run_id"] in r], "run ids must not be labels"
