"""The run-state repository: every read and write of run state goes through here."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from services.orchestrator import metrics
from services.orchestrator.errors import Conflict, RunNotFound, TooManyQueuedRuns
from services.orchestrator.state.migrate import migrate
from services.orchestrator.state.models import (
    FINAL_STATUSES,
    Base,
    Lease,
    Run,
    TaskRun,
    UnitRun,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite drops tzinfo; every timestamp stored here is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@dataclass(frozen=True)
class NewRun:
    run: dict[str, Any]
    created: bool


def engine_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (the only PostgreSQL driver installed)."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


class Store:
    def __init__(self, url: str) -> None:
        url = engine_url(url)
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, pool_pre_ping=True)
        metrics.count_state_db_errors(self.engine)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def migrate(self) -> None:
        """Apply the alembic migrations (serialised across replicas)."""
        migrate(self.engine)

    def create_schema(self) -> None:
        """Create the tables without migrations (throw-away databases in unit tests)."""
        Base.metadata.create_all(self.engine)

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions.begin() as session:
            yield session

    # runs -------------------------------------------------------------------------------

    def create_run(
        self,
        *,
        pipeline: str,
        trigger: str,
        logical_date: datetime,
        params: dict[str, Any],
        tasks: Sequence[tuple[str, str]],
        idempotency_key: str | None = None,
        max_queued: int | None = None,
    ) -> NewRun:
        """Create a queued run with its task runs; an existing idempotency key returns that run.

        Raises:
            TooManyQueuedRuns: the pipeline already has ``max_queued`` runs waiting.
        """
        if idempotency_key:
            existing = self._by_idempotency(pipeline, idempotency_key)
            if existing:
                return NewRun(existing, created=False)
        if max_queued is not None:
            queued = self.count_runs(pipeline, ("queued",))
            if queued >= max_queued:
                raise TooManyQueuedRuns(
                    f"pipeline {pipeline!r} already has {queued} queued runs "
                    f"(limit SLUICE_EXECUTION__MAX_QUEUED_RUNS={max_queued})"
                )
        now = utcnow()
        run = Run(
            id=uuid.uuid4().hex,
            pipeline=pipeline,
            trigger=trigger,
            # SQLite keeps no offset: store every timestamp in UTC.
            logical_date=logical_date.astimezone(UTC),
            params=params,
            status="queued",
            idempotency_key=idempotency_key,
            created_at=now,
            tasks=[TaskRun(task_id=t, type=kind, status="queued") for t, kind in tasks],
        )
        try:
            with self.session() as session:
                session.add(run)
        except IntegrityError:
            if idempotency_key:
                existing = self._by_idempotency(pipeline, idempotency_key)
                if existing:
                    return NewRun(existing, created=False)
            raise
        return NewRun(self.get_run(run.id), created=True)

    def _by_idempotency(self, pipeline: str, key: str) -> dict[str, Any] | None:
        with self.session() as session:
            run_id = session.scalar(
                select(Run.id).where(Run.pipeline == pipeline, Run.idempotency_key == key)
            )
        return self.get_run(run_id) if run_id else None

    def get_run(self, run_id: str) -> dict[str, Any]:
        with self.session() as session:
            run = session.scalar(
                select(Run)
                .where(Run.id == run_id)
                .options(selectinload(Run.tasks).selectinload(TaskRun.units))
            )
            if run is None:
                raise RunNotFound(f"no run with id {run_id!r}")
            return run_to_dict(run, with_units=True)

    def list_runs(
        self,
        *,
        pipeline: str | None = None,
        status: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        query = select(Run).order_by(Run.created_at.desc(), Run.id)
        if pipeline:
            query = query.where(Run.pipeline == pipeline)
        if status:
            query = query.where(Run.status == status)
        with self.session() as session:
            runs = session.scalars(
                query.limit(limit).offset(offset).options(selectinload(Run.tasks))
            ).all()
            return [run_to_dict(r, with_units=False) for r in runs]

    def count_runs(self, pipeline: str | None, statuses: Sequence[str]) -> int:
        query = select(func.count()).select_from(Run).where(Run.status.in_(list(statuses)))
        if pipeline is not None:
            query = query.where(Run.pipeline == pipeline)
        with self.session() as session:
            return int(session.scalar(query) or 0)

    def last_scheduled(self, pipeline: str) -> datetime | None:
        """Logical date of the newest scheduled run of a pipeline."""
        with self.session() as session:
            value = session.scalar(
                select(func.max(Run.logical_date)).where(
                    Run.pipeline == pipeline, Run.trigger == "schedule"
                )
            )
        return _aware(value)

    def units_loaded_since(self, pipeline: str, since: datetime) -> int:
        """Units loaded (status succeeded) by runs of ``pipeline`` created at or after ``since``."""
        query = (
            select(func.count())
            .select_from(UnitRun)
            .join(TaskRun, UnitRun.task_run_id == TaskRun.id)
            .join(Run, TaskRun.run_id == Run.id)
            # UTC like every stored timestamp: SQLite compares them as naive text.
            .where(Run.pipeline == pipeline, Run.created_at >= since.astimezone(UTC))
            .where(UnitRun.status == "succeeded")
        )
        with self.session() as session:
            return int(session.scalar(query) or 0)

    def last_run(self, pipeline: str) -> dict[str, Any] | None:
        runs = self.list_runs(pipeline=pipeline, limit=1)
        return runs[0] if runs else None

    def set_run_status(self, run_id: str, status: str, error: str | None = None) -> None:
        with self.session() as session:
            run = session.get(Run, run_id)
            if run is None:
                raise RunNotFound(f"no run with id {run_id!r}")
            run.status = status
            if status == "running" and run.started_at is None:
                run.started_at = utcnow()
            if status in FINAL_STATUSES:
                run.finished_at = utcnow()
            if error is not None:
                run.error = error

    def unfinished_runs(self) -> list[str]:
        with self.session() as session:
            return list(
                session.scalars(select(Run.id).where(Run.status.in_(["queued", "running"])))
            )

    # execution ownership ------------------------------------------------------------------

    def queued_runs(self, limit: int, exclude: Sequence[str] = ()) -> list[tuple[str, str]]:
        """``(run_id, pipeline)`` of the oldest queued runs, leaving out pipelines ``exclude``
        (those at their ``max_active_runs``, so their backlog cannot starve other pipelines)."""
        query = select(Run.id, Run.pipeline).where(Run.status == "queued")
        if exclude:
            query = query.where(Run.pipeline.not_in(list(exclude)))
        with self.session() as session:
            rows = session.execute(query.order_by(Run.created_at, Run.id).limit(limit)).all()
        return [(r[0], r[1]) for r in rows]

    def _counts(self, status: str) -> dict[str, int]:
        """Runs in state ``status``, per pipeline."""
        with self.session() as session:
            rows = session.execute(
                select(Run.pipeline, func.count())
                .where(Run.status == status)
                .group_by(Run.pipeline)
            ).all()
        return {r[0]: int(r[1]) for r in rows}

    def running_counts(self) -> dict[str, int]:
        """Runs in state running, per pipeline."""
        return self._counts("running")

    def queued_counts(self) -> dict[str, int]:
        """Runs in state queued, per pipeline (for the queued-runs metric)."""
        return self._counts("queued")

    def claim_run(self, run_id: str, owner: str) -> bool:
        """Move a queued run to running, owned by ``owner``; False when someone else won."""
        now = utcnow()
        with self.session() as session:
            result = session.execute(
                update(Run)
                .where(Run.id == run_id, Run.status == "queued")
                .values(status="running", owner=owner, heartbeat_at=now, started_at=now)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def adopt_orphans(self, owner: str, stale_after: float, *, everyone: bool = False) -> list[str]:
        """Take over running runs whose owner stopped heartbeating (or all, ``everyone``)."""
        now = utcnow()
        limit = now - timedelta(seconds=stale_after)
        adopted = []
        with self.session() as session:
            candidates = session.execute(
                select(Run.id, Run.heartbeat_at).where(Run.status == "running")
            ).all()
        for run_id, beat in candidates:
            beat = _aware(beat)
            if not everyone and beat is not None and beat >= limit:
                continue
            with self.session() as session:
                condition = Run.heartbeat_at.is_(None) if beat is None else Run.heartbeat_at == beat
                result = session.execute(
                    update(Run)
                    .where(Run.id == run_id, Run.status == "running", condition)
                    .values(owner=owner, heartbeat_at=now)
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    adopted.append(run_id)
        return adopted

    def heartbeat(self, owner: str, run_ids: Sequence[str]) -> tuple[set[str], set[str]]:
        """Refresh the heartbeat of our runs.

        Returns:
            The runs whose cancellation was requested, and the runs we no longer own (another
            replica adopted them while our heartbeats did not reach the database).
        """
        if not run_ids:
            return set(), set()
        ids = list(run_ids)
        with self.session() as session:
            session.execute(
                update(Run)
                .where(Run.id.in_(ids), Run.owner == owner, Run.status == "running")
                .values(heartbeat_at=utcnow())
            )
            rows = session.execute(
                select(Run.id, Run.owner, Run.cancel_requested).where(Run.id.in_(ids))
            ).all()
        cancel = {r[0] for r in rows if r[2] and r[1] == owner}
        # Only the owner says whose a run is: adopting, requeueing and retrying all rewrite it,
        # while a final status we wrote ourselves (the run's alert hooks may still be going)
        # keeps it.
        lost = {r[0] for r in rows if r[1] != owner}
        return cancel, lost

    def request_cancel(self, run_id: str) -> str:
        """Cancel a queued run at once, or flag a running one for its owner.

        Returns the status after the request (``cancelled`` or ``running``).
        """
        now = utcnow()
        with self.session() as session:
            run = session.get(Run, run_id)
            if run is None:
                raise RunNotFound(f"no run with id {run_id!r}")
            if run.status in FINAL_STATUSES:
                raise Conflict(f"run {run_id} already ended with status {run.status}")
            run.cancel_requested = True
            if run.status == "queued":
                run.status = "cancelled"
                run.finished_at = now
                run.error = "cancelled by request"
                for task in run.tasks:
                    if task.status not in FINAL_STATUSES:
                        task.status = "cancelled"
                        task.finished_at = now
            return run.status

    def requeue_run(self, run_id: str) -> None:
        """Give a run back to the queue (its owner is shutting down); finished tasks are kept."""
        with self.session() as session:
            run = session.get(Run, run_id)
            if run is None or run.status in FINAL_STATUSES:
                return
            run.status = "queued"
            run.owner = None
            for task in run.tasks:
                if task.status == "running":
                    task.status = "queued"

    def retry_run(self, run_id: str) -> dict[str, Any]:
        """Queue a failed or cancelled run again; tasks that succeeded are kept."""
        with self.session() as session:
            run = session.get(Run, run_id)
            if run is None:
                raise RunNotFound(f"no run with id {run_id!r}")
            if run.status not in ("failed", "cancelled"):
                raise Conflict(f"run {run_id} is {run.status}; only failed or cancelled runs retry")
            run.status = "queued"
            run.cancel_requested = False
            run.finished_at = None
            run.error = None
            run.owner = None
            for task in run.tasks:
                if task.status != "succeeded":
                    task.status = "queued"
                    task.error = None
                    task.finished_at = None
        return self.get_run(run_id)

    # scheduler lease ----------------------------------------------------------------------

    def db_now(self) -> datetime:
        """The database server's clock for PostgreSQL (replicas on different hosts then agree
        on lease expiry whatever their own clocks say); the local clock for SQLite."""
        if self.is_sqlite:
            return utcnow()
        with self.engine.connect() as conn:
            value = conn.execute(text("SELECT now()")).scalar_one()
        return _aware(value).astimezone(UTC)  # type: ignore[union-attr]

    def acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        """Take or renew a lease; True while ``holder`` holds it.

        One conditional UPDATE (free, expired or already ours) or one INSERT, so two replicas
        can never both succeed: the database serialises the row.
        """
        now = self.db_now()
        expires = now + timedelta(seconds=ttl_seconds)
        with self.session() as session:
            result = session.execute(
                update(Lease)
                .where(Lease.name == name, (Lease.holder == holder) | (Lease.expires_at < now))
                .values(holder=holder, expires_at=expires)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                return True
        try:
            with self.session() as session:
                session.execute(insert(Lease).values(name=name, holder=holder, expires_at=expires))
        except IntegrityError:
            return False
        return True

    def release_lease(self, name: str, holder: str) -> None:
        with self.session() as session:
            session.execute(
                update(Lease)
                .where(Lease.name == name, Lease.holder == holder)
                .values(expires_at=self.db_now() - timedelta(seconds=1))
            )

    def lease_holder(self, name: str) -> str | None:
        with self.session() as session:
            lease = session.get(Lease, name)
            if lease is None or _aware(lease.expires_at) < self.db_now():  # type: ignore[operator]
                return None
            return lease.holder

    # tasks and units --------------------------------------------------------------------

    def set_task_status(
        self,
        run_id: str,
        task_id: str,
        status: str,
        *,
        error: str | None = None,
        output: str | None = None,
        attempt: int | None = None,
    ) -> None:
        with self.session() as session:
            task = session.scalar(
                select(TaskRun).where(TaskRun.run_id == run_id, TaskRun.task_id == task_id)
            )
            if task is None:
                raise RunNotFound(f"run {run_id!r} has no task {task_id!r}")
            task.status = status
            if attempt is not None:
                task.attempts = attempt
            if status == "running":
                task.started_at = task.started_at or utcnow()
                task.error = None
            if status in FINAL_STATUSES:
                task.finished_at = utcnow()
            if error is not None:
                task.error = error
            if output is not None:
                task.output = output

    def record_unit(self, run_id: str, task_id: str, **fields: Any) -> None:
        with self.session() as session:
            task = session.scalar(
                select(TaskRun).where(TaskRun.run_id == run_id, TaskRun.task_id == task_id)
            )
            if task is None:
                raise RunNotFound(f"run {run_id!r} has no task {task_id!r}")
            session.add(UnitRun(task_run_id=task.id, **fields))


def _iso(value: datetime | None) -> str | None:
    value = _aware(value)
    return value.isoformat() if value else None


def run_to_dict(run: Run, *, with_units: bool) -> dict[str, Any]:
    tasks = []
    totals = {"units": 0, "rows_loaded": 0, "rows_rejected": 0}
    for task in run.tasks:
        entry: dict[str, Any] = {
            "task_id": task.task_id,
            "type": task.type,
            "status": task.status,
            "attempts": task.attempts,
            "started_at": _iso(task.started_at),
            "finished_at": _iso(task.finished_at),
            "error": task.error,
            "output": task.output,
        }
        if with_units:
            units = [
                {
                    "unit": u.unit_key,
                    "fingerprint": u.fingerprint,
                    "status": u.status,
                    "attempt": u.attempt,
                    "rows_in": u.rows_in,
                    "rows_loaded": u.rows_loaded,
                    "rows_rejected": u.rows_rejected,
                    "bytes": u.bytes,
                    "duration_seconds": round(u.duration_seconds, 4),
                    "started_at": _iso(u.started_at),
                    "finished_at": _iso(u.finished_at),
                    "error": u.error,
                }
                for u in task.units
            ]
            entry["units"] = units
            entry["rows_loaded"] = sum(u["rows_loaded"] for u in units)
            entry["rows_rejected"] = sum(u["rows_rejected"] for u in units)
            totals["units"] += len(units)
            totals["rows_loaded"] += entry["rows_loaded"]
            totals["rows_rejected"] += entry["rows_rejected"]
        tasks.append(entry)
    started, finished = _aware(run.started_at), _aware(run.finished_at)
    result: dict[str, Any] = {
        "run_id": run.id,
        "pipeline": run.pipeline,
        "trigger": run.trigger,
        "logical_date": _iso(run.logical_date),
        "params": run.params,
        "status": run.status,
        "created_at": _iso(run.created_at),
        "started_at": _iso(started),
        "finished_at": _iso(finished),
        "duration_seconds": (finished - started).total_seconds() if started and finished else None,
        "error": run.error,
        "cancel_requested": run.cancel_requested,
        "owner": run.owner,
        "tasks": tasks,
    }
    if with_units:
        result["totals"] = totals
    return result


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
