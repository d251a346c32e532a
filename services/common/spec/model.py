"""The pipeline spec: the pydantic model of a pipeline YAML file.

The same model validates YAML at load time (orchestrator, ``sluice validate``), travels as JSON to
the data-plane services inside ``UnitRequest.task_spec_json``, and is exported as JSON Schema for
editors (``sluice schema``). The blocks live in their own modules: ``source``, ``steps``,
``destination``; this module holds tasks and the pipeline.
"""

from __future__ import annotations

import zoneinfo
from typing import Annotated, Any, Literal

from croniter import croniter
from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from services.common.spec.base import Strict
from services.common.spec.destination import Destination, SchemaPolicy, WriteMode
from services.common.spec.source import Source, SourceFormat, SourceOptions
from services.common.spec.steps import (
    STEP_TYPES,
    CastStep,
    Checks,
    CheckStep,
    DeriveStep,
    FilterStep,
    OnFail,
    RenameStep,
    Step,
    StepBase,
    check_declared_columns,
)

NAME_RE = r"^[a-z][a-z0-9_\-]{0,62}$"
CatchUp = Literal["all", "latest", "none"]
ALIASES = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@weekly": "0 0 * * 0",
           "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *"}  # fmt: skip


class TaskBase(Strict):
    id: str = Field(pattern=NAME_RE)
    depends_on: list[str] = []
    retries: int | None = Field(default=None, ge=0, le=20)
    timeout_seconds: float = Field(default=3600.0, gt=0)


class EtlTask(TaskBase):
    type: Literal["etl"] = "etl"
    source: Source
    transform: list[Step] = []
    destination: Destination
    columns: dict[str, str] = Field(
        default={}, description="declared output columns and their types (the schema contract)"
    )
    schema_policy: SchemaPolicy | None = Field(
        default=None,
        alias="schema",
        description="evolve: a new column in a file is added; freeze: it is an error",
    )

    @model_validator(mode="after")
    def _needs_table(self) -> EtlTask:
        if not self.destination.table:
            raise ValueError("an etl task's destination needs a table")
        return self

    @model_validator(mode="after")
    def _schema_contract(self) -> EtlTask:
        # The loader reads the policy from the destination: the task-level key is copied there.
        check_declared_columns(self.columns)
        if self.columns and not self.transform:
            # Units of a task without steps go straight from extractor to loader.
            raise ValueError(
                "columns are enforced by the transformer: add at least one transform step "
                "(for example a select of the declared columns)"
            )
        if self.schema_policy is not None:
            given = "schema_policy" in self.destination.model_fields_set
            if given and self.destination.schema_policy != self.schema_policy:
                raise ValueError("schema is set differently on the task and its destination")
            self.destination.schema_policy = self.schema_policy
        return self


class SqlTask(TaskBase):
    type: Literal["sql"]
    destination: Destination
    sql: str
    params: dict[str, Any] = {}


class JobTask(TaskBase):
    type: Literal["job"]
    image: str | None = None
    command: list[str]
    env: dict[str, str] = {}
    workdir: str | None = None
    env_from_secrets: dict[str, str] = Field(
        default={}, description="ENV_NAME: secret-name/key (locally: ENV_NAME from the environment)"
    )
    resources: dict[Literal["requests", "limits"], dict[str, str]] = Field(
        default={}, description="Kubernetes requests/limits, e.g. {limits: {memory: 512Mi}}"
    )
    backoff_limit: int = Field(default=0, ge=0, le=10, description="Kubernetes pod retries")


def _task_tag(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("type", "etl"))
    return str(getattr(value, "type", "etl"))


Task = Annotated[
    Annotated[EtlTask, Tag("etl")]
    | Annotated[SqlTask, Tag("sql")]
    | Annotated[JobTask, Tag("job")],
    Discriminator(
        _task_tag,
        custom_error_type="unknown_task_type",
        custom_error_message="unknown task type; use etl, sql or job",
    ),
]


class Alerts(Strict):
    on: list[Literal["failure", "rejects", "late", "freshness", "success"]] = ["failure"]
    webhook: str | None = None
    email: list[str] = []
    rejects_threshold: int = Field(default=0, ge=0, description="alert when rejects exceed this")
    sla_minutes: float | None = Field(default=None, gt=0, description="late after this long")
    fresh_by: str | None = Field(
        default=None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM, pipeline tz"
    )


class Pipeline(Strict):
    """One pipeline file."""

    name: str = Field(pattern=NAME_RE)
    description: str = ""
    schedule: str | None = None
    timezone: str = "UTC"
    catchup: CatchUp = Field(
        default="none",
        description="missed schedule times after downtime: all (backfill each), latest (only the "
        "most recent), none (skip; only a time due within the scheduler's grace runs)",
    )
    max_active_runs: int = Field(
        default=1, ge=1, description="runs of this pipeline executing at once; more wait queued"
    )
    retries: int = Field(default=0, ge=0, le=20, description="retries per task (default)")
    retry_delay_seconds: float | None = Field(
        default=None,
        ge=0,
        description="first retry delay, doubled per attempt with jitter "
        "(default SLUICE_EXECUTION__UNIT_RETRY_BACKOFF_SECONDS)",
    )
    params: dict[str, Any] = {}
    alerts: Alerts | None = None
    tasks: list[Task] = Field(min_length=1)

    @field_validator("catchup", mode="before")
    @classmethod
    def _catchup_bool(cls, value: Any) -> Any:
        if value is True:
            return "all"
        if value is False:
            return "none"
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        expr = ALIASES.get(value.strip(), value.strip())
        if not croniter.is_valid(expr):
            raise ValueError(f"invalid schedule {value!r}: use a cron expression or @daily")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA timezone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _dag(self) -> Pipeline:
        ids = [t.id for t in self.tasks]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate task ids: {', '.join(dupes)}")
        known = set(ids)
        for task in self.tasks:
            for dep in task.depends_on:
                if dep not in known:
                    raise ValueError(f"task {task.id!r} depends on unknown task {dep!r}")
        order = topological_order(self)
        if len(order) != len(ids):
            raise ValueError("tasks have a dependency cycle")
        return self

    def task(self, task_id: str) -> EtlTask | SqlTask | JobTask:
        for task in self.tasks:
            if task.id == task_id:
                return task
        raise KeyError(task_id)


def topological_order(pipeline: Pipeline) -> list[str]:
    """Task ids in dependency order (Kahn); shorter than the task list when there is a cycle."""
    deps = {t.id: set(t.depends_on) for t in pipeline.tasks}
    order: list[str] = []
    ready = [t for t, d in deps.items() if not d]
    while ready:
        current = ready.pop(0)
        order.append(current)
        for task_id, task_deps in deps.items():
            if current in task_deps:
                task_deps.discard(current)
                if not task_deps and task_id not in order and task_id not in ready:
                    ready.append(task_id)
    return order


def cron_expression(schedule: str) -> str:
    """The cron form of a schedule, expanding @daily and friends."""
    return ALIASES.get(schedule.strip(), schedule.strip())


def json_schema() -> dict[str, Any]:
    """JSON Schema of the pipeline file, for editors (yaml-language-server)."""
    schema = Pipeline.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Sluice pipeline"
    return schema


__all__ = [
    "STEP_TYPES", "CastStep", "CheckStep", "Checks", "DeriveStep", "Destination", "FilterStep",
    "OnFail", "RenameStep", "SchemaPolicy", "Source", "SourceFormat", "SourceOptions", "Step",
    "StepBase", "WriteMode",
]  # fmt: skip
