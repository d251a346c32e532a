"""Orchestrator errors."""

from __future__ import annotations

from services.common.errors import Conflict, NotFound, SpecError


class PipelineNotFound(NotFound):
    code = "pipeline_not_found"


class RunNotFound(NotFound):
    code = "run_not_found"


__all__ = ["Conflict", "PipelineNotFound", "RunNotFound", "SpecError"]
