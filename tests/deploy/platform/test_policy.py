"""Security and reliability policy of the rendered manifests, checked by checkov.

checkov pins a `packaging` version that clashes with the project's dependencies, so it lives in
its own virtualenv under .sluice/checkov-venv, created here once (idempotent). Every check that
fails must be on the short list below with the reason it does not apply; the checks a user relies
on (limits, probes, non-root, read-only root filesystem, pinned tags, no privilege escalation)
must pass on every Sluice workload. test_chart.py asserts the same properties directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.platform.chart import ROOT, SERVICES, VALUES_CASES, render_case

CHECKOV_VENV = ROOT / ".sluice" / "checkov-venv"
CHECKOV = CHECKOV_VENV / "bin" / "checkov"

# Must pass for every Sluice Deployment in every values case.
REQUIRED = {
    "CKV_K8S_10": "CPU requests",
    "CKV_K8S_11": "CPU limits",
    "CKV_K8S_12": "memory requests",
    "CKV_K8S_13": "memory limits",
    "CKV_K8S_8": "liveness probe",
    "CKV_K8S_9": "readiness probe",
    "CKV_K8S_22": "read-only root filesystem",
    "CKV_K8S_23": "no root containers",
    "CKV_K8S_40": "high UID",
    "CKV_K8S_14": "image tag fixed (not latest or blank)",
    "CKV_K8S_20": "allowPrivilegeEscalation false",
    "CKV_K8S_16": "not privileged",
    "CKV_K8S_28": "NET_RAW dropped",
    "CKV_K8S_37": "capabilities minimised",
    "CKV_K8S_31": "seccomp RuntimeDefault",
}


def _is_filebeat(resource: str) -> bool:
    return resource.endswith("-filebeat")


# check id -> (does this failing resource qualify?, why the check does not apply there)
ACCEPTED: dict[str, tuple[Any, str]] = {
    "CKV_K8S_15": (
        lambda r: True,
        "pull policy IfNotPresent: images are pinned by tag or digest, `latest` is refused",
    ),
    "CKV_K8S_43": (
        lambda r: True,
        "digests are supported (image.digest) but tags are the default for readable upgrades",
    ),
    "CKV_K8S_35": (
        lambda r: r.endswith("-orchestrator") or _is_filebeat(r),
        "SLUICE_STATE__URL and SMTP/Elasticsearch credentials are env vars from Secret refs: "
        "pydantic-settings and Filebeat read them from the environment",
    ),
    "CKV_K8S_38": (
        lambda r: r.endswith("-orchestrator") or _is_filebeat(r),
        "the orchestrator manages batch/v1 Jobs; Filebeat reads pod metadata",
    ),
    "CKV_K8S_23": (
        _is_filebeat,
        "Filebeat reads root-owned node logs (read-only, no capabilities)",
    ),
    "CKV_K8S_40": (_is_filebeat, "Filebeat runs as root to read node logs"),
}


# Accepted only in the values cases that switch the protection off on purpose.
ACCEPTED_IN_CASE = {
    ("no-autoscaling", "CKV2_K8S_6"): "networkPolicy.enabled=false in this values file",
}


def checkov() -> Path:
    """The checkov executable in its own virtualenv, installed on first use."""
    if CHECKOV.exists():
        return CHECKOV
    if not (CHECKOV_VENV / "bin" / "python").exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(CHECKOV_VENV)
    result = subprocess.run(
        [str(CHECKOV_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "checkov>=3,<4"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0 and CHECKOV.exists(), (
        f"installing checkov failed:\n{result.stderr[-2000:]}"
    )
    return CHECKOV


def run_checkov(objects: list[dict[str, Any]], directory: Path) -> dict[str, list[dict[str, Any]]]:
    directory.mkdir(parents=True, exist_ok=True)
    for index, obj in enumerate(objects):
        name = f"{index:02d}-{obj['kind']}-{obj['metadata']['name']}.yaml"
        (directory / name).write_text(yaml.safe_dump(obj))
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    result = subprocess.run(
        [
            str(checkov()),
            "--skip-download",
            "--framework",
            "kubernetes",
            "-d",
            str(directory),
            "-o",
            "json",
            "--compact",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=directory,
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    outcome: dict[str, list[dict[str, Any]]] = {"passed": [], "failed": []}
    for report in reports:
        if not isinstance(report, dict) or "results" not in report:
            continue
        outcome["passed"] += report["results"]["passed_checks"]
        outcome["failed"] += report["results"]["failed_checks"]
    return outcome


@pytest.fixture(scope="module")
def checkov_exe() -> Path:
    if sys.platform != "linux":
        pytest.skip("checkov venv set-up is written for Linux")
    return checkov()


@pytest.mark.parametrize("case", list(VALUES_CASES))
def test_checkov_finds_nothing_unexpected(case: str, tmp_path: Path, checkov_exe: Path) -> None:
    outcome = run_checkov(render_case(case), tmp_path / case)
    unexpected = [
        f"{f['check_id']} {f['resource']}: {f['check_name']}"
        for f in outcome["failed"]
        if not (f["check_id"] in ACCEPTED and ACCEPTED[f["check_id"]][0](f["resource"]))
        and (case, f["check_id"]) not in ACCEPTED_IN_CASE
    ]
    assert not unexpected, "checkov failures:\n" + "\n".join(unexpected)
    for svc in SERVICES:
        resource = f"Deployment.{'etl'}.sluice-{svc}"
        passed = {p["check_id"] for p in outcome["passed"] if p["resource"] == resource}
        missing = {k: v for k, v in REQUIRED.items() if k not in passed}
        assert not missing, f"{resource}: required checks did not pass: {missing}"


def test_checkov_catches_a_weakened_pod(tmp_path: Path, checkov_exe: Path) -> None:
    """Guard against a checkov run that silently checks nothing."""
    objects = render_case("defaults")
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    c = deployment["spec"]["template"]["spec"]["containers"][0]
    c["securityContext"]["allowPrivilegeEscalation"] = True
    c["securityContext"]["readOnlyRootFilesystem"] = False
    del c["resources"]["limits"]
    c["image"] = c["image"].rsplit(":", 1)[0] + ":latest"
    failed = {f["check_id"] for f in run_checkov([deployment], tmp_path)["failed"]}
    assert {"CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_11", "CKV_K8S_13", "CKV_K8S_14"} <= failed
