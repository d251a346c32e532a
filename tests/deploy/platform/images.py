"""Static facts about the service images: Dockerfile instructions, imports, requirement closure."""

from __future__ import annotations

import ast
import fnmatch
import functools
import importlib.metadata as metadata
import importlib.util
import json
import re
import shutil
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.platform.chart import ROOT

DOCKER = ROOT / "docker"


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str


def instructions(dockerfile: Path) -> list[Instruction]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    result: list[Instruction] = []
    pending = ""
    start = 0
    for number, raw in enumerate(dockerfile.read_text().splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        keyword, _, args = full.partition(" ")
        result.append(Instruction(start, keyword.upper(), args.strip()))
    return result


def final_stage(dockerfile: Path) -> list[Instruction]:
    steps = instructions(dockerfile)
    last_from = max(i for i, s in enumerate(steps) if s.keyword == "FROM")
    return steps[last_from:]


def exec_form(args: str) -> list[str] | None:
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def _type_checking_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _is_module(name: str) -> bool:
    if name.startswith("services."):
        return False
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def imported_modules(package_dir: Path) -> dict[str, str]:
    """Absolute imports in a package (type-checking-only imports excluded): module -> where."""
    found: dict[str, str] = {}

    def visit(node: ast.AST, where: Path) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking_block(child):
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.setdefault(alias.name, f"{where.relative_to(ROOT)}:{child.lineno}")
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                for alias in child.names:
                    # `from google.cloud import storage` imports the submodule google.cloud.storage.
                    name = f"{child.module}.{alias.name}"
                    module = name if _is_module(name) else child.module
                    found.setdefault(module, f"{where.relative_to(ROOT)}:{child.lineno}")
            visit(child, where)

    for path in sorted(package_dir.rglob("*.py")):
        visit(ast.parse(path.read_text()), path)
    return found


def third_party(modules: dict[str, str]) -> dict[str, str]:
    return {
        m: w
        for m, w in modules.items()
        if m.split(".")[0] not in sys.stdlib_module_names
        and m.split(".")[0] not in ("services", "__future__")
    }


@functools.cache
def _files_index() -> dict[str, str]:
    """Installed file path (resolved) -> canonical distribution name."""
    index: dict[str, str] = {}
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        for file in dist.files or []:
            if file.suffix in (".py", ".so", ".pyd") or file.name == "__init__.py":
                index[str(Path(str(dist.locate_file(file))).resolve())] = name
    return index


def distribution_of(module: str) -> str | None:
    """The installed distribution that provides `module` (by the file it loads from)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return None
    paths = [spec.origin] if spec.origin and spec.origin != "namespace" else []
    paths += [str(Path(p) / "__init__.py") for p in (spec.submodule_search_locations or [])]
    index = _files_index()
    for path in paths:
        if path and (owner := index.get(str(Path(path).resolve()))):
            return owner
    if spec.submodule_search_locations:  # a namespace package: any file under it
        for location in spec.submodule_search_locations:
            prefix = str(Path(location).resolve()) + "/"
            owners = {d for f, d in index.items() if f.startswith(prefix)}
            if len(owners) == 1:
                return owners.pop()
    return None


def requirement_closure(requirements: list[str]) -> set[str]:
    """Canonical names of every distribution pip would install for `requirements`."""
    seen: set[str] = set()
    todo = [(Requirement(r), frozenset(Requirement(r).extras)) for r in requirements]
    while todo:
        requirement, extras = todo.pop()
        name = canonicalize_name(requirement.name)
        key = name + "[" + ",".join(sorted(extras)) + "]"
        if key in seen:
            continue
        seen.add(key)
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            child = Requirement(text)
            environments = [{"extra": e} for e in extras] or [{"extra": ""}]
            if child.marker is None or any(child.marker.evaluate(env) for env in environments):
                todo.append((child, frozenset(child.extras)))
    return {s for s in seen if "[" not in s}


def dockerignore_includes(path: str) -> bool:
    """Whether `path` (relative to the repo) reaches the build context (.dockerignore rules)."""
    included = True
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule[1:] if negate else rule
        regex = fnmatch.translate(pattern).replace(".*", ".*")
        # `dir` also matches everything below it, like Docker does.
        if re.match(regex, path) or any(
            re.match(regex, "/".join(path.split("/")[:n])) for n in range(1, path.count("/") + 1)
        ):
            included = negate
    return included


def assemble_app_tree(service: str, target: Path) -> Path:
    """Recreate the image's /app from the Dockerfile's COPY instructions, read-only.

    The build stage copies sources into ./app (under WORKDIR /src) and the runtime stage copies
    /src/app to /app: running from this tree proves the image holds every module and data file
    its service needs, and that nothing writes beside its own code.
    """
    dockerfile = DOCKER / f"{service}.Dockerfile"
    workdir = "/"
    app = target / "app"
    for step in instructions(dockerfile):
        if step.keyword == "WORKDIR":
            workdir = step.args
            if step.args == "/app":
                break  # the runtime stage starts using the tree
        if step.keyword != "COPY" or step.args.startswith("--"):
            continue
        *sources, destination = step.args.split()
        absolute = str(Path(workdir) / destination)
        if not absolute.startswith("/src/app"):
            continue
        inside = app / Path(absolute).relative_to("/src/app")
        for source in sources:
            origin = ROOT / source
            if origin.is_dir():
                shutil.copytree(
                    origin, inside, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
                )
            else:
                inside.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, inside / origin.name)
    for path in [app, *app.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return app


def make_writable(tree: Path) -> None:
    """Undo assemble_app_tree's read-only bits so the test can clean up."""
    for path in [tree, *tree.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
