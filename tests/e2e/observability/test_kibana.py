"""The Kibana saved searches, run on the log lines of a real run (KQL subset evaluated locally):
they only name fields the logs carry, and find what their titles promise."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.deploy.observability.kql import compile_kql, fields
from tests.deploy.observability.test_elk import search_source, searches
from tests.e2e.observability.conftest import ObservedRuns
from tests.e2e.observability.test_logs import SERVICES, flatten

Lines = list[dict[str, Any]]


@pytest.fixture(scope="module")
def raw(observed: ObservedRuns) -> list[dict[str, Any]]:
    docs = []
    for svc in SERVICES:
        for line in (observed.log_dir / f"{svc}.log").read_text().splitlines():
            docs.append(json.loads(line))
    return docs


@pytest.fixture(scope="module")
def lines(raw: list[dict[str, Any]]) -> Lines:
    return [flatten(doc) for doc in raw]


def expand(doc: dict[str, Any]) -> dict[str, Any]:
    """What Filebeat's ndjson ``expand_keys`` makes of a line; a key both leaf and object fails."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            assert isinstance(node, dict), f"{key}: {part} is already a value"
        if isinstance(value, dict):
            existing = node.setdefault(leaf, {})
            assert isinstance(existing, dict), f"{key} is both a value and an object"
            existing.update(expand(value))
        else:
            assert not isinstance(node.get(leaf), dict), f"{key} is both an object and a value"
            node[leaf] = value
    return out


def query(title: str) -> str:
    text: str = search_source(searches()[title])["query"]["query"]
    return text


def matching(lines: Lines, kql: str) -> Lines:
    predicate = compile_kql(kql)
    return [line for line in lines if predicate(line)]


def test_lines_expand_without_field_conflicts(raw: list[dict[str, Any]]) -> None:
    for doc in raw:
        expanded = expand(doc)
        assert isinstance(expanded["log"], dict) and "level" in expanded["log"]


def test_saved_searches_name_only_fields_the_logs_carry(lines: Lines) -> None:
    present = {key for line in lines for key in line}
    for title, obj in searches().items():
        wanted = fields(query(title)) | set(obj["attributes"]["columns"])
        wanted |= {field for field, _ in obj["attributes"]["sort"]}
        assert wanted <= present, f"{title}: {sorted(wanted - present)} never logged"


def test_failed_runs_finds_the_failed_run_only(lines: Lines, observed: ObservedRuns) -> None:
    found = matching(lines, query("Sluice: failed runs"))
    assert {line["labels.run_id"] for line in found} == {observed.broken["run_id"]}
    assert {"orchestrator", "extractor", "loader"} <= {line["service.name"] for line in found}
    assert any("ragged.csv, line 4" in line.get("error.message", "") for line in found)


def test_rejected_rows_sums_to_the_quarantined_rows(lines: Lines, observed: ObservedRuns) -> None:
    found = matching(lines, query("Sluice: rejected rows by pipeline"))
    assert {line["labels.pipeline"] for line in found} == {"obs_sales"}
    assert sum(line["sluice.rows.rejected"] for line in found) == 20
    assert len(found) == len(observed.sales["tasks"][0]["units"])  # one line per unit


def test_one_run_across_services(lines: Lines, observed: ObservedRuns) -> None:
    run_id = observed.sales["run_id"]
    kql = query("Sluice: one run across services").replace("*", f'"{run_id}"')
    found = matching(lines, kql)
    assert {line["service.name"] for line in found} == set(SERVICES)
    assert all(line["labels.run_id"] == run_id for line in found)
