"""Run-context templating (``{{ ds }}``) and secret references (``${ENV}``).

Templating is deliberately not Jinja: only names from the run context can appear, so a pipeline
file cannot run code. Secret references are resolved by the service that uses the secret, from its
own environment or secret files, so secrets never travel in run state or requests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from services.common.errors import SpecError

_TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}\}")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def run_context(
    *, run_id: str, pipeline: str, logical_date: datetime, params: Mapping[str, Any]
) -> dict[str, Any]:
    """The names a template may use."""
    return {
        "ds": logical_date.strftime("%Y-%m-%d"),
        "ds_nodash": logical_date.strftime("%Y%m%d"),
        "logical_date": logical_date.isoformat(),
        "run_id": run_id,
        "pipeline": pipeline,
        "params": dict(params),
    }


def _lookup(name: str, context: Mapping[str, Any]) -> Any:
    value: Any = context
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            known = ", ".join(sorted(k for k in context if k != "params"))
            raise SpecError(
                f"unknown template variable {{{{ {name} }}}}; known: {known}, params.<name>"
            )
        value = value[part]
    return value


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Substitute ``{{ name }}`` in every string of a nested structure."""
    if isinstance(value, str):
        return _TEMPLATE.sub(lambda m: str(_lookup(m.group(1), context)), value)
    if isinstance(value, list):
        return [render(v, context) for v in value]
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    return value


class SecretResolver:
    """Resolves ``${NAME}`` from the environment, then from ``<secrets_dir>/<NAME>`` files."""

    def __init__(self, environ: Mapping[str, str], secrets_dir: Path | None = None) -> None:
        self.environ = environ
        self.secrets_dir = secrets_dir

    def lookup(self, name: str) -> str:
        if name in self.environ:
            return self.environ[name]
        if self.secrets_dir is not None:
            candidate = self.secrets_dir / name
            if candidate.is_file():
                return candidate.read_text().strip()
        raise SpecError(f"secret reference ${{{name}}} is not set in the environment")

    def resolve(self, text: str) -> str:
        return _ENV_REF.sub(lambda m: self.lookup(m.group(1)), text)


def redact(text: str) -> str:
    """Hide passwords in URIs before they reach a log line or an error message."""
    return re.sub(r"(://[^/:@\s]+:)[^@\s]+@", r"\1***@", text)
