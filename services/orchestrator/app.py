"""The orchestrator's FastAPI application factory.

Where to plug things in:

* HTTP routes: an ``APIRouter`` module added to ``ROUTERS`` (protect it with
  ``Depends(auth.require_viewer)`` or ``Depends(auth.require_operator)``).
* Run and task lifecycle: append an async callable to ``runtime.executor.on_run_finished`` or
  ``on_task_finished`` in a ``StartupHook`` added to ``STARTUP_HOOKS``.
* Background loops: return them from a startup hook; they are cancelled at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.common.errors import SluiceError
from services.orchestrator import alerts_api, api, events, pages
from services.orchestrator.auth import Authenticator
from services.orchestrator.clients import DataPlane
from services.orchestrator.executor import RunExecutor
from services.orchestrator.loops import repeat
from services.orchestrator.metrics import QUEUED_RUNS, count_http_requests, seed_last_success
from services.orchestrator.registry import PipelineRegistry
from services.orchestrator.runtime import Runtime
from services.orchestrator.scheduler import LeaseKeeper, Scheduler, default_replica_id
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.state.store import Store

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"

ROUTERS: list[APIRouter] = [api.router, events.router, alerts_api.router, pages.router]
"""Routers mounted by ``create_app``."""

StartupHook = Callable[[Runtime], Awaitable[list[Coroutine[Any, Any, None]]]]
STARTUP_HOOKS: list[StartupHook] = [alerts_api.start_alerts]
"""Called once the runtime exists; may register listeners and return background loops."""


def problem(status: int, code: str, title: str, detail: str, **extra: object) -> JSONResponse:
    """An RFC 9457 problem document with a stable ``code``."""
    body = {"type": f"https://sluice.dev/problems/{code}", "title": title, "status": status,
            "code": code, "detail": detail, **extra}  # fmt: skip
    headers = {"WWW-Authenticate": 'Bearer realm="sluice"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


async def _watch_pipelines(registry: PipelineRegistry, every: float) -> None:
    """Pick up added, changed and removed pipeline files without a restart."""
    await repeat(
        lambda: asyncio.to_thread(registry.reload_if_changed),
        every,
        "reloading pipelines failed; keeping the previous definitions",
        wait_first=True,
    )


async def _start(settings: OrchestratorSettings) -> tuple[Runtime, list[asyncio.Task[None]]]:
    store = Store(settings.state.url)
    if settings.state.migrate:
        await asyncio.to_thread(store.migrate)
    registry = PipelineRegistry(settings.pipelines.dir)
    registry.reload()
    await asyncio.to_thread(seed_last_success, store, list(registry.pipelines))
    QUEUED_RUNS.watch(store.queued_counts)
    dataplane = DataPlane(settings)
    replica_id = settings.scheduler.replica_id or default_replica_id()
    executor = RunExecutor(settings, store, registry, dataplane, owner=replica_id)
    lease = LeaseKeeper(store, replica_id, settings.scheduler.lease_seconds)
    scheduler = Scheduler(settings, store, registry, on_created=executor.wake)
    runtime = Runtime(settings, store, registry, dataplane, executor, lease, scheduler, replica_id)
    if await lease.renew_once() and store.is_sqlite:
        # A SQLite state DB has one orchestrator: runs left "running" are ours from before a
        # restart; resume them now instead of waiting for their heartbeat to go stale.
        await executor.adopt_orphans(everyone=True)
    loops: list[Coroutine[Any, Any, None]] = [
        lease.run(),
        executor.dispatch_loop(lease.is_leader),
    ]
    if settings.scheduler.enabled:
        loops.append(scheduler.loop(lease.is_leader))
    if settings.pipelines.reload_seconds > 0:
        loops.append(_watch_pipelines(registry, settings.pipelines.reload_seconds))
    for hook in STARTUP_HOOKS:
        loops += await hook(runtime)
    tasks = [asyncio.create_task(loop) for loop in loops]
    executor.wake()
    return runtime, tasks


def create_app(settings: OrchestratorSettings) -> FastAPI:
    """Build the app; the lifespan migrates the state DB, loads pipelines, starts the loops.

    Raises:
        AuthConfigError: no token is configured and authentication is not explicitly disabled.
    """
    authenticator = Authenticator(settings.auth)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime, tasks = await _start(settings)
        app.state.runtime = runtime
        log.info("orchestrator %s started", runtime.replica_id)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await runtime.executor.shutdown()
            await runtime.lease.release()
            await runtime.dataplane.close()
            runtime.store.engine.dispose()

    app = FastAPI(
        title="Sluice orchestrator",
        version="0.1.0",
        description=(
            "Pipelines, triggers, runs. Authenticate with `Authorization: Bearer <token>` "
            "(role viewer reads, operator also triggers, cancels and retries). Errors are "
            "application/problem+json with a stable `code`."
        ),
        lifespan=lifespan,
    )
    app.state.authenticator = authenticator
    app.state.settings = settings
    for router in ROUTERS:
        app.include_router(router)
    app.middleware("http")(count_http_requests)

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
        body = {"ready": ready, "checks": checks, "leader": runtime.lease.is_leader()}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        # A collector queries the state DB (queued runs): not on the event loop.
        body = await asyncio.to_thread(generate_latest)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return app
