"""skaffold.yaml, checked offline (no skaffold binary here): known keys, one artifact per
service built from its hadolint-clean Dockerfile, and every Helm release of every profile
renders with its values, deploying exactly the images skaffold builds."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.platform.chart import ROOT, SERVICES, find, objects_of, render_templates
from tests.deploy.platform.test_images import run_hadolint

SKAFFOLD = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
# Pipeline stages a skaffold config has at the top level and a profile may override.
STAGES = {
    "build",
    "test",
    "render",
    "manifests",
    "deploy",
    "portForward",
    "resourceSelector",
    "verify",
    "customActions",
}
TOP_LEVEL = STAGES | {"apiVersion", "kind", "metadata", "requires", "profiles"}
PROFILE_KEYS = STAGES | {"name", "activation", "requiresAllActivations", "patches"}


def apply_patches(config: dict[str, Any], patches: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON-patch subset skaffold profiles use (add, replace, remove)."""
    result = copy.deepcopy(config)
    for patch in patches:
        *parents, last = [p for p in patch["path"].split("/")[1:]]
        node: Any = result
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) and last != "-" else last
        if patch["op"] == "remove":
            del node[key]
        elif patch["op"] == "replace":
            assert key in node if isinstance(node, dict) else key < len(node), patch["path"]
            node[key] = patch["value"]
        elif patch["op"] == "add":
            if isinstance(node, list):
                node.insert(len(node) if key == "-" else key, patch["value"])
            else:
                node[key] = patch["value"]
        else:
            pytest.fail(f"unsupported patch op {patch['op']}")
    return result


def configs() -> dict[str, dict[str, Any]]:
    out = {"default": SKAFFOLD}
    for profile in SKAFFOLD.get("profiles", []):
        merged = apply_patches(SKAFFOLD, profile.get("patches", []))
        for section in ("build", "deploy", "portForward", "manifests"):
            if section in profile:
                if isinstance(merged.get(section), dict) and isinstance(profile[section], dict):
                    merged[section] = {**merged[section], **profile[section]}
                else:
                    merged[section] = profile[section]
        out[profile["name"]] = merged
    return out


def test_known_keys_and_version() -> None:
    assert set(SKAFFOLD) <= TOP_LEVEL, set(SKAFFOLD) - TOP_LEVEL
    assert re.fullmatch(r"skaffold/v4beta\d+", SKAFFOLD["apiVersion"])
    assert SKAFFOLD["kind"] == "Config"
    names = [p["name"] for p in SKAFFOLD["profiles"]]
    assert {"local", "gke"} <= set(names) and len(names) == len(set(names))
    for profile in SKAFFOLD["profiles"]:
        assert set(profile) <= PROFILE_KEYS, set(profile) - PROFILE_KEYS


def test_one_artifact_per_service_from_its_dockerfile() -> None:
    artifacts = SKAFFOLD["build"]["artifacts"]
    assert sorted(a["image"] for a in artifacts) == sorted(f"sluice-{s}" for s in SERVICES)
    for artifact in artifacts:
        context = ROOT / artifact.get("context", ".")
        dockerfile = context / artifact["docker"]["dockerfile"]
        assert dockerfile.is_file(), f"{artifact['image']}: {dockerfile} is missing"
        assert dockerfile.name == f"{artifact['image'].removeprefix('sluice-')}.Dockerfile"
        result = run_hadolint(dockerfile)
        assert result.returncode == 0, result.stdout


def _fill_templates(templates: dict[str, str], images: dict[str, str]) -> dict[str, Any]:
    """Set values as skaffold would: {{.IMAGE_REPO_x}} / {{.IMAGE_TAG_x}} per built artifact."""
    values: dict[str, Any] = {}
    for dotted, template in templates.items():

        def substitute(match: re.Match[str], template: str = template) -> str:
            kind, artifact = match.group(1), match.group(2)
            image = artifact.replace("_", "-")
            assert image in images, f"{template}: no artifact named {image}"
            return images[image].rsplit(":", 1)[0 if kind == "REPO" else 1]

        value = re.sub(r"\{\{\s*\.IMAGE_(REPO|TAG)_(\w+)\s*\}\}", substitute, template)
        node = values
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return values


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.mark.parametrize("profile", list(configs()))
def test_every_release_renders_with_the_built_images(profile: str) -> None:
    config = configs()[profile]
    built = {
        a["image"]: f"registry.test/team/{a['image']}:abc1234" for a in config["build"]["artifacts"]
    }
    releases = config["deploy"]["helm"]["releases"]
    assert releases
    for release in releases:
        chart = ROOT / release["chartPath"]
        assert (chart / "Chart.yaml").is_file()
        values: dict[str, Any] = {}
        for path in release.get("valuesFiles", []):
            assert (ROOT / path).is_file(), f"{profile}: values file {path} is missing"
            values = _merge(values, yaml.safe_load((ROOT / path).read_text()) or {})
        values = _merge(values, _fill_templates(release.get("setValueTemplates", {}), built))
        objects = objects_of(render_templates(values, chart=chart, release=release["name"]))
        images = {
            c["image"]
            for d in find(objects, "Deployment")
            for c in d["spec"]["template"]["spec"]["containers"]
        }
        assert images == set(built.values()), (
            f"{profile}: deploys {images}, builds {set(built.values())}"
        )
        forwards = config.get("portForward", [])
        orchestrator = [f for f in forwards if f["resourceName"].endswith("orchestrator")]
        assert orchestrator, "port-forward the orchestrator"
        service = next(
            s
            for s in find(objects, "Service")
            if s["metadata"]["name"] == orchestrator[0]["resourceName"]
        )
        assert orchestrator[0]["port"] in {p["port"] for p in service["spec"]["ports"]}
        assert orchestrator[0]["namespace"] == release["namespace"]


def test_gke_profile_uses_its_own_values() -> None:
    gke = configs()["gke"]
    (release,) = gke["deploy"]["helm"]["releases"]
    assert release["valuesFiles"] == ["helm/sluice/ci/values-gke.yaml"]
    assert "googleCloudBuild" in gke["build"]
    assert Path(ROOT / release["valuesFiles"][0]).read_text().count("gcpServiceAccount") >= 3


def test_only_the_local_profile_switches_api_tokens_off() -> None:
    """Auth must stay on unless a developer explicitly picks the laptop profile."""
    for name, config in configs().items():
        (release,) = config["deploy"]["helm"]["releases"]
        values: dict[str, Any] = {}
        for path in release.get("valuesFiles", []):
            values = _merge(values, yaml.safe_load((ROOT / path).read_text()) or {})
        disabled = values.get("orchestrator", {}).get("auth", {}).get("disabled", False)
        assert disabled == (name == "local"), name
