"""Queueing a run of a pipeline: the one path the API, GCS events and the scheduler share."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.common.spec.model import Pipeline
from services.orchestrator import metrics
from services.orchestrator.state.store import NewRun, Store


def queue_run(
    store: Store,
    pipeline: Pipeline,
    *,
    trigger: str,
    logical_date: datetime,
    params: dict[str, Any],
    idempotency_key: str | None,
    max_queued: int,
) -> NewRun:
    """Create a queued run with the pipeline's current tasks; a new run counts as a trigger.

    Blocking (state DB). Raises like :meth:`Store.create_run` (``TooManyQueuedRuns``).
    """
    created = store.create_run(
        pipeline=pipeline.name,
        trigger=trigger,
        logical_date=logical_date,
        params=params,
        tasks=[(t.id, t.type) for t in pipeline.tasks],
        idempotency_key=idempotency_key,
        max_queued=max_queued,
    )
    if created.created:
        metrics.TRIGGERS.labels(pipeline.name, trigger).inc()
    return created
