"""The gRPC interceptor over a real server on loopback: calls counted by method and code
(cancelled streams too), in-flight streams back to zero, and failure log lines carrying the run,
the unit and the trace id from the call's metadata."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY

from services.common.errors import BadInput
from services.common.grpc_client import call_metadata
from services.common.grpc_server import RunningServer, start_grpc_server
from services.common.logs import _ContextFilter, _EcsFormatter
from services.common.proto.sluice.v1 import data_pb2, extractor_pb2, extractor_pb2_grpc
from services.common.settings import GrpcServerSettings

SERVICE = "interceptor-test"


class SlowExtractor(extractor_pb2_grpc.ExtractorServicer):
    """Pull streams forever, slowly; Discover rejects its input."""

    async def Pull(
        self, request: data_pb2.UnitRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[data_pb2.RecordBatch]:
        seq = 0
        while True:
            yield data_pb2.RecordBatch(unit_id=request.unit.id, seq=seq)
            seq += 1
            await asyncio.sleep(0.05)

    async def Discover(
        self, request: extractor_pb2.DiscoverRequest, context: grpc.aio.ServicerContext
    ) -> extractor_pb2.DiscoverResponse:
        raise BadInput("sales.csv, line 3: not a number")


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"service": SERVICE, **labels}) or 0.0


async def wait_for(check: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """ECS lines of the interceptor's logger, formatted exactly as in the services."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(_EcsFormatter(SERVICE))
    handler.addFilter(_ContextFilter(SERVICE))
    logger = logging.getLogger("services.common.grpc_server")
    logger.addHandler(handler)
    yield out
    logger.removeHandler(handler)


async def serve() -> RunningServer:
    def register(server: grpc.aio.Server) -> Sequence[str]:
        extractor_pb2_grpc.add_ExtractorServicer_to_server(SlowExtractor(), server)
        return [extractor_pb2.DESCRIPTOR.services_by_name["Extractor"].full_name]

    return await start_grpc_server(SERVICE, GrpcServerSettings(host="127.0.0.1", port=0), register)


def test_cancelled_stream_is_counted_and_leaves_no_inflight() -> None:
    async def scenario() -> None:
        running = await serve()
        before = sample("sluice_grpc_server_calls_total", method="Pull", code="CANCELLED")
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                stub = extractor_pb2_grpc.ExtractorStub(channel)
                call = stub.Pull(data_pb2.UnitRequest(run_id="r1", unit=data_pb2.Unit(id="u1")))
                received = 0
                async for _ in call:
                    received += 1
                    if received == 3:
                        break
                await wait_for(
                    lambda: sample("sluice_grpc_server_inflight_streams", method="Pull") == 1
                )
                call.cancel()
                await wait_for(
                    lambda: (
                        sample("sluice_grpc_server_calls_total", method="Pull", code="CANCELLED")
                        == before + 1
                    )
                )
                await wait_for(
                    lambda: sample("sluice_grpc_server_inflight_streams", method="Pull") == 0
                )
        finally:
            await running.server.stop(0)

    asyncio.run(scenario())


def test_failed_call_is_counted_by_code_and_logged_with_run_context(
    log_lines: io.StringIO,
) -> None:
    async def scenario() -> grpc.StatusCode:
        running = await serve()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                stub = extractor_pb2_grpc.ExtractorStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as failure:
                    await stub.Discover(
                        extractor_pb2.DiscoverRequest(run_id="run-7", pipeline="p", task="t"),
                        metadata=call_metadata("run-7", "trace-7"),
                    )
                code: grpc.StatusCode = failure.value.code()
                return code
        finally:
            await running.server.stop(0)

    before = sample("sluice_grpc_server_calls_total", method="Discover", code="INVALID_ARGUMENT")
    assert asyncio.run(scenario()) == grpc.StatusCode.INVALID_ARGUMENT
    after = sample("sluice_grpc_server_calls_total", method="Discover", code="INVALID_ARGUMENT")
    assert after == before + 1
    (line,) = [json.loads(raw) for raw in log_lines.getvalue().splitlines()]
    assert line["log.level"] == "warning"
    assert line["labels"] == {"run_id": "run-7", "pipeline": "p", "task": "t"}
    assert line["trace"] == {"id": "trace-7"}
    assert line["error"]["code"] == "bad_input"
    assert line["error"]["type"] == "BadInput"
    assert "sales.csv, line 3" in line["error"]["message"]
