"""CLI commands that talk to a running orchestrator over its HTTP API (with a bearer token)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
TOKEN_FILE = Path(".sluice/token")
FINAL = ("succeeded", "failed", "cancelled", "skipped")


def resolve_url(ns: argparse.Namespace) -> str:
    return str(getattr(ns, "url", None) or os.environ.get("SLUICE_URL") or DEFAULT_URL).rstrip("/")


def resolve_token(ns: argparse.Namespace) -> str | None:
    token = getattr(ns, "token", None) or os.environ.get("SLUICE_TOKEN")
    if not token and TOKEN_FILE.is_file():
        token = TOKEN_FILE.read_text().strip()
    return token or None


def open_client(url: str, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, timeout=30, headers=headers)


class ApiError(Exception):
    """An HTTP API error, already phrased for the terminal."""


def api_call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    try:
        reply = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise ApiError(f"cannot reach {client.base_url}: {exc}") from None
    if reply.status_code >= 400:
        try:
            body = reply.json()
            message = f"{body.get('detail') or body.get('title')} ({body.get('code')})"
        except ValueError:
            message = reply.text[:500]
        hint = ""
        if reply.status_code == 401:
            hint = "; pass --token, set SLUICE_TOKEN, or run `sluice up` (it writes .sluice/token)"
        raise ApiError(f"HTTP {reply.status_code}: {message}{hint}")
    return reply.json()


def parse_params(values: list[str] | None) -> dict[str, str]:
    params = {}
    for item in values or []:
        if "=" not in item:
            raise ApiError(f"--param {item!r}: expected key=value")
        key, value = item.split("=", 1)
        params[key] = value
    return params


def write_token(token: str) -> None:
    TOKEN_FILE.parent.mkdir(parents=True, exist_ok=True)
    TOKEN_FILE.touch(mode=0o600)
    TOKEN_FILE.write_text(token + "\n")


def _add_connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help=f"orchestrator URL (default $SLUICE_URL or {DEFAULT_URL})")
    parser.add_argument("--token", help="API token (default $SLUICE_TOKEN or .sluice/token)")
    parser.add_argument("--json", action="store_true", help="print the raw JSON reply")


def _request(ns: argparse.Namespace, method: str, path: str, **kwargs: Any) -> Any:
    """One API call on the orchestrator and token that ``ns`` (or the environment) names."""
    with open_client(resolve_url(ns), resolve_token(ns)) as client:
        return api_call(client, method, path, **kwargs)


def _short_time(value: str | None) -> str:
    return value[:19].replace("T", " ") if value else "-"


def cmd_trigger(ns: argparse.Namespace) -> int:
    body: dict[str, Any] = {"params": parse_params(ns.param)}
    if ns.logical_date:
        body["logical_date"] = ns.logical_date
    headers = {"Idempotency-Key": ns.idempotency_key} if ns.idempotency_key else {}
    reply = _request(ns, "POST", f"/api/v1/pipelines/{ns.name}/runs", json=body, headers=headers)
    if ns.json:
        print(json.dumps(reply, indent=2))
    else:
        state = "queued" if reply["created"] else f"already exists ({reply['status']})"
        print(f"{reply['run_id']}  {ns.name}  {state}")
    return 0


def cmd_runs(ns: argparse.Namespace) -> int:
    query = {"limit": ns.limit, "offset": ns.offset}
    if ns.pipeline:
        query["pipeline"] = ns.pipeline
    if ns.status:
        query["status"] = ns.status
    reply = _request(ns, "GET", "/api/v1/runs", params=query)
    if ns.json:
        print(json.dumps(reply, indent=2))
        return 0
    print(f"{'RUN ID':32}  {'PIPELINE':20}  {'STATUS':10}  {'TRIGGER':8}  {'CREATED':19}")
    for run in reply["runs"]:
        print(
            f"{run['run_id']:32}  {run['pipeline']:20}  {run['status']:10}  "
            f"{run['trigger']:8}  {_short_time(run['created_at'])}"
        )
    if reply.get("next_offset") is not None:
        print(f"(more: --offset {reply['next_offset']})")
    return 0


def print_run(run: dict[str, Any]) -> None:
    """Run headline and one line per task."""
    duration = run.get("duration_seconds")
    took = f" in {duration:.1f}s" if duration is not None else ""
    print(f"run {run['run_id']} of {run['pipeline']}: {run['status']}{took}")
    print(f"  logical date {run['logical_date']}, trigger {run['trigger']}")
    if run.get("error"):
        print(f"  error: {run['error']}")
    for task in run["tasks"]:
        rows = f", {task.get('rows_loaded', 0)} rows" if task["type"] == "etl" else ""
        rejected = f", {task['rows_rejected']} rejected" if task.get("rows_rejected") else ""
        print(
            f"  {task['task_id']:24} {task['status']:10} attempts {task['attempts']}"
            f"{rows}{rejected}"
        )
        if task.get("error"):
            print(f"      {task['error']}")


def cmd_status(ns: argparse.Namespace) -> int:
    run = _request(ns, "GET", f"/api/v1/runs/{ns.run_id}")
    if ns.json:
        print(json.dumps(run, indent=2))
    else:
        print_run(run)
    return 0 if run["status"] in ("succeeded", "queued", "running") else 1


def cmd_cancel(ns: argparse.Namespace) -> int:
    run = _request(ns, "POST", f"/api/v1/runs/{ns.run_id}/cancel")
    if ns.json:
        print(json.dumps(run, indent=2))
    elif run["status"] == "cancelled":
        print(f"run {ns.run_id} cancelled")
    else:
        print(f"run {ns.run_id}: cancellation requested (status {run['status']})")
    return 0


def cmd_retry(ns: argparse.Namespace) -> int:
    run = _request(ns, "POST", f"/api/v1/runs/{ns.run_id}/retry")
    if ns.json:
        print(json.dumps(run, indent=2))
    else:
        kept = [t["task_id"] for t in run["tasks"] if t["status"] == "succeeded"]
        print(f"run {ns.run_id} queued again; kept: {', '.join(kept) or 'nothing'}")
    return 0


def add_remote_commands(sub: Any) -> None:
    """Register trigger, runs, status, cancel and retry on the ``sluice`` parser."""
    trigger = sub.add_parser("trigger", help="queue a run of a pipeline")
    trigger.add_argument("name", help="pipeline name")
    trigger.add_argument("--param", action="append", help="run parameter k=v (repeatable)")
    trigger.add_argument("--logical-date", help="ISO date-time the run is for (default now)")
    trigger.add_argument("--idempotency-key", help="the same key returns the same run")
    _add_connection_args(trigger)
    trigger.set_defaults(func=cmd_trigger)

    runs = sub.add_parser("runs", help="list runs, newest first")
    runs.add_argument("--pipeline", help="only this pipeline")
    runs.add_argument("--status", help="only this status (queued, running, failed, ...)")
    runs.add_argument("--limit", type=int, default=20)
    runs.add_argument("--offset", type=int, default=0)
    _add_connection_args(runs)
    runs.set_defaults(func=cmd_runs)

    for name, func, text in (
        ("status", cmd_status, "show a run: status, tasks, rows, errors"),
        ("cancel", cmd_cancel, "cancel a queued or running run"),
        ("retry", cmd_retry, "re-run the failed tasks of a failed or cancelled run"),
    ):
        parser = sub.add_parser(name, help=text)
        parser.add_argument("run_id")
        _add_connection_args(parser)
        parser.set_defaults(func=func)
