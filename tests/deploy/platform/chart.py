"""Rendering helpers shared by the deploy tests: the chart, its CI values files, k8s objects."""

from __future__ import annotations

import copy
import functools
import importlib.util
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import helm_python
import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "helm" / "sluice"
CI_VALUES = CHART / "ci"
RELEASE = "sluice"
NAMESPACE = "etl"
SERVICES = ("extractor", "transformer", "loader", "orchestrator")
GRPC_SERVICES = ("extractor", "transformer", "loader")

# Values cases every chart test runs over: the defaults and each values file under helm/sluice/ci.
VALUES_CASES: dict[str, Path | None] = {
    "defaults": None,
    **{p.stem.removeprefix("values-"): p for p in sorted(CI_VALUES.glob("values-*.yaml"))},
}


def values_of(case: str) -> dict[str, Any]:
    """The user values of one case (empty for the defaults)."""
    path = VALUES_CASES[case]
    return {} if path is None else yaml.safe_load(path.read_text()) or {}


def render_templates(
    values: dict[str, Any] | None = None, chart: Path = CHART, release: str = RELEASE
) -> dict[str, str]:
    """Render with the real Helm SDK: template path -> text (NOTES.txt included)."""
    with helm_python.Chart.load(str(chart)) as loaded:
        return loaded.render(copy.deepcopy(values or {}), name=release, namespace=NAMESPACE)


def objects_of(rendered: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object of a render, in template order."""
    objects: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


@functools.cache
def _render_case(case: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
    rendered = render_templates(values_of(case))
    return rendered, objects_of(rendered)


def render_case(case: str) -> list[dict[str, Any]]:
    """The objects of one values case (cached; callers get a deep copy)."""
    return copy.deepcopy(_render_case(case)[1])


def notes_of(case: str) -> str:
    return _render_case(case)[0].get(f"{RELEASE}/templates/NOTES.txt", "")


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(object, pod spec) of every workload (Deployment, DaemonSet, StatefulSet, Job)."""
    for obj in objects:
        if obj["kind"] in ("Deployment", "DaemonSet", "StatefulSet", "Job"):
            yield obj, obj["spec"]["template"]["spec"]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Container env by name (the EnvVar objects)."""
    return {e["name"]: e for e in container.get("env", [])}


def copy_chart(tmp: Path) -> Path:
    """A private copy of the chart (to render with files removed or changed)."""
    target = tmp / "sluice"
    shutil.copytree(CHART, target)
    return target


def load_script(name: str) -> ModuleType:
    """Import scripts/<name>.py as a module (scripts/ is not a package)."""
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"sluice_scripts_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
