"""Process entry point shared by the three gRPC services."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from services.common.cpu import size_arrow_threads
from services.common.grpc_server import RunningServer, run_until_signal
from services.common.logs import configure_logging
from services.common.metrics import BUILD_INFO, serve_metrics
from services.common.settings import GrpcServerSettings, ServiceSettings

S = TypeVar("S", bound=ServiceSettings)
log = logging.getLogger(__name__)
VERSION = "0.1.0"


def run_grpc_service(
    name: str, settings_class: type[S], serve: Callable[[S], Awaitable[RunningServer]]
) -> None:
    """Load settings, configure logs and metrics, serve until SIGTERM, drain, exit."""
    settings = settings_class()
    configure_logging(name, settings.log)
    BUILD_INFO.labels(VERSION).set(1)
    metrics_port = serve_metrics(settings.metrics)
    log.info("%s metrics on port %d", name, metrics_port)
    log.info("Arrow uses %d threads", size_arrow_threads())
    grpc_settings: GrpcServerSettings = getattr(settings, "grpc")  # noqa: B009

    async def main() -> None:
        running = await serve(settings)
        # Everything imported and built at start-up lives as long as the process: moving it out
        # of the collector's reach keeps each collection to the objects of the units in flight.
        gc.freeze()
        await run_until_signal(running, grpc_settings.grace_seconds)

    asyncio.run(main())
