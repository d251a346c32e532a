"""Helpers shared by the observability tests: tools, a real Prometheus, metric names, PromQL.

Prometheus and promtool come from the Debian package ``prometheus`` (listed in
``.ci/apt-packages.txt``). Without them the tests skip locally, and fail under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
import yaml

from services.cli.stack import LocalStack, free_port

ROOT = Path(__file__).resolve().parents[3]
FILES = ROOT / "helm" / "sluice" / "files"
DASHBOARDS = FILES / "dashboards"
RULES = FILES / "prometheus" / "sluice-alerts.yaml"
RULE_TESTS = FILES / "prometheus" / "tests" / "sluice-alerts.test.yaml"
RUNBOOK = ROOT / "docs" / "runbook.md"
METRICS_DOC = ROOT / "docs" / "metrics.md"


def require_tool(name: str, packages: str = "prometheus") -> str:
    """Path of a binary from the Debian ``packages``; missing means skip locally and fail under
    CI=true."""
    path = shutil.which(name)
    if path:
        return path
    message = (
        f"{name} is not installed: apt-get install -y --no-install-recommends {packages} "
        "(listed in .ci/apt-packages.txt)"
    )
    unavailable(message)


def unavailable(message: str) -> NoReturn:
    """A test tool cannot be had: skip locally, fail under CI=true (CI installs them all)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def scrape_targets(stack: LocalStack) -> dict[str, str]:
    """The metrics endpoints of a local stack, by job name (as the chart names its Services)."""
    p = stack.config.ports
    return {
        "sluice-extractor": f"127.0.0.1:{p.extractor_metrics}",
        "sluice-transformer": f"127.0.0.1:{p.transformer_metrics}",
        "sluice-loader": f"127.0.0.1:{p.loader_metrics}",
        "sluice-orchestrator": f"127.0.0.1:{p.http}",
    }


@dataclass
class Prometheus:
    """A real Prometheus server on loopback."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def query(self, expr: str) -> httpx.Response:
        return httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)

    def vector(self, expr: str) -> list[dict[str, Any]]:
        reply = self.query(expr)
        assert reply.status_code == 200, f"{expr}: {reply.text}"
        result: list[dict[str, Any]] = reply.json()["data"]["result"]
        return result

    def values(self, expr: str, by: str) -> dict[str, float]:
        """An instant vector as {value of label `by`: sample value}."""
        return {r["metric"].get(by, ""): float(r["value"][1]) for r in self.vector(expr)}

    def wait_scraped(self, jobs: Iterable[str], timeout: float = 60.0) -> None:
        """Wait until every job has been scraped successfully at least once."""
        wanted = set(jobs)
        deadline = time.monotonic() + timeout
        up: dict[str, float] = {}
        while time.monotonic() < deadline:
            up = self.values("up", "job")
            if all(up.get(job) == 1.0 for job in wanted):
                return
            time.sleep(0.5)
        raise AssertionError(f"targets not up after {timeout:.0f}s: {up}\n{self.tail()}")

    def firing(self) -> list[dict[str, str]]:
        """Labels of the alerts currently firing."""
        reply = httpx.get(f"{self.url}/api/v1/alerts", timeout=10)
        assert reply.status_code == 200, reply.text
        alerts = reply.json()["data"]["alerts"]
        return [a["labels"] for a in alerts if a["state"] == "firing"]

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def run_prometheus(
    workdir: Path, targets: Mapping[str, str], rule_files: Iterable[Path] = ()
) -> Iterator[Prometheus]:
    """Start Prometheus scraping ``targets`` ({job: host:port}) every second, evaluating
    ``rule_files`` every second; stop it afterwards."""
    binary = require_tool("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]}
            for job, target in targets.items()
        ],
    }
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Prometheus(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{server.tail()}")
            try:
                if httpx.get(f"{server.url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"prometheus not ready after 60s:\n{server.tail()}")
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# metric names -------------------------------------------------------------------------------

_SUFFIXES = {
    "counter": ("_total", "_created", ""),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created", ""),
    "gauge": ("",),
    "untyped": ("",),
    "info": ("_info", ""),
}


def exported_names(exposition: str) -> dict[str, str]:
    """Every series name an exposition can carry, mapped to its family's TYPE.

    Families are read from the ``# TYPE`` lines, so labelled metrics without samples yet count.
    """
    names: dict[str, str] = {}
    for line in exposition.splitlines():
        match = re.match(r"# TYPE (\S+) (\S+)", line)
        if match:
            family, kind = match.groups()
            base = family.removesuffix("_total") if kind == "counter" else family
            for suffix in _SUFFIXES.get(kind, ("",)):
                names[base + suffix] = kind
    return names


def exported_families(exposition: str) -> dict[str, str]:
    """{family name as exposed (counters with ``_total``): type} from the ``# TYPE`` lines."""
    families = {}
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.MULTILINE):
        if kind == "counter" and not family.endswith("_total"):
            family += "_total"
        families[family] = kind
    return families


def scrape(url: str) -> str:
    reply = httpx.get(url, timeout=10)
    assert reply.status_code == 200, f"{url}: {reply.status_code} {reply.text[:200]}"
    return reply.text


def scrape_stack(stack: LocalStack) -> dict[str, str]:
    """{job: exposition text} of a live scrape of every /metrics of the stack."""
    return {
        job: scrape(f"http://{target}/metrics") for job, target in scrape_targets(stack).items()
    }


# PromQL -------------------------------------------------------------------------------------

GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$pipeline": ".*",
}
_CLAUSE = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
             "group_left", "group_right", "inf", "nan"}  # fmt: skip


def substitute(expr: str) -> str:
    """Replace Grafana's variables by values Prometheus accepts."""
    for name, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels or keywords)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = _CLAUSE.sub("", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


# dashboards and rules -----------------------------------------------------------------------


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def dashboard_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, expr) for every target of every panel."""
    for panel in dashboard_panels(dashboard):
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield panel["title"], target["expr"]


def load_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]
