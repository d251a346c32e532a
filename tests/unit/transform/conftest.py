"""Helpers for transformer unit tests: steps validated through the real pipeline model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from services.common.spec.model import Pipeline
from services.common.spec.steps import StepBase
from services.transformer.steps import UnitContext, UnitTransform

STEP_PACKAGE = Path(__file__).parent / "steppkg"


def steps(*raw: dict[str, Any]) -> list[StepBase]:
    pipeline = Pipeline.model_validate(
        {
            "name": "p",
            "tasks": [
                {
                    "id": "t",
                    "source": {"uri": "file:///x.csv"},
                    "transform": list(raw),
                    "destination": {"uri": "duckdb:///x", "table": "t"},
                }
            ],
        }
    )
    return list(pipeline.tasks[0].transform)  # type: ignore[union-attr]


def transform(*raw: dict[str, Any], **kwargs: Any) -> UnitTransform:
    context = kwargs.pop("context", UnitContext(file="f.csv", unit="file:///d/f.csv", run_id="r1"))
    return UnitTransform(steps(*raw), file="f.csv", header_lines=1, context=context, **kwargs)


def batch(**cols: Any) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(cols)


def run(*raw: dict[str, Any], offset: int = 0, **cols: Any) -> dict[str, list[Any]]:
    """Apply the steps to one batch and return the good rows as lists."""
    result = transform(*raw).apply(batch(**cols), row_offset=offset)
    assert result.good is not None
    return result.good.to_pydict()


@pytest.fixture
def step_package(monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user package on sys.path with its entry points in group ``sluice.steps``."""
    monkeypatch.syspath_prepend(str(STEP_PACKAGE))
    return STEP_PACKAGE
