"""The ``sluice`` command line.

``sluice up`` starts the four services locally; ``sluice run FILE`` runs one pipeline through a
running stack (or a temporary one) and prints a summary; ``sluice validate FILE`` checks a file
and names the offending line; ``sluice schema`` prints the JSON Schema for editors.
``sluice trigger|runs|status|cancel|retry`` talk to a running orchestrator's HTTP API with a
bearer token (``--token``, ``$SLUICE_TOKEN``, or the token ``sluice up`` wrote to .sluice/token).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from services.cli.remote import (
    DEFAULT_URL,
    FINAL,
    TOKEN_FILE,
    ApiError,
    add_remote_commands,
    api_call,
    open_client,
    parse_params,
    resolve_token,
    resolve_url,
    write_token,
)
from services.cli.report import print_destinations, print_summary
from services.cli.stack import LocalStack, Ports, StackConfig, StackError
from services.common.errors import SluiceError
from services.common.spec.loading import load_pipeline_file
from services.common.spec.model import json_schema
from services.orchestrator.auth import new_token


def cmd_validate(ns: argparse.Namespace) -> int:
    status = 0
    for file in ns.files:
        try:
            pipeline = load_pipeline_file(Path(file))
        except SluiceError as exc:
            print(f"invalid: {exc.full_message}", file=sys.stderr)
            status = 1
            continue
        except OSError as exc:
            print(f"cannot read {file}: {exc.strerror}", file=sys.stderr)
            status = 1
            continue
        print(f"ok: {file}: pipeline {pipeline.name!r} with {len(pipeline.tasks)} task(s)")
    return status


def cmd_schema(_ns: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2))
    return 0


def _stack_config(
    ns: argparse.Namespace, pipelines_dir: Path, ports: Ports, token: str | None
) -> StackConfig:
    return StackConfig(
        pipelines_dir=pipelines_dir.resolve(),
        state_url=ns.state or "sqlite:///.sluice/state.db",
        ports=ports,
        log_format="json",
        token=token,
    )


def cmd_up(ns: argparse.Namespace) -> int:
    ports = Ports(http=ns.port)
    token = new_token()
    write_token(token)
    stack = LocalStack(_stack_config(ns, Path(ns.pipelines), ports, token))
    print(
        "starting extractor, transformer, loader and orchestrator "
        f"(logs in {stack.log_path('').parent}) ..."
    )
    try:
        stack.start()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"ready: {stack.url}  (API docs {stack.url}/docs). Ctrl-C stops the stack.")
    print(f"operator token (also in {TOKEN_FILE}, used by the sluice commands): {token}")
    stopping = False

    def _stop(_sig: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stopping:
            for name, proc in stack.processes.items():
                if proc.poll() is not None:
                    print(f"{name} exited with status {proc.returncode}:\n{stack.tail(name)}")
                    stopping = True
            time.sleep(0.5)
    finally:
        print("stopping (in-flight units drain first) ...")
        stack.stop()
        print("stopped.")
    return 0


def _alive(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def cmd_run(ns: argparse.Namespace) -> int:
    path = Path(ns.file)
    try:
        pipeline = load_pipeline_file(path)
    except SluiceError as exc:
        print(f"invalid: {exc.full_message}", file=sys.stderr)
        return 2
    url = resolve_url(ns)
    token = resolve_token(ns)
    stack: LocalStack | None = None
    if not _alive(url):
        ports = Ports.free()
        token = new_token()
        stack = LocalStack(_stack_config(ns, path.parent, ports, token))
        print("no stack running: starting one for this run ...")
        try:
            stack.start()
        except StackError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        url = stack.url
    try:
        return _trigger_and_follow(url, token, pipeline.name, ns)
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if stack is not None:
            stack.stop()
            print_destinations(pipeline)


def _trigger_and_follow(url: str, token: str | None, name: str, ns: argparse.Namespace) -> int:
    params = parse_params(ns.param)
    with open_client(url, token) as client:
        reply = api_call(client, "POST", f"/api/v1/pipelines/{name}/runs", json={"params": params})
        run_id = reply["run_id"]
        print(f"run {run_id} of pipeline {name!r} queued")
        seen: set[tuple[str, str]] = set()
        while True:
            run = api_call(client, "GET", f"/api/v1/runs/{run_id}")
            for task in run["tasks"]:
                for unit in task.get("units", []):
                    key = (task["task_id"], unit["unit"] + str(unit["attempt"]))
                    if key not in seen:
                        seen.add(key)
                        _print_unit(task["task_id"], unit)
            if run["status"] in FINAL:
                break
            time.sleep(0.3)
    print_summary(run)
    return 0 if run["status"] == "succeeded" else 1


def _print_unit(task_id: str, unit: dict[str, Any]) -> None:
    name = Path(unit["unit"]).name if "://" not in unit["unit"] else unit["unit"]
    if unit["status"] == "skipped":
        print(f"  {task_id}: {name}: already loaded (ledger), skipped")
    elif unit["status"] == "succeeded":
        rejected = f", {unit['rows_rejected']} rejected" if unit["rows_rejected"] else ""
        print(
            f"  {task_id}: {name}: {unit['rows_loaded']} rows loaded{rejected} "
            f"in {unit['duration_seconds']:.2f}s"
        )
    else:
        print(f"  {task_id}: {name}: FAILED: {unit['error']}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sluice", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the four services locally; Ctrl-C stops them")
    up.add_argument("--pipelines", default="examples/pipelines", help="pipelines directory")
    up.add_argument("--state", help="state DB URL (default sqlite:///.sluice/state.db)")
    up.add_argument("--port", type=int, default=8080, help="orchestrator HTTP port")
    up.set_defaults(func=cmd_up)

    run = sub.add_parser("run", help="run one pipeline file and print a summary")
    run.add_argument("file")
    run.add_argument("--url", help=f"orchestrator URL (default $SLUICE_URL or {DEFAULT_URL})")
    run.add_argument("--state", help="state DB URL for a temporary stack")
    run.add_argument("--param", action="append", help="run parameter k=v (repeatable)")
    run.add_argument("--token", help="API token (default $SLUICE_TOKEN or .sluice/token)")
    run.set_defaults(func=cmd_run)

    validate = sub.add_parser("validate", help="check pipeline files; errors name the line")
    validate.add_argument("files", nargs="+")
    validate.set_defaults(func=cmd_validate)

    schema = sub.add_parser("schema", help="print the pipeline JSON Schema")
    schema.set_defaults(func=cmd_schema)
    add_remote_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        result: int = ns.func(ns)
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
