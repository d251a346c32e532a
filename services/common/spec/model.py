"""The pipeline spec: the pydantic model of a pipeline YAML file.

The same model validates YAML at load time (orchestrator, ``sluice validate``), travels as JSON to
the data-plane services inside ``UnitRequest.task_spec_json``, and is exported as JSON Schema for
editors (``sluice schema``).
"""

from __future__ import annotations

import re
import zoneinfo
from typing import Annotated, Any, Literal

from croniter import croniter
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from services.common.errors import SpecError
from services.common.spec.expr import parse_expression

NAME_RE = r"^[a-z][a-z0-9_\-]{0,62}$"
SourceFormat = Literal[
    "auto", "csv", "tsv", "psv", "txt", "fixed", "xls", "xlsx", "xlsm", "ods", "zip",
    "json", "jsonl", "parquet",
]  # fmt: skip
WriteMode = Literal["append", "replace", "merge"]
OnFail = Literal["fail", "drop", "quarantine"]
CatchUp = Literal["all", "latest", "none"]
SchemaPolicy = Literal["evolve", "freeze"]
ALIASES = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@weekly": "0 0 * * 0",
           "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *"}  # fmt: skip
CAST_TYPE_RE = re.compile(
    r"^(int8|int16|int32|int64|int|integer|float|float32|float64|double|bool|boolean|string|str|"
    r"date|timestamp|datetime|decimal\(\s*\d+\s*,\s*\d+\s*\))$"
)
_SECRET_IN_URI = re.compile(r"^[a-z+]+://[^/:@\s]+:(?P<pw>[^@\s]+)@")


class Strict(BaseModel):
    """Every spec object rejects unknown keys: a typo is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SourceOptions(Strict):
    """Reader options; explicit values win over sniffing."""

    delimiter: str | None = None
    quotechar: str = '"'
    encoding: str = "auto"
    skip_rows: int = Field(default=0, ge=0)
    header: bool = True
    null_values: list[str] | None = None
    block_size_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024)
    column_types: dict[str, str] | None = None


class Source(Strict):
    uri: str = Field(description="file://, gs:// or https:// location; globs allowed in paths")
    format: SourceFormat = "auto"
    members: str | None = Field(default=None, description="glob of archive members to read")
    options: SourceOptions = SourceOptions()
    incremental: bool = Field(default=True, description="only units not yet in the ledger")

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, uri: str) -> str:
        if not re.match(r"^(file|gs|https?)://", uri):
            raise ValueError(f"unsupported source URI {uri!r}: use file://, gs:// or https://")
        return uri


class StepBase(Strict):
    pass


def _check_expression(source: str) -> None:
    try:
        parse_expression(source)
    except SpecError as exc:
        raise ValueError(exc.message) from None


class RenameStep(StepBase):
    rename: dict[str, str]


class CastStep(StepBase):
    cast: dict[str, str]

    @field_validator("cast")
    @classmethod
    def _types(cls, value: dict[str, str]) -> dict[str, str]:
        for column, type_name in value.items():
            if not CAST_TYPE_RE.match(type_name.strip().lower()):
                raise ValueError(
                    f"cast of {column!r}: unknown type {type_name!r} (int64, float64, "
                    "decimal(p,s), bool, date, timestamp, string)"
                )
        return value


class FilterStep(StepBase):
    filter: str

    @field_validator("filter")
    @classmethod
    def _expression(cls, value: str) -> str:
        _check_expression(value)
        return value


class DeriveStep(StepBase):
    derive: dict[str, str]

    @field_validator("derive")
    @classmethod
    def _expressions(cls, value: dict[str, str]) -> dict[str, str]:
        for expression in value.values():
            _check_expression(expression)
        return value


class Checks(Strict):
    not_null: list[str] = []
    unique: list[str] = []
    range: dict[str, tuple[float | None, float | None]] = {}
    regex: dict[str, str] = {}
    allowed_values: dict[str, list[Any]] = {}


class CheckStep(StepBase):
    check: Checks
    on_fail: OnFail = "fail"
    max_reject_ratio: float = Field(default=0.0, ge=0.0, le=1.0)


STEP_TYPES: dict[str, type[StepBase]] = {
    "rename": RenameStep,
    "cast": CastStep,
    "filter": FilterStep,
    "derive": DeriveStep,
    "check": CheckStep,
}


def _step_tag(value: Any) -> str | None:
    if isinstance(value, StepBase):
        return next(k for k, v in STEP_TYPES.items() if isinstance(value, v))
    if isinstance(value, dict):
        for key in value:
            if key in STEP_TYPES:
                return str(key)
    return None


Step = Annotated[
    Annotated[RenameStep, Tag("rename")]
    | Annotated[CastStep, Tag("cast")]
    | Annotated[FilterStep, Tag("filter")]
    | Annotated[DeriveStep, Tag("derive")]
    | Annotated[CheckStep, Tag("check")],
    Discriminator(
        _step_tag,
        custom_error_type="unknown_step",
        custom_error_message=f"unknown transform step; known steps: {', '.join(STEP_TYPES)}",
    ),
]


class Destination(Strict):
    uri: str = Field(
        description="postgresql://, mysql://, bigquery://project/dataset, duckdb:///path"
    )
    table: str | None = None
    mode: WriteMode = "append"
    keys: list[str] = []
    schema_policy: SchemaPolicy = Field(default="evolve", alias="schema")

    @field_validator("uri")
    @classmethod
    def _no_literal_secret(cls, uri: str) -> str:
        if not re.match(r"^(postgres|postgresql|mysql|mariadb|bigquery|duckdb)(\+\w+)?://", uri):
            raise ValueError(
                f"unsupported destination URI {uri!r}: use postgresql://, mysql://, "
                "bigquery:// or duckdb://"
            )
        match = _SECRET_IN_URI.match(uri)
        if match and not match.group("pw").startswith("${"):
            raise ValueError(
                "destination URI contains a literal password; use an ${ENV_VAR} reference"
            )
        return uri

    @model_validator(mode="after")
    def _merge_needs_keys(self) -> Destination:
        if self.mode == "merge" and not self.keys:
            raise ValueError("mode: merge needs keys: [...]")
        return self


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

    @model_validator(mode="after")
    def _needs_table(self) -> EtlTask:
        if not self.destination.table:
            raise ValueError("an etl task's destination needs a table")
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


class Pipeline(Strict):
    """One pipeline file."""

    name: str = Field(pattern=NAME_RE)
    description: str = ""
    schedule: str | None = None
    timezone: str = "UTC"
    catchup: CatchUp = "none"
    max_active_runs: int = Field(default=1, ge=1)
    retries: int = Field(default=0, ge=0, le=20)
    retry_delay_seconds: float = Field(default=10.0, ge=0)
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
