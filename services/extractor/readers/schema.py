"""One schema per unit: infer column types from a sample, then convert every batch to them.

Text readers tokenize every field as a string (pyarrow does that fast and in bounded memory) and
hand the string batches here. The first batch is the sample: each column gets the narrowest type
all its values fit (int64, float64, timestamp, date, bool, else string), unless the task
declares the type in ``column_types``. Every later batch is converted to exactly that schema, so
the schema never changes mid-unit; a later value that does not fit fails the unit with its line,
column and value instead of silently becoming null.

Numbers honour the ``decimal`` and ``thousands`` separators; values that look like identifiers
with leading zeros (``00123``) stay strings so zip codes and article numbers keep their zeros.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc

from services.common import lineage
from services.common.errors import BadInput
from services.common.spec.source import SourceOptions

DEFAULT_NULLS = ["", "NA", "N/A", "n/a", "#N/A", "NULL", "null", "NaN", "nan", "None", "-"]

_DECLARED: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "decimal": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
}
_NUMERIC = (pa.int64(), pa.float64())
SAMPLE_ROWS = 10_000
"""Rows of the first batch types are first tried on."""


def unique_names(names: list[str]) -> list[str]:
    """Column names made unique and non-empty (``a, a`` -> ``a, a_2``; ``""`` -> ``column_3``)."""
    seen: dict[str, int] = {}
    result = []
    for index, raw in enumerate(names, start=1):
        name = raw.strip() or f"column_{index}"
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        seen.setdefault(name, 1)
        result.append(name)
    return result


def null_values(options: SourceOptions) -> list[str]:
    return DEFAULT_NULLS if options.null_values is None else options.null_values


def _normalise_number(column: pa.Array, options: SourceOptions) -> pa.Array:
    column = pc.utf8_trim_whitespace(column)
    if options.thousands:
        column = pc.replace_substring(column, options.thousands, "")
    if options.decimal != ".":
        column = pc.replace_substring(column, options.decimal, ".")
    return column


def _prepare(column: pa.Array, target: pa.DataType, options: SourceOptions) -> pa.Array:
    if target in _NUMERIC:
        return _normalise_number(column, options)
    if target != pa.string():
        return pc.utf8_trim_whitespace(column)
    return column


def _fits(column: pa.Array, target: pa.DataType, options: SourceOptions) -> bool:
    try:
        pc.cast(_prepare(column, target, options), target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def infer_type(column: pa.Array, options: SourceOptions) -> pa.DataType:
    """The narrowest type every non-null sampled value of a string column fits."""
    values = column.drop_null()
    if len(values) == 0:
        return pa.string()
    if pc.any(pc.match_substring_regex(values, r"^\s*[-+]?0[0-9]")).as_py():
        return pa.string()  # leading zeros: an identifier, not a number
    for candidate in (pa.int64(), pa.float64()):
        if _fits(values, candidate, options):
            return candidate
    dates = pc.all(pc.match_substring_regex(values, r"^\s*\d{4}-\d{2}-\d{2}\s*$")).as_py()
    if dates and _fits(values, pa.date32(), options):
        return pa.date32()
    stamps = pc.all(pc.match_substring_regex(values, r"^\s*\d{4}-\d{2}-\d{2}[T ]\d")).as_py()
    if stamps and _fits(values, pa.timestamp("us"), options):
        return pa.timestamp("us")
    lowered = pc.utf8_lower(pc.utf8_trim_whitespace(values))
    if pc.all(pc.is_in(lowered, value_set=pa.array(["true", "false"]))).as_py():
        return pa.bool_()
    return pa.string()


def declared_type(name: str, options: SourceOptions) -> pa.DataType | None:
    declared = (options.column_types or {}).get(name)
    return None if declared is None else _DECLARED[declared]


def plan_schema(sample: pa.RecordBatch, options: SourceOptions) -> pa.Schema:
    """The unit's schema: declared types win, the others are inferred from ``sample``."""
    fields = []
    for name, column in zip(sample.schema.names, sample.columns, strict=True):
        target = declared_type(name, options) or infer_type(column, options)
        fields.append(pa.field(name, target))
    fields.append(pa.field(lineage.LINE, pa.int64()))
    return pa.schema(fields)


def native_types(schema: pa.Schema, options: SourceOptions) -> dict[str, pa.DataType] | None:
    """Column types pyarrow's csv reader can convert itself, or None when ours must.

    pyarrow knows neither a decimal comma nor thousands separators.
    """
    types = {f.name: f.type for f in schema if f.name != lineage.LINE}
    numeric = any(t in _NUMERIC for t in types.values())
    if numeric and (options.decimal != "." or options.thousands):
        return None
    return types


def plan_and_convert(
    raw: pa.RecordBatch, lines: pa.Array, options: SourceOptions, *, file: str
) -> tuple[pa.Schema, pa.RecordBatch]:
    """Schema and converted batch for a unit's first batch.

    Types are tried on the first ``SAMPLE_ROWS`` rows (failed casts are the slow part of
    inference); if a later row of the same first batch does not fit, the plan is widened by
    inferring over the whole batch, which is safe because nothing has been emitted yet.
    """
    schema = plan_schema(raw.slice(0, SAMPLE_ROWS), options)
    try:
        return schema, convert(raw, schema, lines, options, file=file)
    except BadInput:
        if raw.num_rows <= SAMPLE_ROWS:
            raise
    schema = plan_schema(raw, options)
    return schema, convert(raw, schema, lines, options, file=file)


def convert(
    raw: pa.RecordBatch,
    schema: pa.Schema,
    lines: pa.Array,
    options: SourceOptions,
    *,
    file: str,
) -> pa.RecordBatch:
    """Cast a string batch to ``schema``; a value that does not fit names its line and column."""
    columns = []
    for field in schema:
        if field.name == lineage.LINE:
            columns.append(lines)
            continue
        column = raw.column(field.name)
        if field.type == pa.string():
            columns.append(column)
            continue
        prepared = _prepare(column, field.type, options)
        try:
            columns.append(pc.cast(prepared, field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise _bad_value(column, prepared, field, lines, options, file) from None
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _bad_value(
    column: pa.Array,
    prepared: pa.Array,
    field: pa.Field,
    lines: pa.Array,
    options: SourceOptions,
    file: str,
) -> BadInput:
    # Error path only: find the first offending value row by row.
    for index in range(len(prepared)):
        try:
            pc.cast(prepared.slice(index, 1), field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            value = column[index].as_py()
            how = "declared" if declared_type(field.name, options) else "inferred from the rows"
            return BadInput(
                f"value {value!r} is not {field.type} ({how} before it); declare the column "
                f"in source.options.column_types (e.g. {field.name}: string), add the value "
                "to null_values, or fix the file",
                file=file,
                line=lines[index].as_py(),
                column=field.name,
            )
    return BadInput(f"column {field.name!r} cannot be read as {field.type}", file=file)


def unify(schemas: Mapping[str, pa.Schema]) -> pa.Schema:
    """One schema over several (Excel sheets): union of columns, conflicting types as string."""
    merged: dict[str, pa.DataType] = {}
    for schema in schemas.values():
        for field in schema:
            known = merged.get(field.name)
            if known is None or known == pa.null():
                merged[field.name] = field.type
            elif field.type in (known, pa.null()):
                continue
            elif {known, field.type} == {pa.int64(), pa.float64()}:
                merged[field.name] = pa.float64()
            else:
                merged[field.name] = pa.string()
    return pa.schema([pa.field(n, t) for n, t in merged.items()])
