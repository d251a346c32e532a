"""Logging, configured once per process: ECS JSON lines on stdout for Filebeat.

Work context (run id, pipeline, task, unit, trace id) is bound once per unit with
:func:`bind_context` and stamped on every record made inside it, in every service, as
``labels.run_id`` and friends so Kibana can follow one run across the four services.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import Iterator
from typing import Any

import ecs_logging

from services.common.settings import LogSettings

_CONTEXT: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar(
    "sluice_log_context", default={}
)
LABEL_KEYS = ("run_id", "pipeline", "task", "unit")


@contextlib.contextmanager
def bind_context(**values: str | None) -> Iterator[None]:
    """Attach work context to every log record emitted inside the block."""
    merged = {**_CONTEXT.get(), **{k: v for k, v in values.items() if v}}
    token = _CONTEXT.set(merged)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def outcome_fields(
    status: str, error: str | None = None, code: str | None = None
) -> dict[str, str]:
    """ECS fields for the line that reports how a run ended, for ``extra=``.

    ``event.outcome`` is ``success`` / ``failure`` / ``unknown`` (cancelled, skipped), so Kibana
    finds failed runs by field rather than by message text; ``error.*`` carries the reason.
    """
    outcome = {"succeeded": "success", "failed": "failure"}.get(status, "unknown")
    fields = {"event.action": "run-finished", "event.outcome": outcome}
    if error:
        fields["error.message"] = error
    if code:
        fields["error.code"] = code
    return fields


def current_context() -> dict[str, str]:
    return dict(_CONTEXT.get())


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _CONTEXT.get()
        labels = {k: ctx[k] for k in LABEL_KEYS if k in ctx}
        if labels:
            record.labels = {**getattr(record, "labels", {}), **labels}
        if "trace_id" in ctx:
            setattr(record, "trace.id", ctx["trace_id"])
        record.service_name = self.service
        return True


class _EcsFormatter(ecs_logging.StdlibFormatter):
    def __init__(self, service: str) -> None:
        super().__init__(exclude_fields=["process", "log.original"])
        self.service = service

    def format_to_ecs(self, record: logging.LogRecord) -> dict[str, Any]:
        result: dict[str, Any] = super().format_to_ecs(record)
        result.setdefault("service", {})["name"] = self.service
        result.setdefault("event", {})["dataset"] = f"sluice.{self.service}"
        result.pop("service_name", None)
        # uvicorn adds an ANSI-coloured copy of its message as an extra; it is not ECS.
        result.pop("color_message", None)
        return result


class _ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        labels = getattr(record, "labels", None)
        if labels:
            base += " " + " ".join(f"{k}={v}" for k, v in labels.items())
        return base


def configure_logging(service: str, settings: LogSettings) -> None:
    """Install the one stdout handler of this process (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout)
    if settings.format == "json":
        handler.setFormatter(_EcsFormatter(service))
    else:
        handler.setFormatter(
            _ConsoleFormatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")
        )
    handler.addFilter(_ContextFilter(service))
    root.addHandler(handler)
    root.setLevel(settings.level)
    for noisy in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
