"""Reading pipeline YAML with line numbers, so every validation error points at its line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from services.common.errors import SpecError
from services.common.spec.model import STEP_TYPES, Pipeline

Path_ = tuple[str | int, ...]


def _construct(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            # Keys are names: YAML 1.1 would turn `on:` (alerts.on) into True, `1:` into 1.
            if isinstance(key_node, yaml.ScalarNode):
                key = key_node.value
            else:
                key = yaml.safe_load(yaml.serialize(key_node))
            result[key] = _construct(value_node, (*path, key), lines)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*path, i), lines) for i, item in enumerate(node.value)]
    return yaml.safe_load(yaml.serialize(node))


def parse_yaml(text: str, filename: str) -> tuple[Any, dict[Path_, int]]:
    """Parse YAML into plain data plus a map from each value's path to its line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise SpecError(f"invalid YAML: {exc.problem}", file=filename, line=line) from None
    lines: dict[Path_, int] = {}
    if node is None:
        raise SpecError("the file is empty", file=filename, line=1)
    return _construct(node, (), lines), lines


def _line_for(loc: tuple[Any, ...], lines: dict[Path_, int]) -> int | None:
    # pydantic adds union tags ("etl", "rename") to locations; drop what is not in the YAML.
    path: list[Any] = []
    best = lines.get(())
    for part in loc:
        candidate = (*path, part)
        if candidate in lines:
            path.append(part)
            best = lines[candidate]
    return best


def format_validation_error(exc: ValidationError, lines: dict[Path_, int]) -> str:
    """One line per problem: ``line N: tasks.0.source.uri: what is wrong``."""
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = ".".join(str(p) for p in loc if not (isinstance(p, str) and p in _TAGS)) or "(top)"
        msg = err["msg"].removeprefix("Value error, ")
        problems.append(f"line {_line_for(loc, lines)}: {where}: {msg}")
    return "\n".join(problems)


# pydantic puts union tags into error locations; they are not keys of the YAML.
_TAGS = {"etl", "sql", "job", *STEP_TYPES}


def pipeline_from_text(text: str, filename: str) -> Pipeline:
    """Validate one pipeline document; SpecError names the file and the offending line."""
    data, lines = parse_yaml(text, filename)
    if not isinstance(data, dict):
        raise SpecError("a pipeline file must be a mapping", file=filename, line=1)
    try:
        return Pipeline.model_validate(data)
    except ValidationError as exc:
        first_line = _line_for(tuple(exc.errors()[0]["loc"]), lines)
        raise SpecError(
            format_validation_error(exc, lines), file=filename, first_line=first_line
        ) from None


def load_pipeline_file(path: Path) -> Pipeline:
    return pipeline_from_text(path.read_text(encoding="utf-8"), str(path))


def pipeline_files(directory: Path) -> list[Path]:
    """The pipeline files of a directory (``*.yaml``, ``*.yml``), in a stable order."""
    return sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])


def load_pipeline_dir(directory: Path) -> tuple[dict[str, Pipeline], dict[str, SpecError]]:
    """Every ``*.yaml``/``*.yml`` under ``directory``: valid pipelines by name, errors by file."""
    pipelines: dict[str, Pipeline] = {}
    errors: dict[str, SpecError] = {}
    for path in pipeline_files(directory):
        try:
            pipeline = load_pipeline_file(path)
        except SpecError as exc:
            errors[str(path)] = exc
            continue
        if pipeline.name in pipelines:
            errors[str(path)] = SpecError(
                f"pipeline name {pipeline.name!r} is already defined by another file",
                file=str(path),
            )
            continue
        pipelines[pipeline.name] = pipeline
    return pipelines, errors
