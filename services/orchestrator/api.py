"""HTTP API v1: triggers, runs, pipelines and the effective configuration.

Every route needs a bearer token (``viewer``); those that change state need ``operator``.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.common.spec.model import Pipeline
from services.orchestrator import metrics
from services.orchestrator.auth import require_operator, require_viewer
from services.orchestrator.runtime import Runtime
from services.orchestrator.schedule import next_fire_times
from services.orchestrator.triggers import queue_run

router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_viewer)])
Operator = [Depends(require_operator)]
RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "skipped"]
NEXT_RUNS = 3
SECRET_KEY_RE = re.compile(r"token|password|secret|sha256|credential|private", re.IGNORECASE)
URL_PASSWORD_RE = re.compile(r"(?P<scheme>[a-z][a-z0-9+.\-]*://)(?P<user>[^:/@\s]*):[^@/\s]*@")


class TriggerBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] = Field(default_factory=dict, description="run parameters")
    logical_date: datetime | None = Field(
        default=None, description="the date the run is for ({{ ds }}); defaults to now (UTC)"
    )


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def pipeline_summary(pipeline: Pipeline, runtime: Runtime) -> dict[str, Any]:
    """Definition headline, last run and next scheduled times of one pipeline."""
    next_runs: list[str] = []
    if pipeline.schedule:
        after = datetime.now(UTC)
        next_runs = [
            t.isoformat()
            for t in next_fire_times(pipeline.schedule, pipeline.timezone, after, NEXT_RUNS)
        ]
    return {
        "name": pipeline.name,
        "description": pipeline.description,
        "schedule": pipeline.schedule,
        "timezone": pipeline.timezone,
        "catchup": pipeline.catchup,
        "max_active_runs": pipeline.max_active_runs,
        "tasks": [{"id": t.id, "type": t.type, "depends_on": t.depends_on} for t in pipeline.tasks],
        "last_run": runtime.store.last_run(pipeline.name),
        "next_runs": next_runs,
    }


@router.post("/pipelines/{name}/runs", status_code=202, dependencies=Operator)
async def trigger_run(
    name: str,
    request: Request,
    body: TriggerBody | None = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=256)] = None,
) -> JSONResponse:
    """Queue a run (202); the same ``Idempotency-Key`` returns the same run (200)."""
    runtime = _runtime(request)
    body = body or TriggerBody()
    pipeline = runtime.registry.get(name)
    logical_date = body.logical_date or datetime.now(UTC)
    if logical_date.tzinfo is None:
        logical_date = logical_date.replace(tzinfo=UTC)
    created = await asyncio.to_thread(
        queue_run,
        runtime.store,
        pipeline,
        trigger="api",
        logical_date=logical_date,
        params=body.params,
        idempotency_key=idempotency_key,
        max_queued=runtime.settings.execution.max_queued_runs,
    )
    run = created.run
    if created.created:
        runtime.executor.wake()
    return JSONResponse(
        status_code=202 if created.created else 200,
        content={
            "run_id": run["run_id"],
            "status": run["status"],
            "pipeline": pipeline.name,
            "logical_date": run["logical_date"],
            "created": created.created,
            "url": f"/api/v1/runs/{run['run_id']}",
        },
    )


@router.get("/runs/{run_id}")
async def get_run(run_id: str, request: Request) -> dict[str, Any]:
    """Status, tasks, units, row counts, rejects, errors and timings of one run."""
    return await asyncio.to_thread(_runtime(request).store.get_run, run_id)


@router.get("/runs")
async def list_runs(
    request: Request,
    pipeline: str | None = None,
    status: RunStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Run history, newest first; ``next_offset`` is null on the last page."""
    store = _runtime(request).store
    runs = await asyncio.to_thread(
        store.list_runs, pipeline=pipeline, status=status, limit=limit + 1, offset=offset
    )
    more = len(runs) > limit
    return {
        "runs": runs[:limit],
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if more else None,
    }


@router.post("/runs/{run_id}/cancel", status_code=202, dependencies=Operator)
async def cancel_run(run_id: str, request: Request) -> dict[str, Any]:
    """Cancel a queued or running run; in-flight unit streams and jobs are cancelled too.

    A queued run is cancelled at once. A running run executing on another replica is flagged;
    its owner cancels it within one heartbeat (``cancel_requested`` is true until then).
    """
    runtime = _runtime(request)
    if not await runtime.executor.cancel(run_id):
        await asyncio.to_thread(runtime.store.request_cancel, run_id)
    return await asyncio.to_thread(runtime.store.get_run, run_id)


@router.post("/runs/{run_id}/retry", status_code=202, dependencies=Operator)
async def retry_run(run_id: str, request: Request) -> dict[str, Any]:
    """Queue a failed or cancelled run again: tasks that succeeded are kept, the rest re-run."""
    runtime = _runtime(request)
    run = await asyncio.to_thread(runtime.store.retry_run, run_id)
    metrics.TRIGGERS.labels(run["pipeline"], "retry").inc()
    runtime.executor.wake()
    return run


@router.get("/pipelines")
async def list_pipelines(request: Request) -> dict[str, Any]:
    """Pipelines with their last run and next scheduled times, and files that failed validation."""
    runtime = _runtime(request)
    return {
        "pipelines": [
            await asyncio.to_thread(pipeline_summary, p, runtime)
            for p in runtime.registry.pipelines.values()
        ],
        "invalid_files": {path: err.message for path, err in runtime.registry.errors.items()},
    }


@router.get("/pipelines/{name}")
async def get_pipeline(name: str, request: Request) -> dict[str, Any]:
    """One pipeline: its definition, last run and next scheduled times."""
    runtime = _runtime(request)
    pipeline = runtime.registry.get(name)
    summary = await asyncio.to_thread(pipeline_summary, pipeline, runtime)
    summary["definition"] = pipeline.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return summary


def mask_secrets(value: Any, key: str = "") -> Any:
    """A copy with secret-looking keys replaced and passwords removed from URLs."""
    if isinstance(value, dict):
        return {k: mask_secrets(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v, key) for v in value]
    if value is not None and SECRET_KEY_RE.search(key):
        return "***"
    if isinstance(value, str):
        return URL_PASSWORD_RE.sub(r"\g<scheme>\g<user>:***@", value)
    return value


@router.get("/config")
async def get_config(request: Request) -> dict[str, Any]:
    """The effective orchestrator settings, secrets masked, plus this replica's role."""
    runtime = _runtime(request)
    settings = runtime.settings.model_dump(mode="json")
    return {
        "settings": mask_secrets(settings),
        "replica_id": runtime.replica_id,
        "leader": runtime.lease.is_leader(),
    }
