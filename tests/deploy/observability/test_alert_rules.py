"""Alert rules: promtool accepts them, their unit tests pass (and catch a broken rule), every
alert is documented in the runbook, and they only name metrics the services export."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.observability.prom import (
    RULE_TESTS,
    RULES,
    RUNBOOK,
    load_rules,
    metric_names,
    require_tool,
)

ALERTS = [rule for rule in load_rules() if "alert" in rule]
SYNTHETIC = {"up"}


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("promtool"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )


def runbook_anchors() -> set[str]:
    """GitHub-style anchors of the runbook's headings."""
    anchors = set()
    for line in RUNBOOK.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^a-z0-9 _-]", "", title).replace(" ", "-"))
    return anchors


def test_promtool_checks_the_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(load_rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("alert", "old", "new"),
    [
        # counting bad input as a server error must trip the INVALID_ARGUMENT negative case
        ("SluiceGrpcErrorRateHigh", 'code=~"INTERNAL|', 'code=~"INVALID_ARGUMENT|INTERNAL|'),
        # ignoring the scheduler lease must trip the stale non-leader negative case
        (
            "SluiceScheduleLagHigh",
            " * on (instance) group_left () (sluice_scheduler_leader == 1)",
            "",
        ),
        # a looser reject threshold must trip the 1% negative case
        (
            "SluiceRejectRatioHigh",
            "          )\n            > 0.05",
            "          )\n            > 0.005",
        ),
        # a failed run must not be confused with any run
        ("SluicePipelineRunFailed", '{status="failed"}', ""),
    ],
)
def test_the_unit_tests_catch_a_broken_rule(tmp_path: Path, alert: str, old: str, new: str) -> None:
    text = RULES.read_text()
    assert text.count(old) == 1, f"mutation anchor {old!r} not found once"
    (tmp_path / "tests").mkdir()
    (tmp_path / RULES.name).write_text(text.replace(old, new))
    shutil.copy(RULE_TESTS, tmp_path / "tests" / RULE_TESTS.name)
    result = promtool("test", "rules", f"tests/{RULE_TESTS.name}", cwd=tmp_path)
    assert result.returncode != 0
    assert f"alertname: {alert}" in result.stdout + result.stderr


@pytest.mark.parametrize("rule", ALERTS, ids=[a["alert"] for a in ALERTS])
def test_every_alert_is_documented(rule: dict[str, object]) -> None:
    labels = rule["labels"]
    annotations = rule["annotations"]
    assert isinstance(labels, dict) and isinstance(annotations, dict)
    assert labels["severity"] in ("critical", "warning", "info")
    assert annotations["summary"] and annotations["description"]
    anchor = f"docs/runbook.md#{str(rule['alert']).lower()}"
    assert annotations["runbook"] == anchor
    assert anchor.split("#", 1)[1] in runbook_anchors(), f"no runbook section for {anchor}"


def test_every_alert_has_unit_tests() -> None:
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert tested == {a["alert"] for a in ALERTS}


def test_the_alerts_the_issue_asks_for_exist() -> None:
    names = {a["alert"] for a in ALERTS}
    assert {
        "SluicePipelineRunFailed",
        "SluicePipelineNotFresh",
        "SluiceRejectRatioHigh",
        "SluiceScheduleLagHigh",
        "SluiceServiceDown",
        "SluiceGrpcErrorRateHigh",
        "SluiceUnitLatencyHigh",
    } <= names


@pytest.mark.parametrize("rule", ALERTS, ids=[a["alert"] for a in ALERTS])
def test_the_alert_names_only_exported_metrics(
    all_exported: set[str], rule: dict[str, str]
) -> None:
    unknown = metric_names(rule["expr"]) - all_exported - SYNTHETIC
    assert not unknown, f"{sorted(unknown)} are not exported by any service"


def test_a_missing_prometheus_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install"):
        require_tool("sluice-no-such-promtool")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        require_tool("sluice-no-such-promtool")
