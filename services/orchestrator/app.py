"""The orchestrator's FastAPI application factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.common.errors import SluiceError
from services.orchestrator import api
from services.orchestrator.clients import DataPlane
from services.orchestrator.executor import RunExecutor
from services.orchestrator.metrics import seed_last_success
from services.orchestrator.registry import PipelineRegistry
from services.orchestrator.runtime import Runtime
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.state.store import Store

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"


def problem(status: int, code: str, title: str, detail: str, **extra: object) -> JSONResponse:
    """An RFC 9457 problem document with a stable ``code``."""
    body = {"type": f"https://sluice.dev/problems/{code}", "title": title, "status": status,
            "code": code, "detail": detail, **extra}  # fmt: skip
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def create_app(settings: OrchestratorSettings) -> FastAPI:
    """Build the app; the lifespan opens the state DB, loads pipelines and resumes runs."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = Store(settings.state.url)
        await asyncio.to_thread(store.create_schema)
        registry = PipelineRegistry(settings.pipelines.dir)
        registry.reload()
        await asyncio.to_thread(seed_last_success, store, list(registry.pipelines))
        dataplane = DataPlane(settings)
        executor = RunExecutor(settings, store, registry, dataplane)
        app.state.runtime = Runtime(settings, store, registry, dataplane, executor)
        for run_id in await asyncio.to_thread(store.unfinished_runs):
            log.info("resuming run %s left unfinished by a previous process", run_id)
            executor.submit(run_id)
        try:
            yield
        finally:
            await executor.shutdown()
            await dataplane.close()
            store.engine.dispose()

    app = FastAPI(
        title="Sluice orchestrator",
        version="0.1.0",
        description="Pipelines, triggers, runs. Errors are application/problem+json with a code.",
        lifespan=lifespan,
    )
    app.include_router(api.router)

    @app.exception_handler(SluiceError)
    async def _sluice_error(_request: Request, exc: SluiceError) -> JSONResponse:
        return problem(
            exc.http_status,
            exc.code,
            type(exc).__name__,
            exc.full_message,
            context=exc.context.as_dict(),
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return problem(422, "invalid_request", "Invalid request", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return problem(exc.status_code, code, str(exc.detail), str(exc.detail))

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        runtime: Runtime = request.app.state.runtime
        checks: dict[str, bool] = {}
        try:
            await asyncio.to_thread(runtime.store.ping)
            checks["state_db"] = True
        except Exception:
            checks["state_db"] = False
        checks.update(await runtime.dataplane.healthy())
        ready = all(checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
