"""The ``transform`` steps of an etl task and their validation."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator

from services.common.errors import SpecError
from services.common.spec.base import Strict
from services.common.spec.expr import parse_expression

OnFail = Literal["fail", "drop", "quarantine"]
CAST_TYPE_RE = re.compile(
    r"^(int8|int16|int32|int64|int|integer|float|float32|float64|double|bool|boolean|string|str|"
    r"date|timestamp|datetime|decimal\(\s*\d+\s*,\s*\d+\s*\))$"
)


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
