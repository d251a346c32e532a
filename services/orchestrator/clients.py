"""gRPC clients of the orchestrator: Discover on extractors; Load, Status, Execute on loaders."""

from __future__ import annotations

from typing import Any

from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.grpc_client import open_channel, unary
from services.common.proto.sluice.v1 import extractor_pb2_grpc, loader_pb2_grpc
from services.orchestrator.settings import OrchestratorSettings


class DataPlane:
    def __init__(self, settings: OrchestratorSettings) -> None:
        self.extractor_channel: Any = open_channel(settings.extractor)
        self.loader_channel: Any = open_channel(settings.loader)
        self.extractor = extractor_pb2_grpc.ExtractorStub(self.extractor_channel)
        self.loader = loader_pb2_grpc.LoaderStub(self.loader_channel)

    async def healthy(self, timeout: float = 2.0) -> dict[str, bool]:
        """gRPC health of each downstream service."""
        result = {}
        for name, channel in (
            ("extractor", self.extractor_channel),
            ("loader", self.loader_channel),
        ):
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                reply = await unary(
                    stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout), name
                )
                result[name] = reply.status == health_pb2.HealthCheckResponse.SERVING
            except Exception:
                result[name] = False
        return result

    async def close(self) -> None:
        await self.extractor_channel.close()
        await self.loader_channel.close()
