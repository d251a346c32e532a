"""A custom step from a user package, run by the real transformer process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from tests.conftest import trigger, wait_for_run, write_pipeline
from tests.unit.transform.conftest import STEP_PACKAGE

PIPELINE = """\
name: {name}
tasks:
  - id: people
    source: {{uri: "file://{data}/people.csv"}}
    transform:
      - rename: {{Name: name}}
      - python: {step}
        args: {args}
    destination: {{uri: "duckdb:///{db}", table: people}}
"""


def test_custom_step_runs_in_the_transformer_and_its_errors_reach_the_run(
    stack_factory: Any, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "people.csv").write_text("Name,age\nann lee,31\n,40\nbo,7\n")
    pipelines = tmp_path / "pipelines"
    db = tmp_path / "out.duckdb"
    write_pipeline(
        pipelines,
        PIPELINE.format(name="good", data=data, db=db, step="clean_names", args="{suffix: '*'}"),
        "good.yaml",
    )
    write_pipeline(
        pipelines,
        PIPELINE.format(name="bad", data=data, db=tmp_path / "b.duckdb", step="explode", args="{}"),
        "bad.yaml",
    )
    # The user's package is importable by the transformer only, as in its container image.
    stack = stack_factory(pipelines, service_env={"transformer": {"PYTHONPATH": str(STEP_PACKAGE)}})

    good = wait_for_run(stack.url, trigger(stack.url, "good"))
    assert good["status"] == "succeeded", good["tasks"][0].get("error")
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT name, age FROM people ORDER BY age").fetchall() == [
            ("Bo*", 7),
            ("Ann Lee*", 31),
        ]

    bad = wait_for_run(stack.url, trigger(stack.url, "bad"))
    assert bad["status"] == "failed"
    error = bad["tasks"][0]["units"][0]["error"]
    assert "step 2 (python: explode) failed on unit" in error
    assert "people.csv" in error
    assert "ValueError: bad things happened in user code" in error
    assert bad["tasks"][0]["attempts"] == 1  # a bug in a step is not retried
