"""xls sheets made Arrow columns in Rust (fastexcel) where that gives the row path's result.

An xls is decoded whole when it is opened. python-calamine then hands its cells to Python one by
one, and building Arrow columns from those objects costs about as much as the decode itself.
fastexcel is calamine too, but builds the Arrow columns in Rust.

Its rules are not the row path's (:mod:`.excel`), so this path answers only where the result is
the same, batch for batch, and says ``None`` otherwise; the row path then reads the workbook. It
answers when:

- one whole sheet is read (by name or index), with a header row, no ``cell_range``, no declared
  column types and no ``max_rows``;
- every column holds one kind of cell, blanks, error cells and null markers aside. fastexcel's
  strict inference checks that over the whole column; whole and fractional numbers are one kind
  (xls stores some numbers as integers, some as floats), so such a column is read as floats;
- each header cell is text;
- the sampled rows (the first batch, as in the row path) decide each column's type as the row
  path would: whole numbers become int64 and every later number must be whole too; dates at
  midnight become date32 and every later one must be at midnight; a column with no value in the
  sample is left to the row path;
- a cell fastexcel could not convert is an error cell (null) or a null marker the options name.

Texts keep the row path's per-batch rule: in a batch holding a null marker or an error text
(``#N/A`` typed as text), cells whose stripped text is a null marker become null.

fastexcel's messages are read to tell which column mixed whole and fractional numbers and which
cells failed to convert, so its version is pinned (pyproject.toml); a message it words otherwise
only sends the sheet to the row path. ``tests/unit/extract/test_excel_columnar.py`` compares the
two paths on random workbooks.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import fastexcel
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from services.common import lineage
from services.common.spec.source import SourceOptions
from services.extractor.readers import schema as schemas
from services.extractor.readers.excel_errors import ERROR_TEXTS
from services.extractor.readers.excel_rules import (
    ERROR_ARRAY,
    MAX_SAFE_INT,
    checked_text,
    rows_per_batch,
)
from services.extractor.readers.magic import OLE2_MAGIC
from services.extractor.readers.text import head

# fastexcel logs a warning for every column with no typed cell; the row path's rules decide.
logging.getLogger("fastexcel").setLevel(logging.ERROR)

_MAX_PINS = 16
"""Columns of whole and fractional numbers read as floats before giving up on the sheet: each
one costs a load of the sheet."""
_HEADER_SEARCH = 64
"""Rows looked at for the header below a blank header row."""
_NUMBERS_MIXED = re.compile(r"column contains \{(?:Int, Float|Float, Int)\}")
_COLUMN = re.compile(r"could not determine dtype for column (.+)$", re.MULTILINE)
_GENERATED = "__UNNAMED__"
"""How fastexcel names a column whose header cell is blank."""
_NULL_STRINGS = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
)  # fmt: skip
"""Texts fastexcel's inference ignores, as it ignores blank cells: the only texts a column it
typed as numbers, booleans or dates can hold (each then fails to convert, or is NaN)."""
_CONVERT_FAILED = re.compile(r"^Expected \w+ but got '(?:Error\(\w+\)|String\(\"(.*)\"\))'?$")
_SPACE = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())
_EDGE_SPACE = "^[{0}]|[{0}]$".format(re.escape(_SPACE))
"""A text with what Python's ``str.strip`` removes at either end."""
_FIRST_1900_DATE = pa.scalar(dt.date(1900, 1, 1), pa.date32())
_FIRST_1904_DATE = pa.scalar(dt.date(1904, 1, 1), pa.date32())
"""A time of day (a serial below 1) reads as a date in 1899 or, in the 1904 system, 1904-01-01;
python-calamine gives the row path a time then."""


@dataclass
class ColumnarSheet:
    """One sheet read: its batches (the row path's batch boundaries) and where its cells were."""

    name: str
    header_row: int
    """1-based sheet row of the header."""
    left: int
    """0-based sheet column of the first column."""
    width: int
    batches: list[pa.RecordBatch]
    saw_blank: bool
    """Whether a blank cell was read (error cells read as blanks: then look for them)."""
    error_texts: int
    """Error texts typed as text (``#N/A``) read as null."""
    bottom: int | None = None
    """The last row read: always the sheet's last (no ``cell_range``)."""


def eligible(path: Path, options: SourceOptions) -> bool:
    """Whether the options are ones this path knows, for an xls (an OLE2 file)."""
    return (
        options.header
        and options.cell_range is None
        and options.sheet != "*"
        and not options.column_types
        and options.max_rows is None  # the row path reads part of a sheet; this path all of it
        and head(path, len(OLE2_MAGIC)) == OLE2_MAGIC
    )


def read(path: Path, options: SourceOptions) -> ColumnarSheet | None:
    """The sheet the options name, or None where the row path must decide."""
    if not eligible(path, options):
        return None
    try:
        reader = fastexcel.read_excel(str(path))
    except Exception:  # the row path names what is wrong with the file
        return None
    which = options.sheet if options.sheet is not None else 0
    header = options.skip_rows
    nulls = set(schemas.null_values(options))
    null_cells = nulls | ERROR_TEXTS | {""}
    loaded = _load(reader, which, header, null_cells)
    if _blank_header(loaded):
        # The header is the first row with a value, as in the row path.
        found = _first_filled(reader, which, header)
        if found is None:
            return None
        header = found
        loaded = _load(reader, which, header, null_cells)
    if not isinstance(loaded, _Loaded):
        return None
    sheet, infos, table, marked_rows = loaded
    names = [c.name for c in infos]
    if not names or not _plain_header(names, [c.column_name_from for c in infos]):
        return None
    left = infos[0].absolute_index
    if options.skip_rows and left != 0:
        return None  # rows skipped above may start further left, which moves the columns
    blank = _blank_rows(table).to_numpy(zero_copy_only=False).copy()
    blank[marked_rows] = False
    kept = pa.array(~blank)
    lines = pc.filter(pa.array(np.arange(header + 2, header + 2 + table.num_rows)), kept)
    saw_blank = len(lines) < table.num_rows
    data = table.filter(kept)
    headers = schemas.unique_names(names)
    batch_rows = rows_per_batch(len(headers))
    columns: list[tuple[pa.Field, pa.Array]] = []
    for name, column in zip(headers, data.columns, strict=True):
        if not pa.types.is_string(column.type):  # a text column's blanks are seen per batch
            saw_blank = saw_blank or column.null_count > 0
        converted = _convert(column, batch_rows)
        if converted is None:
            return None
        columns.append((pa.field(name, converted.type), converted))
    schema = schemas.unify({sheet.name: pa.schema([f for f, _ in columns])})
    schema = schema.append(pa.field(lineage.LINE, pa.int64()))
    batches = []
    error_texts = 0
    for start in range(0, len(lines), batch_rows):
        arrays = []
        for field, array in columns:
            part = array.slice(start, batch_rows)
            if field.type == pa.string():
                part, blank, errors = _texts(part, nulls)
                saw_blank = saw_blank or blank
                error_texts += errors
            arrays.append(part)
        arrays.append(lines.slice(start, batch_rows))
        batches.append(pa.RecordBatch.from_arrays(arrays, schema=schema))
    return ColumnarSheet(
        name=sheet.name,
        header_row=header + 1,
        left=left,
        width=len(headers),
        batches=batches,
        saw_blank=saw_blank,
        error_texts=error_texts,
    )


class _Mixed(NamedTuple):
    """A column that mixes kinds of cells (named as fastexcel names it)."""

    column: str


class _Loaded(NamedTuple):
    sheet: Any
    infos: list[Any]
    """fastexcel's ``ColumnInfo`` of each column (each call of ``available_columns`` infers the
    types again)."""
    table: pa.RecordBatch
    marked_rows: list[int]
    """Rows (0-based, in ``table``) holding a null marker text: null, but not a blank row."""


def _load(
    reader: Any, which: str | int, header: int, null_cells: set[str]
) -> _Loaded | _Mixed | None:
    """The sheet with its header at 0-based sheet row ``header``, strictly typed, and its cells;
    else the column that mixes kinds, or None if a cell failed to convert for another reason
    than being an error cell or one of the ``null_cells`` texts."""
    pins: dict[str | int, Any] = {}
    for _ in range(_MAX_PINS + 1):
        try:
            # skip_rows=0 makes header_row a sheet row (without it, 0 means the first used row).
            sheet = reader.load_sheet(
                which,
                header_row=header,
                skip_rows=0,
                schema_sample_rows=None,
                dtype_coercion="strict",
                dtypes=pins or None,
            )
            infos = sheet.available_columns()  # the types are inferred here
        except fastexcel.UnsupportedColumnTypeCombinationError as exc:
            message = str(exc)
            column = _COLUMN.search(message)
            if column is None:
                return None
            if not _NUMBERS_MIXED.search(message) or column.group(1) in pins:
                return _Mixed(column.group(1))
            pins[column.group(1)] = "float"
            continue
        except Exception:  # a sheet fastexcel cannot read: the row path decides
            return None
        try:
            table, errors = sheet.to_arrow_with_errors()
        except Exception:
            return None
        marked_rows = []
        for error in errors.errors if errors is not None else ():
            text = _null_cell(error.detail, null_cells)
            if text is None:
                return None
            if text:
                marked_rows.append(error.offset_position[0])
        return _Loaded(sheet, infos, table, marked_rows)
    return None


def _null_cell(detail: str, null_cells: set[str]) -> str | None:
    """For a cell fastexcel could not convert that the row path reads as null too, its text:
    "" for an error cell, or a text among ``null_cells`` (only the texts fastexcel's inference
    ignores can be in a column it typed as numbers, booleans or dates); else None."""
    match = _CONVERT_FAILED.match(detail)
    if match is None:
        return None
    text = match.group(1)
    if text is None:
        return ""
    return text if text in _NULL_STRINGS and text in null_cells else None


def _plain_header(names: list[str], origins: list[str]) -> bool:
    """Whether every header cell is a text the row path would name the column by as it is: not
    blank (nor a boolean or a date, which fastexcel does not name either), not a number (which
    fastexcel writes its own way), and not renamed by fastexcel to make it unique."""
    if any(o != "looked_up" for o in origins) or any(n in ERROR_TEXTS or n == "" for n in names):
        return False
    for index, name in enumerate(names):
        if _looks_numeric(name):
            return False
        base, _, suffix = name.rpartition("_")
        if suffix.isdigit() and base in names[:index]:
            return False
    return True


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _first_filled(reader: Any, which: str | int, header: int) -> int | None:
    """The 0-based sheet row of the first row with a value from ``header`` on, when row
    ``header`` is blank and one of the next few rows is not; else None."""
    try:
        sheet = reader.load_sheet(
            which, header_row=header, skip_rows=0, n_rows=_HEADER_SEARCH, dtypes="string"
        )
        if not _all_generated(sheet.available_columns()):
            return None  # the header row has a value: some column mixes kinds
        rows = sheet.to_arrow()
    except Exception:
        return None
    index = pc.index(_blank_rows(rows), False).as_py() if rows.num_columns else -1
    return None if index < 0 else header + 1 + int(index)


def _blank_header(loaded: _Loaded | _Mixed | None) -> bool:
    """Whether the header row may be blank: fastexcel named every column itself, or a column
    it named itself mixes kinds (the real header is then among the data, where it most often
    mixes texts with the column's values)."""
    if isinstance(loaded, _Mixed):
        return loaded.column.startswith(_GENERATED)
    return loaded is not None and _all_generated(loaded.infos)


def _all_generated(infos: list[Any]) -> bool:
    """Whether fastexcel named every column itself: the header row is blank."""
    return all(c.column_name_from == "generated" for c in infos)


def _blank_rows(table: pa.RecordBatch) -> pa.Array:
    """Rows whose cells are all blank, as python-calamine sees them: empty, an empty text or an
    error cell (which fastexcel reads as an empty text in a text column)."""
    blank = None
    for column in table.columns:
        empty = pc.is_null(column)
        if pa.types.is_string(column.type):
            empty = pc.or_(empty, pc.fill_null(pc.equal(column, ""), False))
        blank = empty if blank is None else pc.and_(blank, empty)
    assert blank is not None
    return blank


def _convert(column: pa.Array, batch_rows: int) -> pa.Array | None:
    """The column in the type the row path would give it from its first ``batch_rows`` rows,
    or None when the row path would decide otherwise."""
    kind = column.type
    if pa.types.is_string(kind):
        return column
    if pa.types.is_null(kind):
        return pa.nulls(len(column), pa.string())
    sample = column.slice(0, batch_rows).drop_null()
    if len(sample) == 0:
        return None  # the row path reads such a column as text
    if pa.types.is_boolean(kind):
        return column
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return _number(column, sample)
    if pa.types.is_timestamp(kind):
        return _moment(column, sample)
    return None  # durations, ISO dates: the row path's own rules


def _number(column: pa.Array, sample: pa.Array) -> pa.Array | None:
    if pa.types.is_floating(column.type):
        if pc.any(pc.is_nan(column)).as_py():
            return None  # a "NaN" text fastexcel parsed: a null marker for the row path
        whole = pc.all(pc.equal(pc.floor(sample), sample)).as_py()
    else:
        whole = True
    small = pc.all(pc.less(pc.abs(sample), float(MAX_SAFE_INT))).as_py()
    if whole and small:
        try:
            return pc.cast(column, pa.int64())  # safe: a later fraction fails it
        except (pa.ArrowInvalid, OverflowError):
            return None  # the row path names the cell
    return pc.cast(column, pa.float64())


def _moment(column: pa.Array, sample: pa.Array) -> pa.Array | None:
    days = pc.cast(column, pa.date32())
    early = pc.or_(pc.less(days, _FIRST_1900_DATE), pc.equal(days, _FIRST_1904_DATE))
    if pc.any(early).as_py():
        return None
    if pc.all(_at_midnight(sample)).as_py():
        if not pc.all(_at_midnight(column)).as_py():
            return None  # a time of day after dates only: the row path names the cell
        return days
    return pc.cast(column, pa.timestamp("us"))


def _at_midnight(moments: pa.Array) -> pa.Array:
    return pc.equal(pc.cast(pc.cast(moments, pa.date32()), moments.type), moments)


def _texts(part: pa.Array, nulls: set[str]) -> tuple[pa.Array, bool, int]:
    """One batch of a text column as the row path makes it, whether it held a blank, and its
    error texts."""
    seen = pc.fill_null(part, "")  # what python-calamine gives for blank and error cells
    checked, blank, errors = checked_text(seen, nulls)
    if checked is not None:
        return checked, blank, errors
    # The row path's careful rule: blanks, error texts and cells whose stripped text is a
    # null marker are null.
    empty = pc.equal(seen, "")
    null = pc.or_(empty, pc.is_in(seen, ERROR_ARRAY))
    null = pc.or_(null, pc.is_in(seen, pa.array(sorted(nulls), pa.string())))
    padded = pc.filter(seen, pc.match_substring_regex(seen, _EDGE_SPACE))
    stripped = {text for text in padded.to_pylist() if text.strip() in nulls}
    if stripped:
        null = pc.or_(null, pc.is_in(seen, pa.array(sorted(stripped), pa.string())))
    blank = bool(pc.any(empty).as_py())
    return pc.if_else(null, pa.scalar(None, pa.string()), seen), blank, errors
