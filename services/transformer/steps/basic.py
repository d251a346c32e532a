"""Column steps: rename, select, drop, cast, parse, trim/lower/upper/replace, fill_null, filter,
derive.

Each function takes the batch as a DataFrame and returns a new one; lineage columns
(``_sluice_*``) are carried through untouched. Column work goes through ``pyarrow.compute`` on
the Arrow arrays behind the Series, so no step loops over rows in Python.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from services.common.spec.expr import parse_expression
from services.common.spec.steps import (
    CastStep,
    DeriveStep,
    DropStep,
    FillNullStep,
    FilterStep,
    LowerStep,
    ParseStep,
    RenameStep,
    ReplaceStep,
    SelectStep,
    TrimStep,
    UpperStep,
)
from services.transformer.errors import StepFailed
from services.transformer.steps.casting import (
    arrow_of,
    bad_values,
    convert,
    parse_array,
    raise_on_bad,
    series_of,
)
from services.transformer.steps.context import UnitContext, lineage_columns, require_columns


def apply_rename(frame: pd.DataFrame, step: RenameStep, ctx: UnitContext) -> pd.DataFrame:
    require_columns(frame, step.rename, "rename", ctx)
    renamed = frame.rename(columns=step.rename)
    _refuse_twice(renamed.columns, ctx)
    return renamed


def apply_select(frame: pd.DataFrame, step: SelectStep, ctx: UnitContext) -> pd.DataFrame:
    require_columns(frame, step.select, "select", ctx)
    return frame[_selected(frame, step)]


def apply_drop(frame: pd.DataFrame, step: DropStep, ctx: UnitContext) -> pd.DataFrame:
    require_columns(frame, step.drop, "drop", ctx)
    return frame.drop(columns=step.drop)


# The same three steps on an Arrow batch, for chains that never need pandas (see UnitTransform).


def rename_batch(batch: pa.RecordBatch, step: RenameStep, ctx: UnitContext) -> pa.RecordBatch:
    require_columns(batch, step.rename, "rename", ctx)
    names = [step.rename.get(name, name) for name in batch.schema.names]
    _refuse_twice(pd.Index(names), ctx)
    return batch.rename_columns(names)


def select_batch(batch: pa.RecordBatch, step: SelectStep, ctx: UnitContext) -> pa.RecordBatch:
    require_columns(batch, step.select, "select", ctx)
    return batch.select(_selected(batch, step))


def drop_batch(batch: pa.RecordBatch, step: DropStep, ctx: UnitContext) -> pa.RecordBatch:
    require_columns(batch, step.drop, "drop", ctx)
    gone = set(step.drop)
    keep = [i for i, name in enumerate(batch.schema.names) if name not in gone]
    return batch.select(keep)


def _refuse_twice(columns: pd.Index, ctx: UnitContext) -> None:
    twice = columns[columns.duplicated()].tolist()
    if twice:
        raise StepFailed(
            f"rename: more than one column would be called {twice[0]!r}",
            file=ctx.file,
            unit=ctx.unit or None,
            column=str(twice[0]),
        )


def _selected(frame: pd.DataFrame | pa.RecordBatch, step: SelectStep) -> list[str]:
    """The selected columns in order, then the lineage columns the selection leaves out."""
    return [*step.select, *(c for c in lineage_columns(frame) if c not in step.select)]


def apply_cast(frame: pd.DataFrame, step: CastStep, ctx: UnitContext) -> pd.DataFrame:
    specs = step.specs()
    require_columns(frame, specs, "cast", ctx)
    result = frame.copy(deep=False)
    for column, spec in specs.items():
        before = arrow_of(frame[column])
        after = convert(before, spec)
        what = spec.type + (f" with format {spec.format!r}" if spec.format else "")
        raise_on_bad(frame, column, what, ctx.file, bad_values(before, after), "cast")
        result[column] = series_of(after, frame.index)
    return result


def apply_parse(frame: pd.DataFrame, step: ParseStep, ctx: UnitContext) -> pd.DataFrame:
    require_columns(frame, step.parse, "parse", ctx)
    result = frame.copy(deep=False)
    for column, spec in step.parse.items():
        before = arrow_of(frame[column])
        after = parse_array(before, spec)
        if spec.is_number:
            what = f"a number (decimal {spec.decimal!r}, thousands {spec.thousands!r})"
        else:
            what = f"a date in one of the formats {spec.formats!r}"
        raise_on_bad(frame, column, what, ctx.file, bad_values(before, after), "parse")
        result[column] = series_of(after, frame.index)
    return result


def _text_step(
    name: str, function: Callable[[pa.Array], pa.Array]
) -> Callable[[pd.DataFrame, list[str], UnitContext], pd.DataFrame]:
    def apply(frame: pd.DataFrame, columns: list[str], ctx: UnitContext) -> pd.DataFrame:
        require_columns(frame, columns, name, ctx)
        result = frame.copy(deep=False)
        for column in columns:
            result[column] = series_of(function(_text(frame, column, name, ctx)), frame.index)
        return result

    return apply


def _text(frame: pd.DataFrame, column: str, step: str, ctx: UnitContext) -> pa.Array:
    array = arrow_of(frame[column])
    if pa.types.is_null(array.type):
        return array.cast(pa.string())
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        raise StepFailed(
            f"{step}: column {column!r} holds {array.type}, not text; use it before cast",
            file=ctx.file,
            unit=ctx.unit or None,
            column=column,
        )
    return array


_trim = _text_step("trim", pc.utf8_trim_whitespace)
_lower = _text_step("lower", pc.utf8_lower)
_upper = _text_step("upper", pc.utf8_upper)


def apply_trim(frame: pd.DataFrame, step: TrimStep, ctx: UnitContext) -> pd.DataFrame:
    return _trim(frame, step.trim, ctx)


def apply_lower(frame: pd.DataFrame, step: LowerStep, ctx: UnitContext) -> pd.DataFrame:
    return _lower(frame, step.lower, ctx)


def apply_upper(frame: pd.DataFrame, step: UpperStep, ctx: UnitContext) -> pd.DataFrame:
    return _upper(frame, step.upper, ctx)


def apply_replace(frame: pd.DataFrame, step: ReplaceStep, ctx: UnitContext) -> pd.DataFrame:
    rules = step.rules()
    require_columns(frame, [c for c, _ in rules], "replace", ctx)
    result = frame.copy(deep=False)
    for column, rule in rules:
        text = _text(result, column, "replace", ctx)
        try:
            replaced = pc.replace_substring_regex(text, rule.pattern, rule.with_)
        except pa.ArrowInvalid:
            # RE2 (Arrow) lacks a few Python features such as look-arounds: use Python's re.
            pattern = re.compile(rule.pattern)
            replaced = pa.array(
                [None if v is None else pattern.sub(rule.with_, v) for v in text.to_pylist()],
                type=pa.string(),
            )
        result[column] = series_of(replaced, frame.index)
    return result


def apply_fill_null(frame: pd.DataFrame, step: FillNullStep, ctx: UnitContext) -> pd.DataFrame:
    require_columns(frame, step.fill_null, "fill_null", ctx)
    result = frame.copy(deep=False)
    for column, value in step.fill_null.items():
        array = arrow_of(frame[column])
        if pa.types.is_null(array.type):
            filled = pa.array([value] * len(array))
        else:
            try:
                filled = pc.fill_null(array, pa.scalar(value).cast(array.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                raise StepFailed(
                    f"fill_null: {value!r} is not a valid {array.type} for column {column!r}",
                    file=ctx.file,
                    unit=ctx.unit or None,
                    column=column,
                ) from None
        result[column] = series_of(filled, frame.index)
    return result


def apply_filter(frame: pd.DataFrame, step: FilterStep, ctx: UnitContext) -> pd.DataFrame:
    mask = parse_expression(step.filter).evaluate(frame)
    if not isinstance(mask, pd.Series):
        return frame if mask else frame.iloc[0:0]
    return frame[mask.fillna(False).astype(bool)]


def apply_derive(frame: pd.DataFrame, step: DeriveStep, ctx: UnitContext) -> pd.DataFrame:
    result = frame.copy(deep=False)
    for name, source in step.derive.items():
        value = parse_expression(source).evaluate(result)
        if not isinstance(value, pd.Series):
            value = series_of(pa.array(pd.Series(value, index=frame.index)), frame.index)
        result[name] = value
    return result
