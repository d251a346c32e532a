"""The ``transform`` steps of an etl task and their validation.

Each step is a one-key mapping in YAML (``- rename: {...}``); the key picks the model. Everything
that can be checked without data is checked here, at load time, so a typo in a type name, a
regex or an expression fails ``sluice validate`` with the file and line instead of a run.
"""

from __future__ import annotations

import re
import zoneinfo
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from services.common.errors import SpecError
from services.common.spec.base import Strict
from services.common.spec.expr import parse_expression

OnFail = Literal["fail", "drop", "quarantine"]
MetadataField = Literal["source_file", "row_number", "line", "run_id", "load_time", "unit"]
CAST_TYPE_RE = re.compile(
    r"^(int8|int16|int32|int64|int|integer|float|float32|float64|double|bool|boolean|string|str|"
    r"date|timestamp|datetime|decimal\(\s*\d+\s*,\s*\d+\s*\))$"
)
CAST_TYPES_HELP = "int64, int32, float64, decimal(p,s), bool, date, timestamp, string"
PYTHON_REF_RE = re.compile(r"^[A-Za-z_][\w.]*(:[A-Za-z_][\w.]*)?$")
METADATA_DEFAULT_NAMES: dict[str, str] = {
    "source_file": "source_file",
    "row_number": "source_row",
    "line": "source_line",
    "run_id": "run_id",
    "load_time": "loaded_at",
    "unit": "source_unit",
}


class StepBase(Strict):
    pass


def _check_expression(source: str) -> None:
    try:
        parse_expression(source)
    except SpecError as exc:
        raise ValueError(exc.message) from None


def _check_type(column: str, type_name: str) -> str:
    if not CAST_TYPE_RE.match(type_name.strip().lower()):
        raise ValueError(f"{column!r}: unknown type {type_name!r} ({CAST_TYPES_HELP})")
    return type_name


def _check_timezone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA timezone {value!r}") from None
    return value


def _check_regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    return pattern


ColumnNames = Annotated[list[str], Field(min_length=1)]
"""The column list of select, drop, trim, lower and upper: at least one name."""


class RenameStep(StepBase):
    """``rename: {old: new}``."""

    rename: dict[str, str]


class SelectStep(StepBase):
    """``select: [a, b]``: keep these columns, in this order."""

    select: ColumnNames


class DropStep(StepBase):
    """``drop: [a, b]``: remove these columns."""

    drop: ColumnNames


class CastSpec(Strict):
    """The long form of one cast: a type plus how to read text into it."""

    type: str
    format: str | None = Field(
        default=None, description="strptime format for date/timestamp, e.g. '%d.%m.%Y %H:%M'"
    )
    timezone: str | None = Field(
        default=None,
        description="IANA zone of naive timestamps; the result is stored in UTC",
    )

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        return _check_type("cast", value)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return _check_timezone(value)

    @model_validator(mode="after")
    def _format_needs_temporal(self) -> CastSpec:
        kind = self.type.strip().lower()
        if self.format and kind not in ("date", "timestamp", "datetime"):
            raise ValueError(f"format only applies to date and timestamp, not {self.type!r}")
        if self.timezone and kind not in ("timestamp", "datetime"):
            raise ValueError(f"timezone only applies to timestamp, not {self.type!r}")
        return self


class CastStep(StepBase):
    """``cast: {col: int64, day: {type: date, format: '%d.%m.%Y'}}``."""

    cast: dict[str, str | CastSpec]

    @field_validator("cast")
    @classmethod
    def _types(cls, value: dict[str, str | CastSpec]) -> dict[str, str | CastSpec]:
        for column, spec in value.items():
            if isinstance(spec, str):
                _check_type(f"cast of {column}", spec)
        return value

    def specs(self) -> dict[str, CastSpec]:
        """Every cast in its long form."""
        return {c: CastSpec(type=s) if isinstance(s, str) else s for c, s in self.cast.items()}


class ParseSpec(Strict):
    """How to read one text column: a number with local separators, or dates in several formats."""

    decimal: str | None = Field(default=None, max_length=1, description="decimal mark, e.g. ','")
    thousands: str | None = Field(default=None, max_length=1, description="e.g. '.' or ' '")
    formats: list[str] = Field(default=[], description="date formats tried in order")
    to: str | None = Field(
        default=None, description="result type; default float64 for numbers, date for dates"
    )
    timezone: str | None = None

    @field_validator("to")
    @classmethod
    def _type(cls, value: str | None) -> str | None:
        return None if value is None else _check_type("parse", value)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return _check_timezone(value)

    @model_validator(mode="after")
    def _one_kind(self) -> ParseSpec:
        number = self.decimal is not None or self.thousands is not None
        if number == bool(self.formats):
            raise ValueError(
                "parse needs either decimal/thousands (a number) or formats (dates), not both"
            )
        if number and self.decimal == self.thousands:
            raise ValueError("decimal and thousands separators must differ")
        return self

    @property
    def is_number(self) -> bool:
        return not self.formats


class ParseStep(StepBase):
    """``parse: {amount: {decimal: ',', thousands: '.'}, day: {formats: [...]}}``."""

    parse: dict[str, ParseSpec] = Field(min_length=1)


class TrimStep(StepBase):
    """``trim: [a, b]``: strip leading and trailing whitespace."""

    trim: ColumnNames


class LowerStep(StepBase):
    lower: ColumnNames


class UpperStep(StepBase):
    upper: ColumnNames


class ReplaceSpec(Strict):
    pattern: str
    with_: str = Field(default="", alias="with")

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str) -> str:
        return _check_regex(value)


class ReplaceStep(StepBase):
    """``replace: {col: {pattern: '\\s+', with: ' '}}`` (regular expressions)."""

    replace: dict[str, ReplaceSpec | list[ReplaceSpec]] = Field(min_length=1)

    def rules(self) -> list[tuple[str, ReplaceSpec]]:
        out: list[tuple[str, ReplaceSpec]] = []
        for column, spec in self.replace.items():
            for rule in spec if isinstance(spec, list) else [spec]:
                out.append((column, rule))
        return out


class FillNullStep(StepBase):
    """``fill_null: {col: value}``."""

    fill_null: dict[str, str | int | float | bool] = Field(min_length=1)


class FilterStep(StepBase):
    """``filter: "expression"``: keep the rows where it is true."""

    filter: str

    @field_validator("filter")
    @classmethod
    def _expression(cls, value: str) -> str:
        _check_expression(value)
        return value


class DeriveStep(StepBase):
    """``derive: {new_col: "expression"}``."""

    derive: dict[str, str]

    @field_validator("derive")
    @classmethod
    def _expressions(cls, value: dict[str, str]) -> dict[str, str]:
        for expression in value.values():
            _check_expression(expression)
        return value


class DedupeStep(StepBase):
    """``dedupe: [key columns]`` (empty: whole rows); the first occurrence in the unit wins."""

    dedupe: list[str]


class LookupSpec(Strict):
    """A left join with a small reference table, loaded once per unit."""

    file: str | None = Field(default=None, description="csv or xlsx path or file:// URI")
    table: str | None = Field(default=None, description="a table in the task's destination")
    on: str | list[str] | dict[str, str] = Field(
        description="key column(s); a mapping joins column -> reference column"
    )
    columns: list[str] | dict[str, str] = Field(
        default=[], description="reference columns to add (mapping: reference -> new name)"
    )
    sheet: str | None = None
    delimiter: str = ","
    required: bool = Field(default=False, description="a key without a match fails the unit")

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        # YAML 1.1 reads a bare `on:` key as the boolean true; users mean the join key.
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if k is True else k): v for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _one_source(self) -> LookupSpec:
        if (self.file is None) == (self.table is None):
            raise ValueError("lookup needs exactly one of file or table")
        return self

    def keys(self) -> dict[str, str]:
        """Column of the batch -> column of the reference table."""
        if isinstance(self.on, str):
            return {self.on: self.on}
        if isinstance(self.on, list):
            return {k: k for k in self.on}
        return dict(self.on)

    def added(self) -> dict[str, str]:
        """Reference column -> output column."""
        if isinstance(self.columns, list):
            return {c: c for c in self.columns}
        return dict(self.columns)


class LookupStep(StepBase):
    lookup: LookupSpec


class AddMetadataStep(StepBase):
    """``add_metadata: [source_file, row_number, run_id, load_time]`` or ``{field: column}``."""

    add_metadata: list[MetadataField] | dict[MetadataField, str] = Field(min_length=1)

    def columns(self) -> dict[str, str]:
        """Metadata field -> output column."""
        if isinstance(self.add_metadata, list):
            return {f: METADATA_DEFAULT_NAMES[f] for f in self.add_metadata}
        return {str(k): v for k, v in self.add_metadata.items()}


class PythonStep(StepBase):
    """``python: package.module:function`` or an entry-point name in group ``sluice.steps``."""

    python: str
    args: dict[str, Any] = Field(default={}, description="keyword arguments for the function")

    @field_validator("python")
    @classmethod
    def _reference(cls, value: str) -> str:
        if not PYTHON_REF_RE.match(value):
            raise ValueError(
                f"python step {value!r}: use package.module:function or an entry-point name "
                "registered in the 'sluice.steps' group"
            )
        return value


class RowCount(Strict):
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)


class Checks(Strict):
    not_null: list[str] = []
    unique: list[str] = []
    range: dict[str, tuple[float | None, float | None]] = {}
    regex: dict[str, str] = {}
    allowed_values: dict[str, list[Any]] = {}
    row_count: RowCount | None = Field(default=None, description="rows per unit, fails the unit")
    schema_: dict[str, str] = Field(
        default={}, alias="schema", description="declared output columns and types"
    )

    @field_validator("regex")
    @classmethod
    def _regexes(cls, value: dict[str, str]) -> dict[str, str]:
        for pattern in value.values():
            _check_regex(pattern)
        return value

    @field_validator("schema_")
    @classmethod
    def _types(cls, value: dict[str, str]) -> dict[str, str]:
        for column, type_name in value.items():
            _check_type(f"schema of {column}", type_name)
        return value


class CheckStep(StepBase):
    check: Checks
    on_fail: OnFail = "fail"
    max_reject_ratio: float = Field(default=0.0, ge=0.0, le=1.0)


STEP_TYPES: dict[str, type[StepBase]] = {
    "rename": RenameStep,
    "select": SelectStep,
    "drop": DropStep,
    "cast": CastStep,
    "parse": ParseStep,
    "trim": TrimStep,
    "lower": LowerStep,
    "upper": UpperStep,
    "replace": ReplaceStep,
    "fill_null": FillNullStep,
    "filter": FilterStep,
    "derive": DeriveStep,
    "dedupe": DedupeStep,
    "lookup": LookupStep,
    "add_metadata": AddMetadataStep,
    "python": PythonStep,
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
    | Annotated[SelectStep, Tag("select")]
    | Annotated[DropStep, Tag("drop")]
    | Annotated[CastStep, Tag("cast")]
    | Annotated[ParseStep, Tag("parse")]
    | Annotated[TrimStep, Tag("trim")]
    | Annotated[LowerStep, Tag("lower")]
    | Annotated[UpperStep, Tag("upper")]
    | Annotated[ReplaceStep, Tag("replace")]
    | Annotated[FillNullStep, Tag("fill_null")]
    | Annotated[FilterStep, Tag("filter")]
    | Annotated[DeriveStep, Tag("derive")]
    | Annotated[DedupeStep, Tag("dedupe")]
    | Annotated[LookupStep, Tag("lookup")]
    | Annotated[AddMetadataStep, Tag("add_metadata")]
    | Annotated[PythonStep, Tag("python")]
    | Annotated[CheckStep, Tag("check")],
    Discriminator(
        _step_tag,
        custom_error_type="unknown_step",
        custom_error_message=f"unknown transform step; known steps: {', '.join(STEP_TYPES)}",
    ),
]


def step_name(step: StepBase) -> str:
    """The YAML key of a step (``cast``, ``python``...)."""
    return next(k for k, v in STEP_TYPES.items() if isinstance(step, v))


def describe_step(index: int, step: StepBase) -> str:
    """``step 3 (python: acme.steps:clean)``: how errors name a step."""
    name = step_name(step)
    detail = f": {step.python}" if isinstance(step, PythonStep) else ""
    return f"step {index + 1} ({name}{detail})"


def check_declared_columns(columns: dict[str, str]) -> dict[str, str]:
    """Validate a task's declared ``columns`` (name -> cast type)."""
    for column, type_name in columns.items():
        _check_type(f"columns of {column}", type_name)
    return columns
