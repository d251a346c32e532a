"""What the HTTP layer needs at request time, built once by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from services.orchestrator.clients import DataPlane
from services.orchestrator.executor import RunExecutor
from services.orchestrator.registry import PipelineRegistry
from services.orchestrator.scheduler import LeaseKeeper, Scheduler
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.state.store import Store


@dataclass
class Runtime:
    settings: OrchestratorSettings
    store: Store
    registry: PipelineRegistry
    dataplane: DataPlane
    executor: RunExecutor
    lease: LeaseKeeper
    scheduler: Scheduler
    replica_id: str
