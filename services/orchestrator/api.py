"""HTTP API v1: triggers, runs and pipelines."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.common.errors import Conflict
from services.common.spec.model import Pipeline
from services.orchestrator import metrics
from services.orchestrator.runtime import Runtime
from services.orchestrator.state.models import FINAL_STATUSES

router = APIRouter(prefix="/api/v1")


class TriggerBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] = Field(default_factory=dict, description="run parameters")
    logical_date: datetime | None = Field(default=None, description="defaults to now (UTC)")


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def pipeline_summary(pipeline: Pipeline, runtime: Runtime) -> dict[str, Any]:
    return {
        "name": pipeline.name,
        "description": pipeline.description,
        "schedule": pipeline.schedule,
        "timezone": pipeline.timezone,
        "tasks": [{"id": t.id, "type": t.type, "depends_on": t.depends_on} for t in pipeline.tasks],
        "last_run": runtime.store.last_run(pipeline.name),
    }


@router.post("/pipelines/{name}/runs", status_code=202)
async def trigger_run(
    name: str,
    request: Request,
    body: TriggerBody | None = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    """Queue a run; the same ``Idempotency-Key`` returns the same run."""
    runtime = _runtime(request)
    body = body or TriggerBody()
    pipeline = runtime.registry.get(name)
    logical_date = body.logical_date or datetime.now(UTC)
    if logical_date.tzinfo is None:
        logical_date = logical_date.replace(tzinfo=UTC)
    created = await asyncio.to_thread(
        runtime.store.create_run,
        pipeline=pipeline.name,
        trigger="api",
        logical_date=logical_date,
        params=body.params,
        tasks=[(t.id, t.type) for t in pipeline.tasks],
        idempotency_key=idempotency_key,
    )
    run = created.run
    if created.created:
        metrics.TRIGGERS.labels(pipeline.name, "api").inc()
        runtime.executor.submit(run["run_id"])
    return JSONResponse(
        status_code=202 if created.created else 200,
        content={
            "run_id": run["run_id"],
            "status": run["status"],
            "pipeline": pipeline.name,
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
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Run history, newest first."""
    runs = await asyncio.to_thread(
        _runtime(request).store.list_runs,
        pipeline=pipeline,
        status=status,
        limit=limit,
        offset=offset,
    )
    return {"runs": runs, "limit": limit, "offset": offset}


@router.post("/runs/{run_id}/cancel", status_code=202)
async def cancel_run(run_id: str, request: Request) -> dict[str, Any]:
    """Cancel a queued or running run; in-flight unit streams are cancelled too."""
    runtime = _runtime(request)
    run = await asyncio.to_thread(runtime.store.get_run, run_id)
    if run["status"] in FINAL_STATUSES:
        raise Conflict(f"run {run_id} already ended with status {run['status']}")
    if not await runtime.executor.cancel(run_id):
        await asyncio.to_thread(
            runtime.store.set_run_status, run_id, "cancelled", "cancelled by request"
        )
    return await asyncio.to_thread(runtime.store.get_run, run_id)


@router.get("/pipelines")
async def list_pipelines(request: Request) -> dict[str, Any]:
    """Pipeline definitions with their last run, and files that failed validation."""
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
    """One pipeline: its definition and last run."""
    runtime = _runtime(request)
    pipeline = runtime.registry.get(name)
    summary = await asyncio.to_thread(pipeline_summary, pipeline, runtime)
    summary["definition"] = pipeline.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return summary
