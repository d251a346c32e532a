"""rename, cast, filter and derive."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from services.common import lineage
from services.common.errors import BadInput
from services.common.spec.expr import parse_expression
from services.common.spec.model import CastStep, DeriveStep, FilterStep, RenameStep
from services.transformer.errors import StepFailed

_TRUE = {"true", "t", "yes", "y", "1", "ja", "oui"}
_FALSE = {"false", "f", "no", "n", "0", "nein", "non"}
_INT_TYPES = {
    "int8": pa.int8(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
    "int": pa.int64(), "integer": pa.int64(),
}  # fmt: skip
_FLOAT_TYPES = {"float": pa.float64(), "float64": pa.float64(), "double": pa.float64(),
                "float32": pa.float32()}  # fmt: skip
_DECIMAL = re.compile(r"decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)")


def apply_rename(frame: pd.DataFrame, step: RenameStep, file: str) -> pd.DataFrame:
    missing = [c for c in step.rename if c not in frame.columns]
    if missing:
        raise StepFailed(
            f"rename: column(s) {', '.join(map(repr, missing))} not found; columns are: "
            f"{', '.join(c for c in frame.columns if c != lineage.LINE)}",
            file=file,
        )
    return frame.rename(columns=step.rename)


def apply_filter(frame: pd.DataFrame, step: FilterStep) -> pd.DataFrame:
    mask = parse_expression(step.filter).evaluate(frame)
    if not isinstance(mask, pd.Series):
        return frame if mask else frame.iloc[0:0]
    return frame[mask.fillna(False).astype(bool)]


def apply_derive(frame: pd.DataFrame, step: DeriveStep) -> pd.DataFrame:
    result = frame.copy(deep=False)
    for name, source in step.derive.items():
        value = parse_expression(source).evaluate(result)
        result[name] = (
            value
            if isinstance(value, pd.Series)
            else pd.Series([value] * len(result), index=result.index)
        )
    return result


def apply_cast(frame: pd.DataFrame, step: CastStep, file: str) -> pd.DataFrame:
    result = frame.copy(deep=False)
    for column, type_name in step.cast.items():
        if column not in result.columns:
            raise StepFailed(f"cast: column {column!r} not found", file=file, column=column)
        result[column] = _cast_series(result, column, type_name.strip().lower(), file)
    return result


def _cast_series(frame: pd.DataFrame, column: str, type_name: str, file: str) -> pd.Series:
    series = frame[column]
    was_null = series.isna()
    if type_name in _INT_TYPES or type_name in _FLOAT_TYPES:
        target = _INT_TYPES.get(type_name) or _FLOAT_TYPES[type_name]
        fast = _arrow_cast(series, target)
        if fast is not None:
            return fast
        # Slow path only when Arrow refuses: find the offending value for the error message.
        source = _as_text(series).str.strip() if _is_text(series) else series
        as_float = pd.to_numeric(source, errors="coerce").astype("float64")
        bad = as_float.isna() & ~was_null
        if type_name in _INT_TYPES:
            bad |= as_float.notna() & (as_float != np.floor(as_float))
        _raise_on_bad(frame, column, type_name, file, bad)
        return pd.Series(
            pa.array(as_float, from_pandas=True).cast(target),
            index=series.index,
            dtype=pd.ArrowDtype(target),
        )
    if type_name in ("bool", "boolean"):
        text = _as_text(series).str.strip().str.lower()
        mapped = text.map(lambda v: True if v in _TRUE else (False if v in _FALSE else None))
        _raise_on_bad(frame, column, type_name, file, mapped.isna() & ~was_null)
        return mapped.astype(pd.ArrowDtype(pa.bool_()))
    if type_name in ("date", "timestamp", "datetime"):
        parsed = pd.to_datetime(series, errors="coerce", format="mixed")
        _raise_on_bad(frame, column, type_name, file, parsed.isna() & ~was_null)
        if type_name == "date":
            return parsed.dt.date.astype(pd.ArrowDtype(pa.date32()))
        return parsed.astype(pd.ArrowDtype(pa.timestamp("us")))
    if type_name in ("string", "str"):
        return _as_text(series)
    match = _DECIMAL.fullmatch(type_name)
    if match:
        precision, scale = int(match.group(1)), int(match.group(2))
        return _to_decimal(frame, column, precision, scale, file)
    raise StepFailed(f"cast: unknown type {type_name!r}", file=file, column=column)


def _to_decimal(
    frame: pd.DataFrame, column: str, precision: int, scale: int, file: str
) -> pd.Series:
    series = frame[column]
    array = pa.array(series)
    if pa.types.is_floating(array.type) or pa.types.is_integer(array.type):
        array = pc.round(array.cast(pa.float64()), scale)
    target = pa.decimal128(precision, scale)
    try:
        cast = pc.cast(
            pc.cast(array, pa.string()) if pa.types.is_floating(array.type) else array, target
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        numeric = pd.to_numeric(_as_text(series), errors="coerce")
        _raise_on_bad(
            frame, column, f"decimal({precision},{scale})", file, numeric.isna() & series.notna()
        )
        cast = pc.cast(
            pc.cast(pc.round(pa.array(numeric, type=pa.float64()), scale), pa.string()), target
        )
    return pd.Series(cast, index=series.index, dtype=pd.ArrowDtype(target))


def _arrow_cast(series: pd.Series, target: pa.DataType) -> pd.Series | None:
    try:
        cast = pc.cast(pa.array(series, from_pandas=True), target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    return pd.Series(cast, index=series.index, dtype=pd.ArrowDtype(target))


def _is_text(series: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(series.dtype) or series.dtype == object


def _as_text(series: pd.Series) -> pd.Series:
    return series.astype(pd.ArrowDtype(pa.string()))


def _raise_on_bad(
    frame: pd.DataFrame, column: str, type_name: str, file: str, bad: pd.Series
) -> None:
    bad = bad.fillna(False).astype(bool)
    if not bad.any():
        return
    position = int(bad.to_numpy().argmax())
    value = frame[column].iloc[position]
    line = frame[lineage.LINE].iloc[position] if lineage.LINE in frame.columns else None
    raise BadInput(
        f"cannot cast value {value!r} to {type_name} ({int(bad.sum())} bad value(s) in this batch)",
        file=file,
        line=int(line) if line is not None else None,
        column=column,
    )
