"""Turning columns into typed columns: ``cast``, ``parse`` and the ``schema`` check.

Every conversion works on Arrow arrays with ``pyarrow.compute`` (vectorised, no Python loop over
rows). Conversions are *lenient* at this level: a value that cannot be converted becomes null and
is reported in a mask, so callers decide whether one bad value fails the unit (``cast``,
``parse``) or only rejects its row (the ``schema`` check). Python-level fallbacks run only on a
batch that Arrow refused, and only to find which rows are bad.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from services.common import lineage
from services.common.errors import BadInput
from services.common.spec.steps import CastSpec, ParseSpec

TRUE_WORDS = ["true", "t", "yes", "y", "1", "ja", "j", "oui", "si", "on"]
FALSE_WORDS = ["false", "f", "no", "n", "0", "nein", "non", "off"]
_INT_TYPES: dict[str, pa.DataType] = {
    "int8": pa.int8(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
    "int": pa.int64(), "integer": pa.int64(),
}  # fmt: skip
_FLOAT_TYPES: dict[str, pa.DataType] = {
    "float": pa.float64(), "float64": pa.float64(), "double": pa.float64(),
    "float32": pa.float32(),
}  # fmt: skip
_DECIMAL = re.compile(r"decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)")
_SPACES = ["\u00a0", "\u202f", "\u2009"]  # no-break and thin spaces used as thousands marks


def arrow_of(series: pd.Series) -> pa.Array:
    """The Arrow array behind a Series (zero-copy for Arrow-backed dtypes)."""
    array = pa.array(series, from_pandas=True)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array


def series_of(array: pa.Array | pa.ChunkedArray, index: pd.Index) -> pd.Series:
    """Wrap an Arrow array as an Arrow-backed Series with ``index``."""
    return pd.Series(pd.arrays.ArrowExtensionArray(array), index=index, copy=False)


def target_type(type_name: str) -> pa.DataType:
    """The Arrow type of a cast type name."""
    kind = type_name.strip().lower()
    if kind in _INT_TYPES:
        return _INT_TYPES[kind]
    if kind in _FLOAT_TYPES:
        return _FLOAT_TYPES[kind]
    if kind in ("bool", "boolean"):
        return pa.bool_()
    if kind in ("string", "str"):
        return pa.string()
    if kind == "date":
        return pa.date32()
    if kind in ("timestamp", "datetime"):
        return pa.timestamp("us")
    match = _DECIMAL.fullmatch(kind)
    if match:
        return pa.decimal128(int(match.group(1)), int(match.group(2)))
    raise ValueError(f"unknown type {type_name!r}")


def convert(array: pa.Array, spec: CastSpec) -> pa.Array:
    """Convert ``array`` as ``spec`` says; values that do not convert become null.

    Text is tried as it is first: most columns are clean, one Arrow kernel converts them, and
    comparing null counts proves that every value made it. Only otherwise is the text trimmed,
    blank cells made null (an empty cell means "no value", as in every csv reader), and the
    conversion redone leniently.
    """
    target = target_type(spec.type)
    if _is_text(array.type):
        if pa.types.is_string(target):
            return array if array.type == target else pc.cast(array, target)
        try:
            fast = _dispatch(array, spec, target, lenient=False)
            if fast.null_count == array.null_count:
                return fast
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass
        array = _blank_to_null(pc.utf8_trim_whitespace(array))
    return _dispatch(array, spec, target, lenient=True)


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _blank_to_null(text: pa.Array) -> pa.Array:
    blank = pc.equal(pc.binary_length(text), 0)
    if not pc.any(blank).as_py():
        return text
    return pc.if_else(blank, pa.scalar(None, text.type), text)


def _dispatch(array: pa.Array, spec: CastSpec, target: pa.DataType, *, lenient: bool) -> pa.Array:
    if pa.types.is_null(array.type):
        return pa.nulls(len(array), target)
    if pa.types.is_integer(target) or pa.types.is_floating(target):
        return _to_number(array, target) if lenient else pc.cast(array, target, safe=True)
    if pa.types.is_boolean(target):
        return _to_bool(array)
    if pa.types.is_decimal(target):
        return _to_decimal(array, target) if lenient else pc.cast(array, target, safe=True)
    if pa.types.is_string(target):
        return array if array.type == target else pc.cast(array, target)
    if pa.types.is_timestamp(target):
        return _to_timestamp(array, spec.format, spec.timezone, lenient)
    if pa.types.is_date(target):
        stamps = _to_timestamp(array, spec.format, None, lenient)
        if stamps.type.tz is not None:
            stamps = stamps.cast(pa.timestamp("us"))
        return pc.cast(stamps, pa.date32())
    raise ValueError(f"unknown type {spec.type!r}")


def bad_values(before: pa.Array, after: pa.Array) -> np.ndarray:
    """Rows that had a value and lost it in a conversion."""
    if after.null_count == before.null_count:
        return np.zeros(len(before), dtype=bool)  # a conversion never turns null into a value
    had_value = pc.is_valid(before)
    if _is_text(before.type):
        had_value = pc.and_(had_value, pc.not_equal(pc.utf8_trim_whitespace(before), ""))
    lost = pc.and_(had_value, pc.is_null(after))
    return np.asarray(lost.to_numpy(zero_copy_only=False), dtype=bool)


def _to_number(array: pa.Array, target: pa.DataType) -> pa.Array:
    try:
        return pc.cast(array, target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    if pa.types.is_integer(target) and _is_text(array.type):
        # Integers stay exact (no detour through float64): null what is not an integer, cast.
        whole = pc.fill_null(pc.match_substring_regex(array, r"^[+-]?\d+(\.0*)?$"), False)
        digits = pc.replace_substring_regex(array, r"\.0*$", "")
        try:
            return pc.cast(pc.if_else(whole, digits, pa.scalar(None, array.type)), target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # out of range for the target type: the float check below finds which
    # Arrow refused the batch: find the bad values with a coercing parse.
    as_float = pd.to_numeric(pd.Series(array.to_pandas()), errors="coerce").astype("float64")
    values = as_float.to_numpy()
    ok = ~np.isnan(values)
    if pa.types.is_integer(target):
        info = np.iinfo(target.to_pandas_dtype())
        ok &= np.floor(np.where(ok, values, 0)) == np.where(ok, values, 0)
        ok &= (values >= info.min) & (values <= info.max)
    return pc.cast(pa.array(values, mask=~ok, type=pa.float64()), target, safe=False)


def _to_bool(array: pa.Array) -> pa.Array:
    if pa.types.is_boolean(array.type):
        return array
    if pa.types.is_integer(array.type) or pa.types.is_floating(array.type):
        return pc.not_equal(array, 0)
    text = pc.utf8_lower(pc.cast(array, pa.string()))
    true = pc.is_in(text, value_set=pa.array(TRUE_WORDS))
    false = pc.is_in(text, value_set=pa.array(FALSE_WORDS))
    return pc.if_else(true, True, pc.if_else(false, pa.scalar(False), pa.scalar(None, pa.bool_())))


def _to_decimal(array: pa.Array, target: pa.Decimal128Type) -> pa.Array:
    if pa.types.is_floating(array.type):
        array = pc.cast(pc.round(array, target.scale), pa.string())
    try:
        return pc.cast(array, target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    try:
        # More fractional digits than the scale: read wide, round half away from zero, narrow.
        wide = pc.cast(array, pa.decimal128(38, max(18, target.scale)), safe=True)
        rounded = pc.round(wide, ndigits=target.scale, round_mode="half_towards_infinity")
        return pc.cast(rounded, target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    # Bad values somewhere in the batch: convert one by one to find them.
    quantum = Decimal(1).scaleb(-target.scale)
    limit = Decimal(10) ** (target.precision - target.scale)
    values: list[Decimal | None] = []
    for raw in array.to_pylist():
        try:
            value = (
                Decimal(str(raw)).quantize(quantum, rounding=ROUND_HALF_UP)
                if raw is not None
                else None
            )
        except (InvalidOperation, ValueError):
            value = None
        if value is not None and (not value.is_finite() or abs(value) >= limit):
            value = None
        values.append(value)
    return pa.array(values, type=target)


def _to_timestamp(
    array: pa.Array, fmt: str | None, timezone: str | None, lenient: bool = True
) -> pa.Array:
    if pa.types.is_timestamp(array.type):
        stamps = array.cast(pa.timestamp("us", array.type.tz))
    elif pa.types.is_date(array.type):
        stamps = array.cast(pa.timestamp("us"))
    elif fmt is not None:
        stamps = pc.strptime(pc.cast(array, pa.string()), format=fmt, unit="us", error_is_null=True)
    else:
        stamps = _iso_timestamps(pc.cast(array, pa.string()), lenient)
    if timezone is None:
        return stamps
    if stamps.type.tz is None:
        stamps = localize(stamps, timezone)
    return stamps.cast(pa.timestamp("us", "UTC"))


def _iso_timestamps(text: pa.Array, lenient: bool = True) -> pa.Array:
    try:
        return pc.cast(text, pa.timestamp("us"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    try:
        return pc.cast(text, pa.timestamp("us", "UTC"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if not lenient:
            raise
    # Without a format only ISO 8601 is read: guessing 01.02.2026 would silently swap days.
    parsed = pd.to_datetime(pd.Series(text.to_pandas()), errors="coerce", format="ISO8601")
    if getattr(parsed.dt, "tz", None) is not None:
        return pa.array(parsed.dt.tz_convert("UTC"), type=pa.timestamp("us", "UTC"))
    return pa.array(parsed, type=pa.timestamp("us"))


def localize(stamps: pa.Array, timezone: str) -> pa.Array:
    """Read naive wall-clock times as local times in ``timezone`` (DST-aware).

    Ambiguous times (the repeated hour when clocks go back) take the first occurrence, and
    times in the gap when clocks go forward are read with the offset before the change
    (02:30 becomes 03:30 summer time): the same rules as Python's ``zoneinfo`` with ``fold=0``
    and PostgreSQL.
    """
    try:
        return pc.assume_timezone(stamps, timezone, ambiguous="earliest", nonexistent="raise")
    except pa.ArrowInvalid:
        pass
    earliest = pc.assume_timezone(stamps, timezone, ambiguous="earliest", nonexistent="earliest")
    latest = pc.assume_timezone(stamps, timezone, ambiguous="earliest", nonexistent="latest")
    gap = pc.fill_null(pc.not_equal(earliest, latest), False)
    zone = ZoneInfo(timezone)
    fixed = [
        local.replace(tzinfo=zone).astimezone(UTC)
        for local, in_gap in zip(stamps.to_pylist(), gap.to_pylist(), strict=True)
        if in_gap
    ]
    return pc.replace_with_mask(earliest, gap, pa.array(fixed, type=earliest.type))


def parse_array(array: pa.Array, spec: ParseSpec) -> pa.Array:
    """Apply a ``parse`` spec: local number formats, or dates in several formats."""
    text = pc.cast(array, pa.string())
    if spec.is_number:
        if spec.thousands is not None:
            marks = [spec.thousands, *(_SPACES if spec.thousands == " " else [])]
            for mark in marks:
                text = pc.replace_substring(text, mark, "")
        if spec.decimal is not None and spec.decimal != ".":
            text = pc.replace_substring(text, spec.decimal, ".")
        return convert(text, CastSpec(type=spec.to or "float64"))
    text = pc.utf8_trim_whitespace(text)
    results = [pc.strptime(text, format=f, unit="us", error_is_null=True) for f in spec.formats]
    if len({r.type for r in results}) > 1:
        # Some formats carry an offset (%z) and some do not: compare instants in UTC.
        zone = spec.timezone or "UTC"
        results = [r if r.type.tz else localize(r, zone) for r in results]
        results = [r.cast(pa.timestamp("us", "UTC")) for r in results]
    stamps = pc.coalesce(*results) if len(results) > 1 else results[0]
    return convert(stamps, CastSpec(type=spec.to or "date", timezone=spec.timezone))


def raise_on_bad(
    frame: pd.DataFrame, column: str, what: str, file: str, bad: np.ndarray, step: str
) -> None:
    """Fail with the first bad value's line and the number of bad values in the batch."""
    if not bad.any():
        return
    position = int(bad.argmax())
    value = frame[column].iloc[position]
    line = frame[lineage.LINE].iloc[position] if lineage.LINE in frame.columns else None
    raise BadInput(
        f"{step}: cannot read value {value!r} as {what} ({int(bad.sum())} bad value(s) in "
        "this batch)",
        file=file,
        line=int(line) if line is not None and not pd.isna(line) else None,
        column=column,
    )


def utc_now() -> datetime:
    return datetime.now(UTC)
