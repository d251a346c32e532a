"""The lease that elects one active replica, and the cron scheduler it runs.

Several orchestrator replicas share the state DB. All of them serve the API; only the holder of
the ``scheduler`` lease (a row with an expiry, renewed every third of its lifetime) creates
scheduled runs and executes queued runs. A replica that dies stops renewing; another one takes
the lease once it has expired and adopts the dead replica's runs (see ``executor``).

Scheduled runs carry the idempotency key ``schedule:<fire time>``, so even two replicas briefly
believing they lead (clock skew across hosts) create each scheduled run once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime

from services.common.spec.model import Pipeline
from services.orchestrator import metrics
from services.orchestrator.errors import TooManyQueuedRuns
from services.orchestrator.loops import repeat
from services.orchestrator.registry import PipelineRegistry
from services.orchestrator.schedule import fire_times_between
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.state.store import Store
from services.orchestrator.triggers import queue_run

log = logging.getLogger(__name__)
LEASE_NAME = "scheduler"


def default_replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class LeaseKeeper:
    """Takes and renews the scheduler lease; ``is_leader`` answers from the last renewal."""

    def __init__(self, store: Store, holder: str, ttl_seconds: float) -> None:
        self.store = store
        self.holder = holder
        self.ttl = ttl_seconds
        self._valid_until = 0.0
        self.changed = asyncio.Event()

    def is_leader(self) -> bool:
        # Stop acting a safety margin before the lease could expire in the database.
        loop = asyncio.get_running_loop()
        return loop.time() < self._valid_until

    async def renew_once(self) -> bool:
        loop = asyncio.get_running_loop()
        before = self.is_leader()
        asked_at = loop.time()
        try:
            held = await asyncio.to_thread(
                self.store.acquire_lease, LEASE_NAME, self.holder, self.ttl
            )
        except Exception:
            log.exception("cannot renew the scheduler lease")
            held = False
        self._valid_until = asked_at + self.ttl * 0.8 if held else 0.0
        metrics.LEADER.set(1 if held else 0)
        if held != before:
            log.info("scheduler lease %s by %s", "acquired" if held else "lost", self.holder)
            self.changed.set()
        return held

    async def run(self) -> None:
        await repeat(self.renew_once, self.ttl / 3, "scheduler lease renewal failed")

    async def release(self) -> None:
        if self._valid_until:
            self._valid_until = 0.0
            await asyncio.to_thread(self.store.release_lease, LEASE_NAME, self.holder)


class Scheduler:
    """Creates the runs that cron schedules ask for, honouring catchup and the queue cap."""

    def __init__(
        self,
        settings: OrchestratorSettings,
        store: Store,
        registry: PipelineRegistry,
        on_created: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.on_created = on_created
        self.cursors: dict[str, datetime] = {}
        """Per pipeline: fire times up to here were handled (created or skipped)."""

    def tick(self, now: datetime | None = None) -> list[str]:
        """Create every run that is due; returns the new run ids. Blocking (state DB)."""
        now = now or datetime.now(UTC)
        created: list[str] = []
        for pipeline in list(self.registry.pipelines.values()):
            if not pipeline.schedule:
                continue
            try:
                created += self._tick_pipeline(pipeline, now)
            except Exception:
                log.exception("scheduling pipeline %s failed", pipeline.name)
        if created:
            self.on_created()
        return created

    def _tick_pipeline(self, pipeline: Pipeline, now: datetime) -> list[str]:
        assert pipeline.schedule is not None
        last = self.store.last_scheduled(pipeline.name)
        cursor = self.cursors.get(pipeline.name)
        if cursor is None or (last is not None and last > cursor):
            # A pipeline never scheduled before starts now: no backfill of its whole past.
            cursor = last or now
        due = fire_times_between(pipeline.schedule, pipeline.timezone, cursor, now)
        if not due:
            self.cursors[pipeline.name] = cursor
            metrics.SCHEDULE_LAG.labels(pipeline.name).set(0)
            return []
        grace = self.settings.scheduler.misfire_grace_seconds
        if pipeline.catchup == "all":
            wanted = due
        elif pipeline.catchup == "latest":
            wanted = due[-1:]
        else:
            wanted = [t for t in due[-1:] if (now - t).total_seconds() <= grace]
            if len(due) > len(wanted):
                log.info(
                    "pipeline %s: %d missed schedule time(s) skipped (catchup: none)",
                    pipeline.name,
                    len(due) - len(wanted),
                )
        created: list[str] = []
        for fire_time in wanted:
            try:
                new = queue_run(
                    self.store,
                    pipeline,
                    trigger="schedule",
                    logical_date=fire_time,
                    params={},
                    idempotency_key=f"schedule:{fire_time.isoformat()}",
                    max_queued=self.settings.execution.max_queued_runs,
                )
            except TooManyQueuedRuns as exc:
                # Stop here; the cursor stays before this time so it is created later.
                metrics.SCHEDULE_LAG.labels(pipeline.name).set((now - fire_time).total_seconds())
                log.warning("pipeline %s: schedule waits: %s", pipeline.name, exc.message)
                return created
            self.cursors[pipeline.name] = fire_time
            lag = (now - fire_time).total_seconds()
            metrics.SCHEDULE_DELAY.labels(pipeline.name).observe(max(lag, 0.0))
            if new.created:
                created.append(new.run["run_id"])
                log.info(
                    "scheduled run %s of %s for %s",
                    new.run["run_id"],
                    pipeline.name,
                    fire_time.isoformat(),
                )
        self.cursors[pipeline.name] = due[-1]
        metrics.SCHEDULE_LAG.labels(pipeline.name).set(0)
        return created

    def observe(self, now: datetime | None = None) -> None:
        """On a replica that does not lead: remember when each new pipeline was first seen.

        If this replica takes over the lease later, a pipeline that was never scheduled starts
        from that moment, not from the takeover, so a fire time during the failover is not lost.
        """
        now = now or datetime.now(UTC)
        for pipeline in list(self.registry.pipelines.values()):
            if pipeline.schedule and pipeline.name not in self.cursors:
                last = self.store.last_scheduled(pipeline.name)
                self.cursors[pipeline.name] = last or now

    async def loop(self, is_leader: Callable[[], bool]) -> None:

        async def step() -> None:
            await asyncio.to_thread(self.tick if is_leader() else self.observe)

        await repeat(step, self.settings.scheduler.tick_seconds, "scheduler tick failed; retrying")
