"""gRPC client helpers: channels with round-robin balancing, metadata, error translation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar

import grpc

from services.common.errors import SluiceError, from_grpc_error
from services.common.grpc_server import RUN_ID_METADATA_KEY, TRACE_ID_METADATA_KEY
from services.common.settings import UpstreamSettings

T = TypeVar("T")


def open_channel(settings: UpstreamSettings, max_message_bytes: int = 64 * 1024 * 1024) -> Any:
    """An aio channel; with a ``dns:///`` target every resolved pod address gets streams."""
    service_config = {
        "loadBalancingConfig": [{settings.load_balancing: {}}],
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
    options = [
        ("grpc.service_config", json.dumps(service_config)),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.enable_retries", 1),
        ("grpc.keepalive_time_ms", 30_000),
    ]
    return grpc.aio.insecure_channel(settings.target, options=options)


def call_metadata(run_id: str, trace_id: str | None = None) -> Sequence[tuple[str, str]]:
    """Metadata every data-plane call carries: the run id, and the trace id for log correlation."""
    items = [(RUN_ID_METADATA_KEY, run_id)]
    if trace_id:
        items.append((TRACE_ID_METADATA_KEY, trace_id))
    return tuple(items)


async def unary(call: Any, peer: str) -> Any:
    """Await a unary call, translating transport and remote errors into SluiceError."""
    try:
        return await call
    except grpc.aio.AioRpcError as exc:
        raise from_grpc_error(exc, peer) from None


async def stream(call: Any, peer: str) -> AsyncIterator[Any]:
    """Iterate a server stream, translating errors into SluiceError."""
    try:
        async for item in call:
            yield item
    except grpc.aio.AioRpcError as exc:
        raise from_grpc_error(exc, peer) from None


__all__ = ["SluiceError", "call_metadata", "open_channel", "stream", "unary"]
