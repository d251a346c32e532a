"""The log lines of a real run: one ECS JSON object per line in all four services, with the run,
pipeline, task and unit on every line of work and the run id as trace id across services."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.observability.conftest import ObservedRuns

SERVICES = ("extractor", "transformer", "loader", "orchestrator")
ECS_CORE = ("@timestamp", "log.level", "message", "ecs.version")


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}, "c.d": 2} -> {"a.b": 1, "c.d": 2} (ECS allows both spellings)."""
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def read_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        try:
            doc = json.loads(raw)
        except json.JSONDecodeError:
            pytest.fail(f"{path.name}:{number} is not JSON: {raw[:200]!r}")
        assert isinstance(doc, dict), f"{path.name}:{number} is not a JSON object"
        lines.append(flatten(doc))
    return lines


@pytest.fixture(scope="module")
def logs(observed: ObservedRuns) -> dict[str, list[dict[str, Any]]]:
    return {svc: read_lines(observed.log_dir / f"{svc}.log") for svc in SERVICES}


@pytest.mark.parametrize("service", SERVICES)
def test_every_line_is_an_ecs_document(logs: dict[str, list[dict[str, Any]]], service: str) -> None:
    lines = logs[service]
    assert lines, f"{service} wrote no log lines"
    for line in lines:
        missing = [field for field in ECS_CORE if field not in line]
        assert not missing, f"{service}: {missing} missing in {line}"
        assert line["service.name"] == service
        assert line["event.dataset"] == f"sluice.{service}"
        assert line["log.level"] in ("debug", "info", "warning", "error", "critical")
        assert not [k for k in line if k.startswith("color_message")], line


@pytest.mark.parametrize("service", SERVICES)
def test_lines_of_work_carry_the_run_context(
    logs: dict[str, list[dict[str, Any]]], observed: ObservedRuns, service: str
) -> None:
    runs = {observed.sales["run_id"]: "obs_sales", observed.broken["run_id"]: "obs_broken"}
    tasks = {"obs_sales": "sales", "obs_broken": "ragged"}
    if service == "transformer":  # obs_broken has no transform steps: it skips the transformer
        runs.pop(observed.broken["run_id"])
    work = [line for line in logs[service] if "labels.run_id" in line or "trace.id" in line]
    assert {line.get("labels.run_id") for line in work} == set(runs), f"{service}: runs missing"
    for line in work:
        run_id = line["labels.run_id"]
        # the orchestrator uses the run id as trace id, and it travels in gRPC metadata
        assert line["trace.id"] == run_id, line
        assert line["labels.pipeline"] == runs[run_id], line
        if "labels.unit" in line:
            assert line["labels.task"] == tasks[runs[run_id]], line
    unit_lines = [line for line in work if "labels.unit" in line]
    assert unit_lines, f"{service} logged no line about a unit"
    if service != "orchestrator":
        # In the data plane every line of a run is about one unit (Discover: about one task).
        for line in work:
            assert "labels.task" in line, line
    if service != "transformer":
        broken = {u["labels.unit"] for u in unit_lines if u["labels.pipeline"] == "obs_broken"}
        assert [u for u in broken if u.endswith("ragged.csv")], f"{service}: no line on the unit"


def test_one_run_can_be_followed_across_the_four_services(
    logs: dict[str, list[dict[str, Any]]], observed: ObservedRuns
) -> None:
    run_id = observed.sales["run_id"]
    seen = {svc for svc, lines in logs.items() for line in lines if line.get("trace.id") == run_id}
    assert seen == set(SERVICES)
    # each unit of the run shows up in the extractor, the transformer and the loader
    for unit in observed.sales["tasks"][0]["units"]:
        services = {
            svc
            for svc, lines in logs.items()
            for line in lines
            if line.get("trace.id") == run_id and line.get("labels.unit") == unit["unit"]
        }
        assert {"extractor", "transformer", "loader"} <= services, unit["unit"]


def test_errors_carry_ecs_error_fields(
    logs: dict[str, list[dict[str, Any]]], observed: ObservedRuns
) -> None:
    run_id = observed.broken["run_id"]
    for service in ("extractor", "loader"):
        errors = [
            line
            for line in logs[service]
            if line.get("labels.run_id") == run_id and "error.message" in line
        ]
        assert errors, f"{service} logged no error for the failed run"
        line = errors[0]
        assert line["log.level"] in ("warning", "error")
        assert line["error.code"] == "bad_input"
        assert line["error.type"] == "BadInput"
        assert "ragged.csv, line 4" in line["error.message"]
        assert line["labels.unit"].endswith("ragged.csv")


def test_row_counts_are_structured_fields(
    logs: dict[str, list[dict[str, Any]]], observed: ObservedRuns
) -> None:
    run_id = observed.sales["run_id"]
    loaded = [
        line
        for line in logs["loader"]
        if line.get("labels.run_id") == run_id and "sluice.rows.loaded" in line
    ]
    assert sum(line["sluice.rows.loaded"] for line in loaded) == 180
    assert sum(line["sluice.rows.rejected"] for line in loaded) == 20
    transformed = [
        line
        for line in logs["transformer"]
        if line.get("labels.run_id") == run_id and "sluice.rows.rejected" in line
    ]
    assert sum(line["sluice.rows.rejected"] for line in transformed) == 20


def test_the_run_outcome_is_a_structured_field(
    logs: dict[str, list[dict[str, Any]]], observed: ObservedRuns
) -> None:
    finished = {
        line["labels.run_id"]: line
        for line in logs["orchestrator"]
        if line.get("event.action") == "run-finished"
    }
    ok = finished[observed.sales["run_id"]]
    assert (ok["event.outcome"], ok["log.level"]) == ("success", "info")
    failed = finished[observed.broken["run_id"]]
    assert (failed["event.outcome"], failed["log.level"]) == ("failure", "error")
    assert "ragged" in failed["error.message"]  # the failed task; units carry the file and line


def test_skipped_rows_are_logged_with_the_unit(
    logs: dict[str, list[dict[str, Any]]], observed: ObservedRuns
) -> None:
    (line,) = [x for x in logs["extractor"] if "sluice.rows.skipped" in x]
    assert line["sluice.rows.skipped"] == 1
    assert line["labels.run_id"] == observed.sales["run_id"]
    assert line["labels.unit"].endswith("sales_0.csv")
