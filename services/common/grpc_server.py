"""The gRPC server bootstrap every data-plane service uses.

``start_grpc_server`` builds a ``grpc.aio`` server with the standard health service, server
reflection and the Sluice interceptor (error mapping + call metrics), binds it (port 0 in tests)
and starts it. ``run_until_signal`` keeps it running until SIGTERM/SIGINT, then marks the service
NOT_SERVING (so load balancers stop sending new streams) and drains in-flight streams within the
grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common import wire
from services.common.errors import SluiceError, to_metadata
from services.common.logs import bind_context
from services.common.metrics import GRPC_INFLIGHT, GRPC_SERVER_CALLS, GRPC_SERVER_SECONDS
from services.common.settings import GrpcServerSettings

log = logging.getLogger(__name__)

RUN_ID_METADATA_KEY = "sluice-run-id"
TRACE_ID_METADATA_KEY = "sluice-trace-id"


def metadata_value(context: grpc.aio.ServicerContext, key: str) -> str | None:
    """One value of the call's invocation metadata."""
    for item in context.invocation_metadata() or ():
        if item.key == key:
            return str(item.value)
    return None


def call_log_context(request: Any, context: grpc.aio.ServicerContext) -> dict[str, str | None]:
    """Work context of a call (run, pipeline, task, unit, trace id) for its log lines.

    Bound by the interceptor around the whole call, so even the lines it writes itself when a
    handler fails (after the handler's own context is gone) carry the run and the trace id.
    """
    unit = getattr(request, "unit", None)
    return {
        "run_id": getattr(request, "run_id", None) or metadata_value(context, RUN_ID_METADATA_KEY),
        "pipeline": getattr(request, "pipeline", None),
        "task": getattr(request, "task", None),
        "unit": getattr(unit, "id", None),
        "trace_id": metadata_value(context, TRACE_ID_METADATA_KEY),
    }


class SluiceServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Turns SluiceError into a gRPC status with details and counts every call.

    Unexpected exceptions become INTERNAL with the exception text, and are logged with their
    stack, so a bug in one unit never takes the process down.
    """

    def __init__(self, service: str) -> None:
        self.service = service

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return None
        method = str(details.method).rsplit("/", 1)[-1]
        if method in ("Check", "Watch", "ServerReflectionInfo"):
            return handler
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method),
                request_deserializer=handler.request_deserializer,
                # The streams carry record batches the services encode themselves
                # (services.common.wire); anything else serialises as usual.
                response_serializer=wire.serialize,
            )
        return handler

    async def _fail(
        self, context: grpc.aio.ServicerContext, method: str, exc: BaseException
    ) -> None:
        if isinstance(exc, SluiceError):
            GRPC_SERVER_CALLS.labels(self.service, method, exc.grpc_status.name).inc()
            log.warning(
                "%s failed: %s",
                method,
                exc.full_message,
                extra={
                    "error.code": exc.code,
                    "error.type": type(exc).__name__,
                    "error.message": exc.full_message,
                },
            )
            await context.abort(exc.grpc_status, exc.full_message, to_metadata(exc))
        GRPC_SERVER_CALLS.labels(self.service, method, "INTERNAL").inc()
        log.exception("%s crashed", method)
        await context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")

    @contextlib.asynccontextmanager
    async def _tracked(self, context: grpc.aio.ServicerContext, method: str) -> AsyncIterator[None]:
        """Count, time and map the errors of one call, unary or streaming alike."""
        start = time.perf_counter()
        GRPC_INFLIGHT.labels(self.service, method).inc()
        try:
            yield
        except (asyncio.CancelledError, GeneratorExit):
            # A stream the client abandons (cancelled while waiting, or closed at a yield).
            GRPC_SERVER_CALLS.labels(self.service, method, "CANCELLED").inc()
            raise
        except Exception as exc:
            if _is_abort(exc):
                raise
            await self._fail(context, method, exc)
            raise
        finally:
            GRPC_INFLIGHT.labels(self.service, method).dec()
            GRPC_SERVER_SECONDS.labels(self.service, method).observe(time.perf_counter() - start)
        GRPC_SERVER_CALLS.labels(self.service, method, "OK").inc()

    def _wrap_unary(self, inner: Any, method: str) -> Any:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            with bind_context(**call_log_context(request, context)):
                async with self._tracked(context, method):
                    return await inner(request, context)

        return call

    def _wrap_stream(self, inner: Any, method: str) -> Any:
        # One generator frame holds the log context, the tracking and the yield, so closing the
        # stream at a yield reaches the tracker as GeneratorExit.
        async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            with bind_context(**call_log_context(request, context)):
                async with self._tracked(context, method):
                    async for item in inner(request, context):
                        yield item

        return call


def _is_abort(exc: BaseException) -> bool:
    # context.abort() raises grpc.aio.AbortError; it must propagate untouched.
    return type(exc).__name__ == "AbortError"


@dataclass
class RunningServer:
    """A started gRPC server and what tests and the drain logic need to know about it."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    service_names: Sequence[str]

    async def drain(self, grace: float) -> None:
        """Stop accepting streams (NOT_SERVING), let in-flight ones finish, then stop."""
        for name in (*self.service_names, ""):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(grace)


def server_options(settings: GrpcServerSettings) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]


async def start_grpc_server(
    service: str,
    settings: GrpcServerSettings,
    register: Callable[[grpc.aio.Server], Sequence[str]],
) -> RunningServer:
    """Build, bind and start a server; ``register`` adds the servicers, returns service names."""
    server = grpc.aio.server(
        interceptors=[SluiceServerInterceptor(service)], options=server_options(settings)
    )
    names = list(register(server))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    if port == 0:
        raise OSError(f"cannot bind gRPC port {settings.host}:{settings.port}")
    await server.start()
    for name in (*names, ""):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("%s gRPC server listening on %s:%d", service, settings.host, port)
    return RunningServer(server=server, port=port, health=health_servicer, service_names=names)


async def run_until_signal(running: RunningServer, grace: float) -> None:
    """Serve until SIGTERM or SIGINT, then drain within ``grace`` seconds."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.create_task(running.server.wait_for_termination())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if stop.is_set():
        log.info("signal received: draining in-flight streams for up to %.0fs", grace)
        await running.drain(grace)
        log.info("stopped")
    waiter.cancel()
    stopper.cancel()
