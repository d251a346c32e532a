"""Excel workbooks (xls, xlsx, xlsm, ods) with python-calamine.

calamine decodes the cells of a sheet in Rust (Excel serial dates, the 1904 date system and
shared strings included) and hands rows to Python one at a time; rows are turned into Arrow
columns a batch at a time. Sheet rows keep their Excel number in ``_sluice_line`` so errors say
"row 12" exactly as the user sees it. Title rows are skipped with ``skip_rows``/``header_row`` or
cut away with ``cell_range``; empty rows are skipped. Error cells (``#DIV/0!``, ``#N/A``) become
nulls; calamine cannot tell them from blank cells, so :mod:`.excel_errors` finds them in the file
for a warning naming the sheet, the cells and the count.

The unit's schema is inferred from the first batch of rows of the first sheet (numbers that are
all whole become int64, else float64; dates, timestamps, booleans, else string), or unified over
every sheet's first rows when ``sheet: "*"``.

An xls sheet is read by :mod:`.excel_columnar` instead where that gives the same batches: it
builds the Arrow columns in Rust, which takes a fifth to two fifths off the time an xls takes
through the service (README, "Extraction speed").
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import operator
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import python_calamine as calamine

from services.common import lineage
from services.common.errors import BadInput
from services.common.spec.source import SourceOptions
from services.extractor.readers import excel_columnar
from services.extractor.readers import schema as schemas
from services.extractor.readers.base import BatchIterator, ReadLimits, gc_paused, rebatch
from services.extractor.readers.cells import column_index, column_letters
from services.extractor.readers.excel_errors import ERROR_TEXTS, find_error_cells
from services.extractor.readers.excel_rules import MAX_SAFE_INT, checked_text, rows_per_batch
from services.extractor.readers.excel_stream import StreamedWorkbook, largest_sheet_bytes
from services.extractor.readers.isolated import OutOfMemory, read_in_child
from services.extractor.readers.magic import OLE2_MAGIC
from services.extractor.readers.read_scope import decode_done
from services.extractor.readers.sheet_xml import SheetXmlError
from services.extractor.readers.text import head

log = logging.getLogger(__name__)
_HEADER_ROWS = 64
"""Rows read before the header is known (then the columns it names bound every row)."""
_CONVERSION_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError)


def parse_range(text: str) -> tuple[int, int, int | None, int | None]:
    """``B3:F200`` -> (first row, first col, last row, last col), rows 1-based, cols 0-based."""
    match = re.fullmatch(r"([A-Za-z]+)(\d+)(?::([A-Za-z]+)(\d*))?", text)
    if match is None:
        raise BadInput(f"cell_range {text!r} is not like B3:F200")
    first_col, first_row, last_col, last_row = match.groups()
    return (
        int(first_row),
        column_index(first_col),
        int(last_row) if last_row else None,
        column_index(last_col) if last_col else None,
    )


class _Block(NamedTuple):
    """Data rows of a sheet and their 1-based sheet row numbers (a range when no row between
    them was dropped, which is the usual case and costs nothing to hold)."""

    numbers: Sequence[int]
    rows: list[list[Any]]

    def split(self, count: int) -> tuple[_Block, _Block]:
        return (
            _Block(self.numbers[:count], self.rows[:count]),
            _Block(self.numbers[count:], self.rows[count:]),
        )

    @staticmethod
    def join(parts: list[_Block]) -> _Block:
        if len(parts) == 1:
            return parts[0]
        rows = list(itertools.chain.from_iterable(p.rows for p in parts))
        first, last = parts[0].numbers, parts[-1].numbers
        span = range(first[0], last[-1] + 1)
        if len(rows) == len(span) and all(isinstance(p.numbers, range) for p in parts):
            return _Block(span, rows)  # no row dropped between them
        numbers = list(itertools.chain.from_iterable(p.numbers for p in parts))
        return _Block(numbers, rows)

    def line_numbers(self) -> pa.Array:
        numbers = self.numbers
        if isinstance(numbers, range):
            return pa.array(np.arange(numbers.start, numbers.stop, dtype=np.int64))
        return pa.array(numbers, pa.int64())


class _Converted(NamedTuple):
    """A sheet's sampled rows as columns, and those Arrow converted while inferring their
    types: the first batch uses them instead of doing it again."""

    block: _Block
    columns: list[tuple[Any, ...]]
    arrays: dict[str, pa.Array]


class _Sheet:
    """Rows of one sheet with their 1-based sheet row numbers, range and title rows applied.

    Rows travel in blocks (lists of calamine's row lists) rather than one by one: the Python
    work per row is then a few C-level list operations, which keeps the reader close to
    calamine's own speed.
    """

    def __init__(self, sheet: Any, options: SourceOptions, file: str) -> None:
        self.name: str = sheet.name
        self.file = file
        self.start_col = (sheet.start or (0, 0))[1]
        top, left, bottom, right = (
            # Without a range the table starts at the first used column, as Excel shows it.
            parse_range(options.cell_range)
            if options.cell_range
            else (1, self.start_col, None, None)
        )
        self.left, self.right, self.bottom = left, right, bottom
        self.first_row = top + options.skip_rows
        self._sheet = sheet
        self.saw_blank = False
        """Whether a blank cell was read: error cells read as blanks, so only then look for them."""
        self.header: list[str] = []
        self.header_row = 0
        self.width = 0
        self._blocks = self._row_blocks()
        self._pending: list[_Block] = []
        """Rows taken but not used yet, the next ones last (a stack)."""
        self.first: _Converted | None = None
        """The sample as converted while planning, until the first batch uses it."""
        first = self.take(1)
        if not first.rows:
            return
        number, values = first.numbers[0], first.rows[0]
        if options.header:
            texts = [_text(v) for v in values]
            while texts and texts[-1] == "":  # trailing blank header cells: not columns
                texts.pop()
            self.header = schemas.unique_names(texts)
            self.header_row = number
        else:
            self.header = [f"f{i}" for i in range(len(values))]
            self.header_row = number - 1
            self._pending.append(first)
        self.width = len(self.header)
        limit_columns = getattr(sheet, "limit_columns", None)  # a streamed sheet's
        if limit_columns is not None:
            limit_columns(self.left + self.width)

    @property
    def batch_rows(self) -> int:
        """Rows per batch (and in the sample the types are inferred from)."""
        if not self.width:
            return _HEADER_ROWS
        return rows_per_batch(self.width)

    def _row_blocks(self) -> Iterator[_Block]:
        """Blocks of non-empty rows in the range."""
        # python-calamine's iter_rows yields every row from the sheet's row 1 (leading empty
        # rows included), each row's cells from the first used column: row numbers are
        # absolute, column positions are relative to ``start``.
        start_col = self.start_col
        trim = self.left != start_col or self.right is not None
        skip = max(0, self.first_row - 1)  # rows before the first one wanted
        stop = None if self.bottom is None else max(skip, self.bottom)
        source = itertools.islice(self._sheet.iter_rows(), skip, stop)
        number = 1 + skip
        right = None if self.right is None else self.right + 1
        while block := list(itertools.islice(source, self.batch_rows)):
            if trim:
                pad = [""] * start_col
                block = [(pad + values)[self.left : right] for values in block]
            numbers = range(number, number + len(block))
            number += len(block)
            if _has_blank_row(block):
                self.saw_blank = True
                kept = [i for i, cells in enumerate(block) if cells.count("") != len(cells)]
                yield _Block([numbers[i] for i in kept], [block[i] for i in kept])
            else:
                yield _Block(numbers, block)

    def take(self, wanted: int) -> _Block:
        """The next ``wanted`` data rows (fewer at the end of the sheet)."""
        parts: list[_Block] = []
        count = 0
        while count < wanted:
            block = self._pending.pop() if self._pending else next(self._blocks, None)
            if block is None:
                break
            if not block.rows:  # a block of blank rows only
                continue
            if count + len(block.rows) > wanted:
                block, rest = block.split(wanted - count)
                self._pending.append(rest)
            parts.append(block)
            count += len(block.rows)
        return _Block.join(parts) if parts else _Block(range(0), [])

    def sample(self) -> _Block:
        """The first data rows, put back to be the first rows streamed."""
        sample = self.take(self.batch_rows)
        self._pending.append(sample)
        return sample

    def columns(self, rows: list[list[Any]]) -> list[tuple[Any, ...]]:
        """The rows' cells as columns (in C, via zip): short rows padded with empty cells,
        cells past the header cut."""
        width = self.width
        if set(map(len, rows)) != {width}:
            rows = [(row + [""] * (width - len(row)))[:width] for row in rows]
        return list(zip(*rows, strict=True)) or [() for _ in range(width)]


def _has_blank_row(block: list[list[Any]]) -> bool:
    """Whether a row of ``block`` has only empty cells.

    calamine gives every row the sheet's width, so the usual test is one list comparison per
    row, which stops at the first cell (a filled first cell settles it).
    """
    widths = set(map(len, block))
    if len(widths) == 1:
        return [""] * widths.pop() in block
    counts = map(list.count, block, itertools.repeat(""))
    return any(map(operator.eq, counts, map(len, block)))


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


_ONE_KIND: dict[type, pa.DataType] = {
    str: pa.string(),
    bool: pa.bool_(),
    dt.datetime: pa.timestamp("us"),
    dt.date: pa.date32(),
}


def _infer_in_arrow(column: tuple[Any, ...], kinds: set[type]) -> pa.Array | None:
    """A sampled column whose cells are all numbers or all of one other kind, converted to its
    type by one Arrow call (kept: it is also the first batch's column); None for anything
    mixed or blank, which the Python rules decide."""
    try:
        if kinds <= {int, float}:
            if float in kinds:
                array = pa.array(column, pa.float64())
                whole = pc.equal(pc.floor(array), array)
                small = pc.less(pc.abs(array), float(MAX_SAFE_INT))
                if pc.all(pc.and_(whole, small)).as_py():
                    return pc.cast(array, pa.int64())
                return array
            array = pa.array(column, pa.int64())
            # Cells beyond 2**53 were floats in the sheet (calamine gives whole floats as ints).
            if pc.all(pc.less(pc.abs(array), MAX_SAFE_INT)).as_py():
                return array
            return pc.cast(array, pa.float64())
        kind = _ONE_KIND.get(next(iter(kinds))) if len(kinds) == 1 else None
        if kind is None:
            return None
        array = pa.array(column, kind)
    except _CONVERSION_ERRORS:
        return None
    if kind == pa.string() and pc.any(pc.equal(array, "")).as_py():
        return None  # blanks among texts: the null-like rules decide
    return array


def _infer_sample(column: tuple[Any, ...], nulls: set[str]) -> tuple[pa.DataType, pa.Array | None]:
    """The narrowest type of a sampled column (null-like strings ignored), and the column
    converted when one Arrow call could do it."""
    kinds = set(map(type, column))
    # Null-like texts only matter among other kinds: a column of texts only is text.
    fast = _infer_in_arrow(column, kinds) if kinds else None
    if fast is not None:
        return fast.type, fast
    has_text = str in kinds
    if has_text:
        distinct = set(column)
        texts = distinct if kinds == {str} else {v for v in distinct if v.__class__ is str}
        if texts - nulls:
            return pa.string(), None
        kinds.discard(str)
    if not kinds:
        return pa.string(), None
    if kinds <= {float, int}:
        numbers = [v for v in column if v.__class__ is not str] if has_text else column
        try:
            floats = np.asarray(numbers, dtype=np.float64)
        except OverflowError:  # an int beyond float range
            return pa.float64(), None
        whole = bool(np.all(np.mod(floats, 1) == 0) and np.all(np.abs(floats) < MAX_SAFE_INT))
        return (pa.int64() if whole else pa.float64()), None
    if kinds == {bool}:
        return pa.bool_(), None
    if kinds == {dt.date}:
        return pa.date32(), None
    if kinds <= {dt.date, dt.datetime}:
        return pa.timestamp("us"), None
    return pa.string(), None


def decode_in_memory(
    path: Path, options: SourceOptions, limits: ReadLimits, columnar: bool = True
) -> BatchIterator:
    """The workbook's batches, every sheet read decoded by calamine in memory (in the decoder
    child: see :mod:`.isolated`); an xls by :mod:`.excel_columnar` where it gives this result."""
    file = str(path)
    sheet = excel_columnar.read(path, options) if columnar else None
    if sheet is not None:
        for batch in sheet.batches:
            yield from rebatch(batch, limits.batch_bytes)
        _warn(path, [sheet], sheet.saw_blank, sheet.error_texts)
        return
    try:
        workbook = calamine.CalamineWorkbook.from_path(file)
    except calamine.PasswordError:
        raise BadInput("the workbook is password-protected", file=file) from None
    except Exception as exc:  # calamine raises several unrelated types for corrupt files
        if _encrypted(path):
            raise BadInput("the workbook is password-protected", file=file) from None
        raise BadInput(f"not a readable Excel workbook: {exc}", file=file) from None
    yield from ExcelReader()._stream(workbook, options, limits, file)


def _decoded(sheet_bytes: int, limits: ReadLimits) -> bool:
    """Whether a workbook whose biggest sheet has ``sheet_bytes`` of XML (0: not an xlsx) is
    decoded in memory rather than streamed."""
    return sheet_bytes <= limits.excel_in_memory_bytes


class ExcelReader:
    def decodes_in_memory(self, path: Path, limits: ReadLimits) -> bool:
        """Whether calamine decodes the workbook (else it is streamed): an xls or ods always,
        an xlsx/xlsm whose biggest sheet has at most ``excel_in_memory_bytes`` of XML."""
        return _decoded(largest_sheet_bytes(path), limits)

    def read(self, path: Path, options: SourceOptions, limits: ReadLimits) -> BatchIterator:
        sheet_bytes = largest_sheet_bytes(path)
        if not _decoded(sheet_bytes, limits):
            log.info(
                "%s has a sheet over %d bytes of XML: streaming it row by row",
                path.name,
                limits.excel_in_memory_bytes,
            )
            return self._streamed(path, options, limits)
        return self._in_child(path, options, limits, can_stream=sheet_bytes > 0)

    def _in_child(
        self,
        path: Path,
        options: SourceOptions,
        limits: ReadLimits,
        *,
        can_stream: bool,
        columnar: bool = True,
    ) -> BatchIterator:
        """calamine's decode in a child process with a memory cap; an xlsx whose grid does not
        fit is streamed instead, any other workbook fails with its size named."""
        file = str(path)
        batches = read_in_child(
            decode_in_memory,
            (path, options, limits, columnar),
            memory_bytes=limits.excel_decode_memory_bytes,
            file=file,
        )
        sent = False
        try:
            for batch in batches:
                sent = True
                yield batch
        except OutOfMemory:
            if columnar and not sent and excel_columnar.eligible(path, options):
                # fastexcel copies the decoded sheet to convert it: the row path needs less.
                yield from self._in_child(path, options, limits, can_stream=False, columnar=False)
                return
            mib = limits.excel_decode_memory_bytes // 2**20
            if can_stream and not sent:
                log.warning(
                    "%s needs more than %d MiB to decode in memory (a sheet's used range is far "
                    "larger than its data): streaming it row by row",
                    path.name,
                    mib,
                )
                decode_done()  # streaming needs no decode memory: another workbook may have it
                yield from self._streamed(path, options, limits)
                return
            raise BadInput(
                f"the workbook needs more than {mib} MiB to decode: calamine holds every cell "
                "of a sheet's used range (from its first used cell to its last) in memory. "
                "Raise SLUICE_LIMITS__EXCEL_DECODE_MEMORY_BYTES and the pod's memory limit "
                "(a decode gets the setting or what the limit leaves beside the service, "
                "whichever is less), or save it as xlsx or csv",
                file=file,
            ) from None

    def _streamed(self, path: Path, options: SourceOptions, limits: ReadLimits) -> BatchIterator:
        file = str(path)
        try:
            workbook = StreamedWorkbook(path)
        except Exception as exc:  # openpyxl raises many unrelated types for corrupt files
            raise BadInput(f"not a readable Excel workbook: {exc}", file=file) from None
        try:
            yield from self._stream(workbook, options, limits, file)
        except SheetXmlError as exc:
            raise BadInput(f"not a readable Excel workbook: {exc}", file=file) from None
        finally:
            workbook.close()

    def _sheets(self, workbook: Any, options: SourceOptions, file: str) -> list[Any]:
        names: list[str] = workbook.sheet_names
        wanted = options.sheet
        try:
            if wanted == "*":
                return [workbook.get_sheet_by_name(n) for n in names]
            if wanted is None:
                return [workbook.get_sheet_by_index(0)]
            if isinstance(wanted, int):
                return [workbook.get_sheet_by_index(wanted)]
            return [workbook.get_sheet_by_name(wanted)]
        except (IndexError, calamine.CalamineError) as exc:
            if isinstance(exc, calamine.PasswordError):
                raise BadInput("the workbook is password-protected", file=file) from None
            raise BadInput(
                f"no sheet {wanted!r}; the workbook has {', '.join(map(repr, names))}",
                file=file,
            ) from None

    def _stream(
        self, workbook: Any, options: SourceOptions, limits: ReadLimits, file: str
    ) -> Iterator[pa.RecordBatch]:
        all_sheets = options.sheet == "*"
        sheets: list[_Sheet] = []
        schema: pa.Schema | None = None
        current = errors = rows = 0
        while True:
            # Each batch is built with collection paused and its rows freed before it resumes:
            # alive, they would all be walked by the collection that resuming sets off. The
            # plan is made in the first batch's pause, so the sampled rows die there too.
            with gc_paused():
                if schema is None:
                    found = self._sheets(workbook, options, file)
                    sheets = [s for s in (_Sheet(s, options, file) for s in found) if s.width]
                    if not sheets:
                        return
                    schema = self._plan(sheets, options)
                    if all_sheets:
                        schema = schema.append(pa.field(options.sheet_column, pa.string()))
                batch = None
                while current < len(sheets) and (
                    options.max_rows is None or rows < options.max_rows
                ):
                    sheet = sheets[current]
                    wanted = sheet.batch_rows
                    if options.max_rows is not None:
                        wanted = min(wanted, options.max_rows - rows)
                    block = sheet.take(wanted)
                    if block.rows:
                        batch, bad = self._batch(block, sheet, schema, options, all_sheets)
                        del block
                        break
                    current += 1
            if batch is None:
                break
            errors += bad
            rows += batch.num_rows
            yield from rebatch(batch, limits.batch_bytes)
        _warn(Path(file), sheets, any(s.saw_blank for s in sheets), errors)

    def _plan(self, sheets: list[_Sheet], options: SourceOptions) -> pa.Schema:
        per_sheet = {}
        nulls = set(schemas.null_values(options)) | ERROR_TEXTS | {""}
        for sheet in sheets:
            fields = []
            sample = sheet.sample()
            columns = sheet.columns(sample.rows)
            converted = {}
            for name, column in zip(sheet.header, columns, strict=True):
                kind = schemas.declared_type(name, options)
                if kind is None:
                    kind, array = _infer_sample(column, nulls)
                    if array is not None:
                        converted[name] = array
                fields.append(pa.field(name, kind))
            sheet.first = _Converted(sample, columns, converted)
            per_sheet[sheet.name] = pa.schema(fields)
        merged = schemas.unify(per_sheet)
        return merged.append(pa.field(lineage.LINE, pa.int64()))

    def _batch(
        self,
        block: _Block,
        sheet: _Sheet,
        schema: pa.Schema,
        options: SourceOptions,
        all_sheets: bool,
    ) -> tuple[pa.RecordBatch, int]:
        nulls = set(schemas.null_values(options))
        positions = {name: i for i, name in enumerate(sheet.header)}
        first, sheet.first = sheet.first, None
        if first is not None and first.block is block:  # the sample: converted while planning
            columns, converted = first.columns, first.arrays
        else:
            columns, converted = sheet.columns(block.rows), {}  # then one Arrow call a column
        numbers = block.numbers
        arrays = []
        errors = 0
        for field in schema:
            if field.name == lineage.LINE:
                arrays.append(block.line_numbers())
                continue
            if all_sheets and field.name == options.sheet_column:
                arrays.append(pa.array([sheet.name] * len(numbers), pa.string()))
                continue
            index = positions.get(field.name)
            column = columns[index] if index is not None and index < len(columns) else ()
            ready = converted.get(field.name)
            if ready is None or ready.type != field.type:  # another sheet may have widened it
                fast, blank, bad_cells = _fast_column(column, field.type, nulls, len(numbers))
            elif field.type == pa.string():
                fast, blank, bad_cells = checked_text(ready, nulls)
            else:
                fast, blank, bad_cells = ready, False, 0
            errors += bad_cells
            if fast is None:
                blank = "" in column
                fast = _slow_column(column, field, sheet, numbers, (index or 0) + sheet.left, nulls)
            sheet.saw_blank = sheet.saw_blank or blank
            arrays.append(fast)
        return pa.RecordBatch.from_arrays(arrays, schema=schema), errors


class _Span(Protocol):
    """Where a sheet's cells were read: for the error-cell warning."""

    name: str
    header_row: int
    bottom: int | None
    left: int
    width: int


def _warn(path: Path, sheets: Sequence[_Span], saw_blank: bool, error_texts: int) -> None:
    """Warn of the error cells read as null: found in the file when a blank cell was read
    (calamine reads error cells as blanks), else the error texts typed as text, if any."""
    scanned = saw_blank and _warn_error_cells(path, sheets)
    if not scanned and error_texts:
        log.warning("%d error cells (#DIV/0!, #N/A, ...) read as null in %s", error_texts, path)


def _warn_error_cells(path: Path, sheets: Sequence[_Span]) -> bool:
    """Log the error cells of the cells read, per sheet; whether there were any."""
    by_name = {sheet.name: sheet for sheet in sheets}

    def wanted(name: str, row: int, col: int) -> bool:
        sheet = by_name.get(name)
        return (
            sheet is not None
            and row > sheet.header_row
            and (sheet.bottom is None or row <= sheet.bottom)
            and sheet.left <= col < sheet.left + sheet.width
        )

    found = find_error_cells(path, wanted)
    for name, errors in found.items():
        more = ", ..." if errors.count > len(errors.cells) else ""
        log.warning(
            "%d error cells (#DIV/0!, #N/A, ...) read as null in %s, sheet %r: %s%s",
            errors.count,
            path.name,
            name,
            ", ".join(errors.cells),
            more,
            extra={"sluice.cells.errors": errors.count, "sluice.sheet": name},
        )
    return bool(found)


_ENCRYPTED_STREAM = "EncryptedPackage".encode("utf-16-le")


def _encrypted(path: Path) -> bool:
    """An Office file saved with a password: an OLE2 container holding ``EncryptedPackage``."""
    start = head(path, 4 * 1024 * 1024)
    return start.startswith(OLE2_MAGIC) and _ENCRYPTED_STREAM in start


_FAST_KINDS: dict[pa.DataType, set[type]] = {
    pa.int64(): {int, float},
    pa.float64(): {int, float},
    pa.bool_(): {bool},
    pa.timestamp("us"): {dt.datetime},
    pa.date32(): {dt.date},
}
"""The Python types Arrow converts to each column type exactly as :func:`_coerce` would. Not
bool among numbers (Arrow reads TRUE as 1), nor a datetime in a date column (Arrow would cut
off its time of day): those take the careful path, which refuses them with the cell."""


def _fast_column(
    column: tuple[Any, ...], kind: pa.DataType, nulls: set[str], rows: int
) -> tuple[pa.Array | None, bool, int]:
    """The column converted by Arrow in one call, whether it held blank cells, and how many
    error texts (``#N/A`` typed as text) it held; None when a cell needs the careful path."""
    if not column:
        return pa.nulls(rows, kind), False, 0
    if kind == pa.string():
        return _fast_text(column, nulls)
    allowed = _FAST_KINDS.get(kind)
    if allowed is None:
        return None, "" in column, 0
    values: Sequence[Any] = column
    kinds = set(map(type, column))
    blank = str in kinds
    if blank:  # blank cells are "" to calamine: nulls, unless other texts are there too
        values = [None if v == "" else v for v in column]
        kinds = set(map(type, values))
        kinds.discard(type(None))
    if not kinds <= allowed:
        return None, blank, 0
    try:
        if kind == pa.int64() and float in kinds:  # safe cast: whole numbers only
            return pc.cast(pa.array(values, pa.float64()), kind), blank, 0
        return pa.array(values, kind), blank, 0
    except _CONVERSION_ERRORS:
        return None, blank, 0


def _fast_text(column: tuple[Any, ...], nulls: set[str]) -> tuple[pa.Array | None, bool, int]:
    """A text column: blank cells become nulls; error texts and null markers take the careful
    path (which turns them into nulls too), counted for the warning."""
    try:
        array = pa.array(column, pa.string())
    except _CONVERSION_ERRORS:
        return None, False, 0  # numbers or dates among the texts
    return checked_text(array, nulls)


def _slow_column(
    column: tuple[Any, ...], field: pa.Field, sheet: _Sheet, numbers: Sequence[int], col: int,
    nulls: set[str],
) -> pa.Array:  # fmt: skip
    values = [
        _coerce(_clean(raw, nulls), field, sheet, number, col)
        for raw, number in zip(column or [""] * len(numbers), numbers, strict=True)
    ]
    try:
        return pa.array(values, field.type)
    except (pa.ArrowInvalid, OverflowError) as exc:
        raise BadInput(
            f"sheet {sheet.name!r} column {column_letters(col)}: {exc}; declare the column in "
            "source.options.column_types (e.g. string)",
            file=sheet.file,
            column=field.name,
        ) from None


def _clean(value: Any, nulls: set[str]) -> Any:
    if isinstance(value, str):
        # A blank cell is null whatever the null markers are, as on the fast path.
        if value == "" or value in ERROR_TEXTS or value.strip() in nulls:
            return None
        return value
    return value


def _coerce(value: Any, field: pa.Field, sheet: _Sheet, row: int, col: int) -> Any:
    if value is None:
        return None
    kind = field.type
    if kind == pa.string():
        return _text(value)
    try:
        if kind == pa.int64():
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            return int(str(value).strip())
        if kind == pa.float64():
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
            return float(str(value).strip())
        if kind == pa.bool_():
            if isinstance(value, bool):
                return value
            return {"true": True, "false": False}[str(value).strip().lower()]
        if kind == pa.date32():
            if isinstance(value, dt.datetime):
                if value.time() == dt.time():
                    return value.date()
                raise ValueError
            if isinstance(value, dt.date):
                return value
            return dt.date.fromisoformat(str(value).strip())
        if kind == pa.timestamp("us"):
            if isinstance(value, dt.datetime):
                return value
            if isinstance(value, dt.date):
                return dt.datetime.combine(value, dt.time())
            return dt.datetime.fromisoformat(str(value).strip())
    except (ValueError, KeyError):
        pass
    cell = f"{column_letters(col)}{row}"
    raise BadInput(
        f"sheet {sheet.name!r} cell {cell}: value {value!r} is not {kind} like the rows before "
        "it; declare the column in source.options.column_types (e.g. string) or fix the sheet",
        file=sheet.file,
        line=row,
        column=field.name,
    )
