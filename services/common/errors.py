"""The one error root of Sluice.

Every error a user can cause or see is a :class:`SluiceError`. It knows its gRPC status, its HTTP
status and a stable ``code``, says whether a retry may help (:class:`Transient`) or cannot
(:class:`Terminal`), and carries structured context (file, line, column, unit, run id). The gRPC
interceptor (``services.common.grpc_server``) and the FastAPI handler (orchestrator) turn it into a
status with a readable message; :func:`from_grpc_error` rebuilds it on the calling side so a
message naming a file and line survives every hop of the pull chain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

import grpc

ERROR_METADATA_KEY = "sluice-error"


@dataclass(frozen=True)
class ErrorContext:
    """Where an error happened: enough to find the offending byte in the offending file."""

    file: str | None = None
    line: int | None = None
    column: str | None = None
    unit: str | None = None
    run_id: str | None = None
    task: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if v not in (None, {})}
        return data

    def describe(self) -> str:
        parts = []
        if self.file:
            where = self.file
            if self.line is not None:
                where += f", line {self.line}"
            if self.column:
                where += f", column {self.column!r}"
            parts.append(where)
        elif self.line is not None:
            parts.append(f"line {self.line}")
        return "; ".join(parts)


class SluiceError(Exception):
    """Root of every Sluice error. Subclasses set ``code`` and the status mappings."""

    code: ClassVar[str] = "internal"
    grpc_status: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL
    http_status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, context: ErrorContext | None = None, **ctx: Any) -> None:
        if context is None:
            known = {k: ctx.pop(k) for k in list(ctx) if k in ErrorContext.__dataclass_fields__}
            context = ErrorContext(**known, extra=ctx)
        self.message = message
        self.context = context
        super().__init__(self.full_message)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (the extractor's decoder child sends its errors back) with the message and
        # context apart: the default would rebuild it from the one-string full message.
        return type(self), (self.message, self.context)

    @property
    def full_message(self) -> str:
        where = self.context.describe()
        return f"{where}: {self.message}" if where else self.message

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.full_message,
            "detail": self.message,
            "retryable": self.retryable,
            "context": self.context.as_dict(),
        }


class Transient(SluiceError):
    """A retry may succeed (network, timeout, a service restarting)."""

    code = "transient"
    grpc_status = grpc.StatusCode.UNAVAILABLE
    http_status = 503
    retryable = True


class Terminal(SluiceError):
    """Retrying the same input gives the same failure."""

    code = "terminal"
    grpc_status = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 422


class BadInput(Terminal):
    """A source file cannot be read as declared (wrong format, ragged row, bad cell)."""

    code = "bad_input"
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 422


class SpecError(Terminal):
    """A pipeline definition is invalid."""

    code = "invalid_spec"
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 422


class NotFound(Terminal):
    code = "not_found"
    grpc_status = grpc.StatusCode.NOT_FOUND
    http_status = 404


class Conflict(Terminal):
    code = "conflict"
    grpc_status = grpc.StatusCode.ALREADY_EXISTS
    http_status = 409


class DestinationError(Transient):
    """The destination database failed; connection problems are worth a retry."""

    code = "destination_error"


class SchemaMismatch(Terminal):
    """Incoming columns do not fit the destination table and evolution is not allowed."""

    code = "schema_mismatch"
    grpc_status = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 422


class CheckFailed(Terminal):
    """A data-quality check failed beyond its allowed reject ratio."""

    code = "check_failed"
    grpc_status = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 422


class Unauthorized(Terminal):
    code = "unauthorized"
    grpc_status = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401


class Forbidden(Terminal):
    code = "forbidden"
    grpc_status = grpc.StatusCode.PERMISSION_DENIED
    http_status = 403


class Cancelled(Terminal):
    code = "cancelled"
    grpc_status = grpc.StatusCode.CANCELLED
    http_status = 409


_BY_CODE: dict[str, type[SluiceError]] = {}


def _register(cls: type[SluiceError]) -> None:
    _BY_CODE[cls.code] = cls
    for sub in cls.__subclasses__():
        _register(sub)


_register(SluiceError)

_TRANSIENT_GRPC = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.UNKNOWN,
}


def error_class(code: str) -> type[SluiceError]:
    """The registered error class for a stable ``code`` (falls back to the root)."""
    if code not in _BY_CODE:  # subclasses defined after import time (service modules)
        _register(SluiceError)
    return _BY_CODE.get(code, SluiceError)


def to_metadata(err: SluiceError) -> tuple[tuple[str, str], ...]:
    """Trailing metadata that lets the caller rebuild ``err`` with its context."""
    return ((ERROR_METADATA_KEY, json.dumps(err.to_dict())),)


def from_grpc_error(exc: grpc.aio.AioRpcError | grpc.RpcError, peer: str = "") -> SluiceError:
    """Rebuild the SluiceError a downstream service raised, or classify a transport failure."""
    metadata: Any = ()
    trailing = getattr(exc, "trailing_metadata", None)
    if callable(trailing):
        metadata = trailing() or ()
    for key, value in metadata:
        if key == ERROR_METADATA_KEY:
            data = json.loads(value)
            cls = error_class(data.get("code", "internal"))
            ctx = dict(data.get("context", {}))
            extra = ctx.pop("extra", {})
            return cls(data.get("detail", data["message"]), ErrorContext(**ctx, extra=extra))
    code = exc.code() if callable(getattr(exc, "code", None)) else grpc.StatusCode.UNKNOWN
    details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
    target = f" from {peer}" if peer else ""
    message = f"gRPC {code.name}{target}: {details}"
    if code in _TRANSIENT_GRPC:
        return Transient(message)
    if code == grpc.StatusCode.CANCELLED:
        return Cancelled(message)
    return SluiceError(message)
