"""Every step example in the README's "Transform steps and checks" section validates."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.common.spec.model import Pipeline

README = Path(__file__).resolve().parents[3] / "README.md"
MARKER = "<!-- section owned by the transformation work"


def section() -> str:
    text = README.read_text()
    start = text.index(MARKER)
    return text[start : text.index("\n## ", start)]


def pipeline(task: dict[str, Any]) -> Pipeline:
    task = {
        "id": "t",
        "source": {"uri": "file:///x.csv"},
        "destination": {"uri": "duckdb:///x", "table": "t"},
        **task,
    }
    return Pipeline.model_validate({"name": "p", "tasks": [task]})


def table_examples() -> list[str]:
    return re.findall(r"^\| `[a-z_ /]+`[^|]*\| `(- [^`]+)`", section(), flags=re.M)


def yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", section(), flags=re.S)


@pytest.mark.parametrize("example", table_examples())
def test_step_reference_examples_validate(example: str) -> None:
    steps = yaml.safe_load(example)
    if "python" in steps[0] and "args" not in steps[0]:
        steps[0]["python"] = steps[0]["python"].split()[0]
    assert pipeline({"transform": steps}).tasks[0].transform  # type: ignore[union-attr]


def test_yaml_blocks_validate() -> None:
    blocks = yaml_blocks()
    assert len(blocks) >= 4
    for block in blocks:
        data = yaml.safe_load(block)
        if isinstance(data, list) and "id" in data[0]:
            pipeline(data[0])
        elif isinstance(data, list):
            pipeline({"transform": data})
        else:
            pipeline(data)


def test_the_reference_lists_every_step() -> None:
    from services.common.spec.steps import STEP_TYPES

    first_cells = re.findall(r"^\| ([^|]+)\|", section(), flags=re.M)
    documented = {name for cell in first_cells for name in re.findall(r"`([a-z_]+)`", cell)}
    assert set(STEP_TYPES) - {"check"} <= documented
