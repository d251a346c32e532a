"""docs/metrics.md is the catalogue of what the services really export: compared with a live
scrape of a running stack (names, types) and with the code (label names)."""

from __future__ import annotations

import importlib
import re

import pytest
from prometheus_client.metrics import MetricWrapperBase

from services.orchestrator.metrics import QueuedRunsCollector
from tests.deploy.observability.prom import METRICS_DOC, ROOT

MODULES = [f"services.{svc}.metrics" for svc in
           ("common", "extractor", "transformer", "loader", "orchestrator")]  # fmt: skip
ROW = re.compile(r"^\| `(sluice_\w+)` \| (\w+) \| ([^|]*) \|", re.MULTILINE)


def documented() -> dict[str, tuple[str, tuple[str, ...]]]:
    rows = {}
    for name, kind, labels in ROW.findall(METRICS_DOC.read_text()):
        names = tuple(x.strip() for x in labels.split(",") if x.strip() not in ("", "—"))
        assert name not in rows, f"{name} documented twice"
        rows[name] = (kind, names)
    return rows


def declared() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Metrics declared in the services' metrics modules: {exposed name: (type, labels)}."""
    found = {}
    for module in MODULES:
        for value in vars(importlib.import_module(module)).values():
            if isinstance(value, MetricWrapperBase):
                name = value._name + ("_total" if value._type == "counter" else "")
                found[name] = (value._type, tuple(value._labelnames))
            elif isinstance(value, QueuedRunsCollector):  # custom collector
                for family in value.describe():
                    found[family.name] = (family.type, tuple(family._labelnames))
    return found


def test_every_exported_metric_is_documented_with_its_type(families: dict[str, str]) -> None:
    live = families
    doc = documented()
    assert set(live) - set(doc) == set(), "exported but not in docs/metrics.md"
    assert set(doc) - set(live) == set(), "documented but not exported by any service"
    for name, kind in live.items():
        assert doc[name][0] == kind, f"{name}: documented as {doc[name][0]}, exported as {kind}"


@pytest.mark.parametrize("name", sorted(documented()))
def test_documented_labels_match_the_code(name: str) -> None:
    assert documented()[name][1] == declared()[name][1]


def test_no_unbounded_labels() -> None:
    forbidden = {"run_id", "unit", "file", "path", "uri", "error", "message"}
    for name, (_, labels) in declared().items():
        assert not forbidden & set(labels), f"{name} has an unbounded label"


def test_the_orchestrator_runs_one_worker_as_documented() -> None:
    # In-process metrics are exact only with one worker per process; docs/metrics.md says so.
    # Passing an app object (not an import string) to uvicorn.run rules out workers > 1.
    source = (ROOT / "services" / "orchestrator" / "__main__.py").read_text()
    call = source[source.index("uvicorn.run(") :]
    call = call[: call.index("\n    )") + 6]
    assert "workers" not in call, "several workers need prometheus_client multiprocess mode"
    assert re.search(r"uvicorn\.run\(\s*app,", call)
    assert "one uvicorn worker" in METRICS_DOC.read_text()
