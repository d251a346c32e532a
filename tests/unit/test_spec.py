from __future__ import annotations

from pathlib import Path

import pytest

from services.common.errors import SpecError
from services.common.spec.loading import load_pipeline_dir, pipeline_from_text
from services.common.spec.model import EtlTask, json_schema, topological_order
from services.common.spec.render import SecretResolver, redact, render

ROOT = Path(__file__).resolve().parents[2]

VALID = """\
name: daily_sales
schedule: "@daily"
timezone: Europe/Berlin
tasks:
  - id: sales
    source: {uri: "file:///data/{{ ds }}/*.csv"}
    transform:
      - rename: {Amt: amount}
      - cast: {amount: "decimal(12,2)"}
      - filter: "amount > 0"
    destination: {uri: "postgresql://etl:${PGPASSWORD}@db/warehouse", table: sales}
  - id: summary
    type: sql
    depends_on: [sales]
    destination: {uri: "postgresql://etl@db/warehouse"}
    sql: "SELECT 1"
"""


def test_valid_pipeline_parses() -> None:
    pipeline = pipeline_from_text(VALID, "daily.yaml")
    assert pipeline.name == "daily_sales"
    assert isinstance(pipeline.tasks[0], EtlTask)
    assert topological_order(pipeline) == ["sales", "summary"]


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (
            "name: x\ntasks:\n  - id: a\n    source: {uri: 'ftp://h/x'}\n"
            "    destination: {uri: 'duckdb:///x', table: t}\n",
            4,
            "unsupported source URI",
        ),
        (
            "name: x\ntasks:\n  - id: a\n    source: {uri: 'file:///x'}\n    transform:\n"
            "      - filter: \"__import__('os').system('id')\"\n"
            "    destination: {uri: 'duckdb:///x', table: t}\n",
            6,
            "only plain function calls",
        ),
        (
            "name: x\ntasks:\n  - id: a\n    source: {uri: 'file:///x'}\n    transform:\n"
            "      - explode: {a: b}\n    destination: {uri: 'duckdb:///x', table: t}\n",
            6,
            "unknown transform step",
        ),
        ("name: x\nschedule: 'every day'\ntasks: []\n", 2, "invalid schedule"),
        (
            "name: x\ntasks:\n  - id: a\n    source: {uri: 'file:///x'}\n"
            "    destination: {uri: 'postgresql://u:hunter2@db/w', table: t}\n",
            5,
            "literal password",
        ),
        (
            "name: x\ntasks:\n  - id: a\n    sourse: {uri: 'file:///x'}\n"
            "    destination: {uri: 'duckdb:///x', table: t}\n",
            4,
            "sourse",
        ),
    ],
)
def test_errors_name_file_and_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        pipeline_from_text(text, "bad.yaml")
    message = info.value.full_message
    assert message.startswith("bad.yaml: ")
    assert f"line {line}:" in message
    assert fragment in message


def test_dependency_cycle_is_rejected() -> None:
    text = (
        "name: x\ntasks:\n"
        "  - {id: a, type: sql, depends_on: [b], destination: {uri: 'duckdb:///d'}, sql: 'select 1'}\n"
        "  - {id: b, type: sql, depends_on: [a], destination: {uri: 'duckdb:///d'}, sql: 'select 1'}\n"
    )
    with pytest.raises(SpecError, match="cycle"):
        pipeline_from_text(text, "cycle.yaml")


def test_invalid_yaml_names_line() -> None:
    with pytest.raises(SpecError) as info:
        pipeline_from_text("name: x\ntasks: [\n  - a: b\n", "broken.yaml")
    assert info.value.context.line is not None


def test_examples_are_valid() -> None:
    pipelines, errors = load_pipeline_dir(ROOT / "examples" / "pipelines")
    assert not errors
    assert "demo" in pipelines


def test_json_schema_is_exported() -> None:
    schema = json_schema()
    assert schema["title"] == "Sluice pipeline"
    assert "tasks" in schema["properties"]


def test_templating_only_knows_run_context() -> None:
    assert render({"uri": "gs://b/{{ ds }}/x"}, {"ds": "2026-01-02"}) == {
        "uri": "gs://b/2026-01-02/x"
    }
    with pytest.raises(SpecError, match="unknown template variable"):
        render("{{ __class__ }}", {"ds": "x"})


def test_secrets_resolve_from_env_or_files(tmp_path: Path) -> None:
    (tmp_path / "DB_PW").write_text("s3cret\n")
    resolver = SecretResolver({"USER_NAME": "etl"}, tmp_path)
    assert (
        resolver.resolve("postgresql://${USER_NAME}:${DB_PW}@h/db")
        == "postgresql://etl:s3cret@h/db"
    )
    with pytest.raises(SpecError, match=r"\$\{MISSING\}"):
        resolver.resolve("${MISSING}")
    assert redact("postgresql://etl:s3cret@h/db") == "postgresql://etl:***@h/db"
