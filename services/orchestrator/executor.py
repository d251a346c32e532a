"""Executes runs: tasks in DAG order, units fanned out to the loaders with bounded concurrency.

Only the replica holding the scheduler lease executes runs. Its dispatch loop claims queued runs
(respecting each pipeline's ``max_active_runs`` and the global cap), heartbeats the runs it owns,
and adopts runs whose owner stopped heartbeating (a crashed or evicted orchestrator), so no run
stays "running" forever. A cancel request made on any replica is a flag in the state DB that the
owner picks up within one heartbeat and turns into asyncio cancellation, which cancels the
in-flight gRPC calls. On shutdown the runs in progress are put back in the queue for the next
lease holder.

The orchestrator moves no data. For an ``etl`` task it asks an extractor for the units, asks the
loader which are already loaded, and calls ``Load`` once per remaining unit; the loader pulls the
unit through the transformer and commits it with its ledger row. A retried task therefore only
loads what is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from services.common.errors import Cancelled, SluiceError, Terminal
from services.common.grpc_client import call_metadata, unary
from services.common.logs import bind_context, outcome_fields
from services.common.proto.sluice.v1 import data_pb2, extractor_pb2, loader_pb2
from services.common.spec.model import EtlTask, JobTask, Pipeline, SqlTask
from services.common.spec.render import render, run_context
from services.orchestrator import metrics
from services.orchestrator.clients import DataPlane
from services.orchestrator.jobs import run_job
from services.orchestrator.registry import PipelineRegistry
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.state.store import Store, utcnow

log = logging.getLogger(__name__)
AnyTask = EtlTask | SqlTask | JobTask
RunListener = Callable[[dict[str, Any]], Awaitable[None]]
"""Called with the run (as ``GET /api/v1/runs/{id}`` shows it) after it reached a final state."""
TaskListener = Callable[[dict[str, Any], str], Awaitable[None]]
"""Called with the run and the task id after a task reached a final state."""


class TaskFailed(Exception):
    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class RunExecutor:
    def __init__(
        self,
        settings: OrchestratorSettings,
        store: Store,
        registry: PipelineRegistry,
        dataplane: DataPlane,
        sleep: Callable[[float], Any] = asyncio.sleep,
        owner: str = "local",
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.dataplane = dataplane
        self.sleep = sleep
        self.owner = owner
        self.unit_slots = asyncio.Semaphore(settings.execution.max_units_in_flight)
        self.active: dict[str, asyncio.Task[None]] = {}
        self.on_run_finished: list[RunListener] = []
        """Lifecycle hooks (alerts, event bookkeeping); failures are logged, never fatal."""
        self.on_task_finished: list[TaskListener] = []
        """Lifecycle hooks per task."""
        self._cancel_requested: set[str] = set()
        self._lost: set[str] = set()
        self._awaiting_first_unit: dict[str, datetime] = {}
        self._wakeup = asyncio.Event()
        self._stopping = False

    # dispatch -------------------------------------------------------------------------

    def wake(self) -> None:
        """Look for queued runs now (a trigger just queued one)."""
        self._wakeup.set()

    async def dispatch_once(self) -> list[str]:
        """Claim as many queued runs as the caps allow and start them."""
        if self._stopping:
            return []
        free = self.settings.execution.max_active_runs - len(self.active)
        if free <= 0:
            return []
        running = await asyncio.to_thread(self.store.running_counts)
        full = [name for name, count in running.items() if count >= self._max_active(name)]
        queued = await asyncio.to_thread(self.store.queued_runs, free * 4 + 16, full)
        started = []
        for run_id, pipeline_name in queued:
            if len(self.active) >= self.settings.execution.max_active_runs:
                break
            if running.get(pipeline_name, 0) >= self._max_active(pipeline_name):
                continue
            if await asyncio.to_thread(self.store.claim_run, run_id, self.owner):
                running[pipeline_name] = running.get(pipeline_name, 0) + 1
                self.submit(run_id)
                started.append(run_id)
        return started

    def _max_active(self, pipeline_name: str) -> int:
        pipeline = self.registry.pipelines.get(pipeline_name)
        return pipeline.max_active_runs if pipeline else 1

    async def adopt_orphans(self, *, everyone: bool = False) -> list[str]:
        """Take over runs whose owner stopped heartbeating, and resume them."""
        adopted = await asyncio.to_thread(
            self.store.adopt_orphans,
            self.owner,
            self.settings.execution.heartbeat_timeout_seconds,
            everyone=everyone,
        )
        for run_id in adopted:
            if run_id not in self.active:
                log.warning("adopting run %s: its orchestrator stopped heartbeating", run_id)
                self.submit(run_id)
        return adopted

    async def heartbeat_once(self) -> None:
        """Refresh our runs' heartbeats; act on cancel requests made on other replicas, and stop
        runs another replica adopted (our heartbeats did not reach the database in time)."""
        requested, lost = await asyncio.to_thread(
            self.store.heartbeat, self.owner, list(self.active)
        )
        for run_id in lost:
            task = self.active.get(run_id)
            if task is not None and run_id not in self._lost:
                log.warning("run %s is no longer ours (adopted elsewhere): stopping it", run_id)
                self._lost.add(run_id)
                task.cancel()
        for run_id in requested - lost:
            task = self.active.get(run_id)
            if task is not None and run_id not in self._cancel_requested:
                log.info("cancel requested for run %s", run_id)
                self._cancel_requested.add(run_id)
                task.cancel()

    async def dispatch_loop(self, is_leader: Callable[[], bool]) -> None:
        """While this replica holds the lease: start queued runs, adopt orphans, heartbeat."""
        poll = self.settings.execution.poll_seconds
        beat_every = self.settings.execution.heartbeat_seconds
        last_beat = last_adopt = 0.0
        while not self._stopping:
            try:
                now = time.monotonic()
                if now - last_beat >= beat_every:
                    last_beat = now
                    await self.heartbeat_once()
                if is_leader():
                    if now - last_adopt >= beat_every:
                        last_adopt = now
                        await self.adopt_orphans()
                    await self.dispatch_once()
            except Exception:
                log.exception("dispatch loop iteration failed; retrying")
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), poll)

    def submit(self, run_id: str) -> None:
        """Execute a run we own in the background."""
        if run_id in self.active:
            return
        task = asyncio.create_task(self._execute(run_id), name=f"run-{run_id}")
        self.active[run_id] = task
        task.add_done_callback(lambda _t: self._forget(run_id))

    def _forget(self, run_id: str) -> None:
        self.active.pop(run_id, None)
        self._cancel_requested.discard(run_id)
        self._lost.discard(run_id)
        self._awaiting_first_unit.pop(run_id, None)
        self.wake()  # a slot is free: maybe a queued run of the same pipeline can start

    async def cancel(self, run_id: str) -> bool:
        """Cancel a run executing in this process; False when it is not ours."""
        task = self.active.get(run_id)
        if task is None:
            return False
        self._cancel_requested.add(run_id)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return True

    async def shutdown(self) -> None:
        """Stop; runs in progress go back to the queue for the next lease holder."""
        self._stopping = True
        self._wakeup.set()
        for task in list(self.active.values()):
            task.cancel()
        await asyncio.gather(*self.active.values(), return_exceptions=True)

    async def wait(self, run_id: str) -> None:
        task = self.active.get(run_id)
        if task:
            await asyncio.shield(task)

    # run ------------------------------------------------------------------------------

    async def _execute(self, run_id: str) -> None:
        run = await asyncio.to_thread(self.store.get_run, run_id)
        pipeline_name = run["pipeline"]
        metrics.ACTIVE_RUNS.labels(pipeline_name).inc()
        started = time.monotonic()
        status = "failed"
        with bind_context(run_id=run_id, pipeline=pipeline_name, trace_id=run_id):
            try:
                if run.get("cancel_requested"):
                    # Cancelled while its previous owner was dead: nothing left to stop.
                    self._cancel_requested.add(run_id)
                    raise asyncio.CancelledError
                pipeline = self.registry.get(pipeline_name)
                await asyncio.to_thread(self.store.set_run_status, run_id, "running")
                if not any(t["attempts"] for t in run["tasks"]):  # not a retried or adopted run
                    self._awaiting_first_unit[run_id] = datetime.fromisoformat(run["created_at"])
                log.info("run started")
                status, error = await self._run_dag(run, pipeline)
                await asyncio.to_thread(self.store.set_run_status, run_id, status, error)
                log.log(
                    logging.ERROR if status == "failed" else logging.INFO,
                    "run %s",
                    status,
                    extra=outcome_fields(status, error),
                )
            except asyncio.CancelledError:
                if run_id in self._lost:
                    status = "requeued"  # its new owner reports the outcome
                elif run_id in self._cancel_requested:
                    status = "cancelled"
                    await asyncio.to_thread(self._mark_cancelled, run_id)
                    log.info("run cancelled")
                else:
                    status = "requeued"
                    await asyncio.to_thread(self.store.requeue_run, run_id)
                    log.info("orchestrator stopping: run put back in the queue")
                    raise
            except SluiceError as exc:
                await asyncio.to_thread(
                    self.store.set_run_status, run_id, "failed", exc.full_message
                )
                log.error(
                    "run failed: %s",
                    exc.full_message,
                    extra=outcome_fields("failed", exc.full_message, exc.code),
                )
            except Exception as exc:
                log.exception("run crashed", extra=outcome_fields("failed"))
                await asyncio.to_thread(
                    self.store.set_run_status, run_id, "failed", f"{type(exc).__name__}: {exc}"
                )
            finally:
                metrics.ACTIVE_RUNS.labels(pipeline_name).dec()
                if status != "requeued":
                    metrics.RUNS.labels(pipeline_name, status).inc()
                    metrics.RUN_SECONDS.labels(pipeline_name).observe(time.monotonic() - started)
                if status == "succeeded":
                    metrics.LAST_SUCCESS.labels(pipeline_name).set(time.time())
            if status != "requeued":
                await self._notify(self.on_run_finished, run_id)

    async def _notify(
        self, listeners: list[RunListener] | list[TaskListener], run_id: str, *args: str
    ) -> None:
        """Call each hook with the run as stored now; a failing hook is logged, never fatal."""
        if not listeners:
            return
        run = await asyncio.to_thread(self.store.get_run, run_id)
        for listener in listeners:
            try:
                await listener(run, *args)
            except Exception:
                log.exception("lifecycle hook %r failed", listener)

    def _first_unit_started(self, run_id: str, pipeline: str) -> None:
        """Observe trigger -> first unit of work (a unit load, a job, a SQL statement) once."""
        created = self._awaiting_first_unit.pop(run_id, None)
        if created is not None:
            delay = max((utcnow() - created).total_seconds(), 0.0)
            metrics.TRIGGER_TO_START.labels(pipeline).observe(delay)

    def _mark_cancelled(self, run_id: str) -> None:
        run = self.store.get_run(run_id)
        for task in run["tasks"]:
            if task["status"] in ("queued", "running"):
                self.store.set_task_status(run_id, task["task_id"], "cancelled")
        self.store.set_run_status(run_id, "cancelled", "cancelled by request")

    async def _run_dag(self, run: dict[str, Any], pipeline: Pipeline) -> tuple[str, str | None]:
        """Start every task whose dependencies succeeded, in parallel; skip downstream of failures.

        Tasks that already succeeded (a retried or adopted run) are not run again.
        """
        states = {t["task_id"]: t["status"] for t in run["tasks"]}
        pending = {t.id for t in pipeline.tasks if states.get(t.id) != "succeeded"}
        running: dict[str, asyncio.Task[bool]] = {}
        errors: list[str] = []
        try:
            while pending or running:
                for task in pipeline.tasks:
                    if task.id not in pending:
                        continue
                    deps = [states.get(d) for d in task.depends_on]
                    if any(d in ("failed", "skipped", "cancelled") for d in deps):
                        pending.discard(task.id)
                        states[task.id] = "skipped"
                        await asyncio.to_thread(
                            self.store.set_task_status,
                            run["run_id"],
                            task.id,
                            "skipped",
                            error="an upstream task did not succeed",
                        )
                    elif all(d == "succeeded" for d in deps):
                        pending.discard(task.id)
                        states[task.id] = "running"
                        running[task.id] = asyncio.create_task(
                            self._run_task(run, pipeline, task), name=f"task-{task.id}"
                        )
                if not running:
                    break
                done, _ = await asyncio.wait(running.values(), return_when=asyncio.FIRST_COMPLETED)
                for task_id, fut in list(running.items()):
                    if fut in done:
                        del running[task_id]
                        ok = fut.result()
                        states[task_id] = "succeeded" if ok else "failed"
                        if not ok:
                            errors.append(task_id)
                        await self._notify(self.on_task_finished, run["run_id"], task_id)
        finally:
            # Cancellation of the run reaches every task in flight (and their gRPC calls).
            for fut in running.values():
                fut.cancel()
            if running:
                await asyncio.gather(*running.values(), return_exceptions=True)
        if errors:
            return "failed", f"task(s) failed: {', '.join(errors)}"
        return "succeeded", None

    # task -----------------------------------------------------------------------------

    async def _run_task(self, run: dict[str, Any], pipeline: Pipeline, task: AnyTask) -> bool:
        run_id = run["run_id"]
        retries = task.retries if task.retries is not None else pipeline.retries
        ctx = run_context(
            run_id=run_id,
            pipeline=pipeline.name,
            logical_date=datetime.fromisoformat(run["logical_date"]),
            params={**pipeline.params, **(run["params"] or {})},
        )
        with bind_context(task=task.id):
            for attempt in range(1, retries + 2):
                await asyncio.to_thread(
                    self.store.set_task_status, run_id, task.id, "running", attempt=attempt
                )
                try:
                    output = await asyncio.wait_for(
                        self._dispatch(run_id, pipeline, task, ctx, attempt), task.timeout_seconds
                    )
                except TaskFailed as exc:
                    failure, retryable = str(exc), exc.retryable
                except TimeoutError:
                    failure, retryable = f"timed out after {task.timeout_seconds:.0f}s", True
                except SluiceError as exc:
                    failure, retryable = exc.full_message, not isinstance(exc, Terminal)
                else:
                    await asyncio.to_thread(
                        self.store.set_task_status, run_id, task.id, "succeeded", output=output
                    )
                    log.info("task succeeded on attempt %d", attempt)
                    return True
                last = attempt > retries or not retryable
                log.warning("task attempt %d failed: %s", attempt, failure)
                await asyncio.to_thread(
                    self.store.set_task_status,
                    run_id,
                    task.id,
                    "failed" if last else "running",
                    error=failure,
                )
                if last:
                    return False
                await self.sleep(self.retry_delay(pipeline, attempt))
        return False

    def retry_delay(self, pipeline: Pipeline, attempt: int) -> float:
        """Exponential backoff with jitter: base * 2^(attempt-1), times 0.5-1.5, capped.

        The jitter spreads retries of many runs failing together (a database restart) so they
        do not hit the recovering service in one burst.
        """
        base = pipeline.retry_delay_seconds
        if base is None:
            base = self.settings.execution.unit_retry_backoff_seconds
        delay = min(base * 2 ** (attempt - 1), self.settings.execution.max_retry_delay_seconds)
        jittered = delay * (0.5 + random.random())  # noqa: S311 - jitter, not cryptography
        return float(min(jittered, self.settings.execution.max_retry_delay_seconds))

    async def _dispatch(
        self, run_id: str, pipeline: Pipeline, task: AnyTask, ctx: dict[str, Any], attempt: int
    ) -> str | None:
        rendered = render(task.model_dump(mode="json", by_alias=True), ctx)
        if not isinstance(task, EtlTask):
            self._first_unit_started(run_id, pipeline.name)
        if isinstance(task, EtlTask):
            await self._run_etl(run_id, pipeline, EtlTask.model_validate(rendered), attempt)
            return None
        if isinstance(task, SqlTask):
            sql_task = SqlTask.model_validate(rendered)
            params = {**{k: v for k, v in ctx.items() if k != "params"}, **sql_task.params}
            reply = await unary(
                self.dataplane.loader.Execute(
                    loader_pb2.ExecuteRequest(
                        run_id=run_id,
                        pipeline=pipeline.name,
                        task=task.id,
                        destination_spec_json=sql_task.destination.model_dump_json(by_alias=True),
                        sql=sql_task.sql,
                        params_json=json.dumps(params, default=str),
                    ),
                    metadata=call_metadata(run_id, run_id),
                    timeout=task.timeout_seconds,
                ),
                "loader",
            )
            return f"{reply.rows_affected} rows affected"
        job = JobTask.model_validate(rendered)
        labels = {"run_id": run_id, "pipeline": pipeline.name}
        store, task_id = self.store, task.id
        return await run_job(
            job,
            task.timeout_seconds,
            self.settings.jobs,
            labels=labels,
            progress=lambda tail: store.set_task_status(run_id, task_id, "running", output=tail),
        )

    async def _run_etl(self, run_id: str, pipeline: Pipeline, task: EtlTask, attempt: int) -> None:
        metadata = call_metadata(run_id, run_id)
        discovered = await unary(
            self.dataplane.extractor.Discover(
                extractor_pb2.DiscoverRequest(
                    run_id=run_id,
                    pipeline=pipeline.name,
                    task=task.id,
                    source_spec_json=task.source.model_dump_json(by_alias=True),
                ),
                metadata=metadata,
                timeout=120,
            ),
            "extractor",
        )
        units = list(discovered.units)
        if not task.source.incremental:
            # Every run reloads every unit, still exactly once per run: the run id joins the key.
            for unit in units:
                unit.fingerprint = f"{unit.fingerprint};run={run_id}"
        already: set[str] = set()
        if units:
            status = await unary(
                self.dataplane.loader.Status(
                    loader_pb2.StatusRequest(
                        pipeline=pipeline.name,
                        task=task.id,
                        destination_spec_json=task.destination.model_dump_json(by_alias=True),
                        units=units,
                    ),
                    metadata=metadata,
                    timeout=60,
                ),
                "loader",
            )
            already = set(status.loaded_unit_ids)
        for unit in units:
            if unit.id in already:
                await self._record_unit(run_id, task.id, unit, "skipped", attempt, utcnow())
                metrics.UNITS.labels(pipeline.name, task.id, "skipped").inc()
        todo = [u for u in units if u.id not in already]
        log.info(
            "%d units discovered, %d already loaded, %d to load",
            len(units),
            len(already),
            len(todo),
        )
        task_json = task.model_dump_json(by_alias=True)
        results = await asyncio.gather(
            *(self._load_unit(run_id, pipeline.name, task, task_json, u, attempt) for u in todo),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        for failure in failures:
            if isinstance(failure, asyncio.CancelledError):
                raise failure
        if failures:
            first = failures[0]
            message = first.full_message if isinstance(first, SluiceError) else repr(first)
            retryable = all(
                isinstance(f, SluiceError) and not isinstance(f, Terminal) for f in failures
            )
            raise TaskFailed(
                f"{len(failures)} of {len(todo)} units failed; first: {message}", retryable
            )

    async def _record_unit(
        self,
        run_id: str,
        task_id: str,
        unit: data_pb2.Unit,
        status: str,
        attempt: int,
        started: datetime,
        **figures: Any,
    ) -> None:
        """Store the outcome of one unit (figures: row counts, bytes, duration, error)."""
        await asyncio.to_thread(
            self.store.record_unit,
            run_id,
            task_id,
            unit_key=unit.id,
            fingerprint=unit.fingerprint,
            status=status,
            attempt=attempt,
            started_at=started,
            finished_at=utcnow(),
            **figures,
        )

    async def _load_unit(
        self,
        run_id: str,
        pipeline: str,
        task: EtlTask,
        task_json: str,
        unit: data_pb2.Unit,
        attempt: int,
    ) -> None:
        async with self.unit_slots:
            started = utcnow()
            self._first_unit_started(run_id, pipeline)
            with bind_context(unit=unit.id):
                try:
                    reply = await unary(
                        self.dataplane.loader.Load(
                            data_pb2.UnitRequest(
                                unit=unit,
                                run_id=run_id,
                                pipeline=pipeline,
                                task=task.id,
                                task_spec_json=task_json,
                            ),
                            metadata=call_metadata(run_id, run_id),
                            timeout=task.timeout_seconds,
                        ),
                        "loader",
                    )
                except asyncio.CancelledError:
                    raise
                except SluiceError as exc:
                    await self._record_unit(
                        run_id, task.id, unit, "failed", attempt, started, error=exc.full_message
                    )
                    metrics.UNITS.labels(pipeline, task.id, "failed").inc()
                    log.warning("unit failed: %s", exc.full_message)
                    raise
                skipped = reply.outcome == loader_pb2.LOAD_OUTCOME_SKIPPED
                await self._record_unit(
                    run_id,
                    task.id,
                    unit,
                    "skipped" if skipped else "succeeded",
                    attempt,
                    started,
                    rows_in=reply.rows_in,
                    rows_loaded=reply.rows_loaded,
                    rows_rejected=reply.rows_rejected,
                    bytes=reply.bytes,
                    duration_seconds=reply.duration_seconds,
                )
                metrics.UNITS.labels(pipeline, task.id, "skipped" if skipped else "loaded").inc()
                metrics.ROWS.labels(pipeline, task.id).inc(reply.rows_loaded)
                metrics.REJECTED.labels(pipeline, task.id).inc(reply.rows_rejected)


__all__ = ["Cancelled", "RunExecutor", "TaskFailed"]
