"""Orchestrator errors."""

from __future__ import annotations

from services.common.errors import Conflict, NotFound, SpecError, Terminal


class PipelineNotFound(NotFound):
    code = "pipeline_not_found"


class RunNotFound(NotFound):
    code = "run_not_found"


class TooManyQueuedRuns(Terminal):
    """A pipeline has reached its cap of queued runs; the client should try again later."""

    code = "too_many_queued_runs"
    http_status = 429


__all__ = ["Conflict", "PipelineNotFound", "RunNotFound", "SpecError", "TooManyQueuedRuns"]
