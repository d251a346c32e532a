"""Wiring of alerts into the orchestrator: ``POST /api/v1/alerts/test`` and the startup hook."""

from __future__ import annotations

import os
from collections.abc import Coroutine
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from services.common.errors import BadInput
from services.common.spec.model import Alerts
from services.common.spec.render import SecretResolver
from services.orchestrator.alerts import AlertDeliveryFailed, AlertMonitor, AlertSender, send_test
from services.orchestrator.auth import require_operator
from services.orchestrator.runtime import Runtime

router = APIRouter(prefix="/api/v1", tags=["alerts"])


def alert_sender(runtime: Runtime) -> AlertSender:
    # Webhook URLs are secrets (${NAME}); they resolve from the orchestrator's own environment.
    return AlertSender(runtime.settings.alerts, SecretResolver(os.environ))


class TestAlertBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pipeline: str | None = Field(default=None, description="use this pipeline's alert channels")
    webhook: str | None = Field(default=None, description="a webhook URL (or ${SECRET} reference)")
    email: list[str] | None = Field(default=None, description="e-mail recipients")


@router.post("/alerts/test", dependencies=[Depends(require_operator)])
async def test_alert(body: TestAlertBody, request: Request) -> dict[str, Any]:
    """Send a test message to a pipeline's alert channels, or to the given webhook / e-mail.

    Answers 200 with ``{"results": {"webhook": "sent", "email": "sent"}}``, 502
    (``alert_delivery_failed``) naming the channel that did not take it.
    """
    runtime: Runtime = request.app.state.runtime
    targets = Alerts()
    name = "test"
    if body.pipeline:
        pipeline = runtime.registry.get(body.pipeline)
        name = pipeline.name
        if pipeline.alerts is None and body.webhook is None and body.email is None:
            raise BadInput(f"pipeline {pipeline.name!r} has no alerts block")
        targets = pipeline.alerts or targets
    overrides: dict[str, Any] = {}
    if body.webhook is not None:
        overrides["webhook"] = body.webhook
    if body.email is not None:
        overrides["email"] = body.email
    targets = targets.model_copy(update=overrides)
    results = await send_test(alert_sender(runtime), targets, name)
    failed = {k: v for k, v in results.items() if v != "sent"}
    if failed:
        raise AlertDeliveryFailed("; ".join(f"{k}: {v}" for k, v in failed.items()))
    return {"pipeline": name, "results": results}


async def start_alerts(runtime: Runtime) -> list[Coroutine[Any, Any, None]]:
    """Startup hook: alert on finished runs, and check lateness and freshness in a loop."""
    monitor = AlertMonitor(
        alert_sender(runtime),
        lambda: runtime.registry.pipelines,
        runtime.store,
        runtime.settings.alerts,
    )
    runtime.executor.on_run_finished.append(monitor.on_run_finished)
    return [monitor.loop(runtime.lease.is_leader)]
