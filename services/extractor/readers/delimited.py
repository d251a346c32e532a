"""Delimited text (csv, tsv, psv, ``;``-separated txt) with pyarrow's streaming reader.

pyarrow tokenizes block by block, so memory stays bounded by the block size whatever the file
size. Every field is read as a string and converted to the unit's one schema by
:mod:`.schema`, which also lets each row carry its exact physical line in ``_sluice_line``:
a record spans one line plus the newlines quoted inside its fields.

pyarrow's parse errors carry no line numbers, so on failure the file is re-scanned with the
standard ``csv`` module to name the exact line; that cost is only paid on the error path.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

# pyarrow imports pandas the first time a Python list becomes an array (the schema planner
# does): importing it with the service keeps those ~0.2 s off the first unit's critical path.
import pandas  # noqa: F401
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from services.common import lineage
from services.common.errors import BadInput
from services.common.spec.source import SourceOptions
from services.extractor.metrics import count_skipped_rows
from services.extractor.readers import schema as schemas
from services.extractor.readers.bad_rows import BadRows, ragged_reason
from services.extractor.readers.base import BatchIterator, ReadLimits, rebatch
from services.extractor.readers.blank_lines import find_blank_lines
from services.extractor.readers.text import (
    LINE_BREAK,
    SAMPLE_BYTES,
    csv_records,
    detect_encoding,
    open_text,
    pyarrow_encoding,
    sample_text,
    undecodable,
)

log = logging.getLogger(__name__)
_SNIFF_DELIMITERS = ",;\t|"
PLAN_SAMPLE_BYTES = 1024 * 1024
"""Bytes of the file's start its column types are planned from (widened by the first block)."""


def sniff_delimiter(sample: str, quotechar: str) -> str:
    """The delimiter of a text sample: the candidate splitting the first lines most evenly."""
    lines = [line for line in LINE_BREAK.split(sample)[:50] if line.strip()]
    if len(lines) > 1:
        lines = lines[:-1]  # the last sampled line may be cut short
    best, best_score = ",", 0.0
    for candidate in _SNIFF_DELIMITERS:
        counts = [len(row) - 1 for row in csv.reader(lines, delimiter=candidate)]
        if not counts or max(counts) == 0:
            continue
        # The most frequent count across lines; consistency beats raw frequency.
        mode = max(set(counts), key=counts.count)
        score = counts.count(mode) / len(counts) * (1 + min(mode, 20) / 100)
        if mode > 0 and score > best_score:
            best, best_score = candidate, score
    return best


class DelimitedReader:
    """csv / tsv / psv / delimited txt; ``default_delimiter`` None means sniff."""

    def __init__(self, default_delimiter: str | None) -> None:
        self.default_delimiter = default_delimiter

    def read(self, path: Path, options: SourceOptions, limits: ReadLimits) -> BatchIterator:
        if path.stat().st_size == 0:
            return iter(())
        encoding = detect_encoding(path, options)
        sample = sample_text(path, encoding)
        lines = LINE_BREAK.split(sample)[options.skip_rows :]
        # pyarrow's skip_rows counts empty lines, after them it drops them: the header is the
        # first line with text, and the empty lines before it are skipped as title lines.
        empty = next((i for i, line in enumerate(lines) if line), len(lines))
        body = "\n".join(lines[empty:])
        delimiter = (
            options.delimiter or self.default_delimiter or sniff_delimiter(body, options.quotechar)
        )
        first = next(csv.reader(io.StringIO(body), delimiter=delimiter), None)
        if first is None:
            return iter(())
        names = (
            schemas.unique_names(first) if options.header else [f"f{i}" for i in range(len(first))]
        )
        whole_file = path.stat().st_size <= SAMPLE_BYTES
        if whole_file and options.header and not any(s.strip() for s in lines[empty + 1 :]):
            return iter(())  # header only (pyarrow refuses a header without a newline)
        title_lines = options.skip_rows + empty
        return self._stream(path, encoding, delimiter, names, title_lines, options, limits)

    def _stream(
        self,
        path: Path,
        encoding: str,
        delimiter: str,
        names: list[str],
        title_lines: int,
        options: SourceOptions,
        limits: ReadLimits,
    ) -> Iterator[pa.RecordBatch]:
        header_lines = title_lines + (1 if options.header else 0)
        blank_lines = find_blank_lines(path, encoding, delimiter, options.quotechar, header_lines)
        bad = BadRows(options.on_bad_row, header_lines + 1, blank_lines)

        def open_reader(
            types: dict[str, pa.DataType],
        ) -> tuple[pacsv.CSVStreamingReader, BadRows]:
            # A fresh collector per pass: a pass that is abandoned for another must not leave
            # its ragged rows behind twice.
            nonlocal bad
            bad = BadRows(options.on_bad_row, header_lines + 1, blank_lines)
            reader = pacsv.open_csv(
                path,
                read_options=pacsv.ReadOptions(
                    block_size=limits.block_bytes,
                    skip_rows=header_lines,
                    column_names=names,
                    encoding=pyarrow_encoding(encoding),
                    use_threads=not bad.needs_record_numbers,
                ),
                parse_options=_parse_options(delimiter, options, bad.on_invalid),
                convert_options=_convert_options(types, options),
            )
            return reader, bad

        file = str(path)
        strings = {name: pa.string() for name in names}
        try:
            schema = self._plan(path, encoding, delimiter, names, header_lines, options)
            if schema is None:
                return
            native = schemas.native_types(schema, options)
            if native is not None:
                # pyarrow converts the planned types itself (in parallel, no extra pass): the
                # fast path. If the first block still does not fit (e.g. padded numbers),
                # nothing has been emitted yet, so fall back to strings plus our converter.
                line_field = schema.field(lineage.LINE)

                def with_lines(raw: pa.RecordBatch, lines: pa.Array, _rows: int) -> pa.RecordBatch:
                    return raw.append_column(line_field, lines)

                emitted = False
                try:
                    for batch in self._batches(
                        *open_reader(native), header_lines, options, limits, with_lines
                    ):
                        emitted = True
                        yield batch
                    return
                except pa.ArrowInvalid as exc:
                    if emitted or "conversion error" not in str(exc):
                        raise
            plan = schema

            def converted(raw: pa.RecordBatch, lines: pa.Array, rows: int) -> pa.RecordBatch:
                nonlocal plan
                try:
                    return schemas.convert(raw, plan, lines, options, file=file)
                except BadInput:
                    if rows:
                        raise
                    # Still the first batch, nothing emitted: widen the plan to all of it.
                    plan, batch = schemas.plan_and_convert(raw, lines, options, file=file)
                    return batch

            yield from self._batches(
                *open_reader(strings), header_lines, options, limits, converted
            )
        except pa.ArrowInvalid as exc:
            if "Empty CSV file" in str(exc):
                return
            raise self._explain(path, exc, encoding, delimiter, options, limits) from None
        except UnicodeDecodeError as exc:
            raise undecodable(path, encoding, exc) from None
        finally:
            _report_bad_rows(bad, path)

    def _plan(
        self,
        path: Path,
        encoding: str,
        delimiter: str,
        names: list[str],
        header_lines: int,
        options: SourceOptions,
    ) -> pa.Schema | None:
        """The unit's schema from a sample of the file's start (None: no data rows).

        The sample is parsed on its own, so the streaming reader is opened once and its
        read-ahead buffers are not held twice.
        """
        text = sample_text(path, encoding, PLAN_SAMPLE_BYTES)
        end = max(text.rfind("\n"), text.rfind("\r"))  # a lone CR ends a line too
        if path.stat().st_size > PLAN_SAMPLE_BYTES and end >= 0:
            text = text[: end + 1]  # whole lines only
        try:
            table = pacsv.read_csv(
                io.BytesIO(text.encode("utf-8")),
                read_options=pacsv.ReadOptions(skip_rows=header_lines, column_names=names),
                parse_options=_parse_options(delimiter, options, lambda row: "skip"),
                convert_options=_convert_options({name: pa.string() for name in names}, options),
            )
        except pa.ArrowInvalid as exc:
            if "Empty CSV file" in str(exc):
                return None
            # A sample cut inside a quoted field: plan from the names only; the first batch
            # widens the plan before anything is emitted.
            table = pa.table({name: pa.array([], pa.string()) for name in names})
        batch = pa.RecordBatch.from_arrays(
            [table.column(n).combine_chunks() for n in names], names=names
        )
        if batch.num_rows == 0 and path.stat().st_size <= PLAN_SAMPLE_BYTES:
            return None
        return schemas.plan_schema(batch, options)

    def _batches(
        self,
        reader: pacsv.CSVStreamingReader,
        bad: BadRows,
        header_lines: int,
        options: SourceOptions,
        limits: ReadLimits,
        to_batch: Callable[[pa.RecordBatch, pa.Array, int], pa.RecordBatch],
    ) -> Iterator[pa.RecordBatch]:
        """The unit's batches: ``to_batch(block, lines, rows so far)`` types each block read
        and adds its lines; the rows set aside so far follow each batch."""
        next_line = header_lines + 1
        rows = 0
        for raw in reader:
            if raw.num_rows == 0:
                continue
            if options.max_rows is not None and rows + raw.num_rows > options.max_rows:
                raw = raw.slice(0, options.max_rows - rows)
            lines, next_line = _line_numbers(raw, next_line, bad)
            batch = to_batch(raw, lines, rows)
            rows += batch.num_rows
            yield from rebatch(batch, limits.batch_bytes)
            yield from _rejected(bad, next_line)
            if options.max_rows is not None and rows >= options.max_rows:
                return
        yield from _rejected(bad, next_line, final=True)

    def _explain(
        self,
        path: Path,
        exc: pa.ArrowInvalid,
        encoding: str,
        delimiter: str,
        options: SourceOptions,
        limits: ReadLimits,
    ) -> BadInput:
        text = str(exc)
        conversion = re.search(
            r"column #(\d+): CSV conversion error to ([^:]+): invalid value '(.*)'", text
        )
        if conversion:
            index, type_name, value = conversion.groups()
            line, column = _find_value(path, encoding, delimiter, options, int(index), value)
            return BadInput(
                f"value {value!r} is not {type_name} (inferred from the rows before it); declare "
                f"the column in source.options.column_types (e.g. {column}: string), add the "
                "value to null_values, or fix the file",
                file=str(path),
                line=line,
                column=column,
            )
        if "straddling" in text or "block size" in text:
            line = _find_long_line(path, encoding, limits.block_bytes)
            return BadInput(
                f"a record is longer than the limit of {limits.block_bytes} bytes "
                "(SLUICE_LIMITS__MAX_LINE_BYTES); is the quoting or delimiter right?",
                file=str(path),
                line=line,
            )
        line, problem = _find_ragged_line(path, encoding, delimiter, options)
        if line is not None:
            return BadInput(
                f"{problem}; fix the file or set source.options.on_bad_row: skip or quarantine",
                file=str(path),
                line=line,
            )
        return BadInput(f"cannot parse as delimited text: {text}", file=str(path))


def _parse_options(
    delimiter: str, options: SourceOptions, on_invalid: Callable[[pacsv.InvalidRow], str]
) -> pacsv.ParseOptions:
    return pacsv.ParseOptions(
        delimiter=delimiter,
        quote_char=options.quotechar,
        newlines_in_values=True,
        invalid_row_handler=on_invalid,
    )


def _convert_options(types: dict[str, pa.DataType], options: SourceOptions) -> pacsv.ConvertOptions:
    """Null markers as the unit's options say; an empty quoted field stays an empty string."""
    return pacsv.ConvertOptions(
        column_types=types,
        null_values=schemas.null_values(options),
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        true_values=["true", "True", "TRUE"],
        false_values=["false", "False", "FALSE"],
    )


def _rejected(bad: BadRows, next_line: int, *, final: bool = False) -> Iterator[pa.RecordBatch]:
    rejected = bad.take_rejected(next_line, final=final)
    if rejected is not None:
        yield rejected


def _report_bad_rows(bad: BadRows, path: Path) -> None:
    if not bad.count:
        return
    if bad.mode == "skip":
        count_skipped_rows(bad.count)
    done = "quarantined" if bad.mode == "quarantine" else "skipped"
    log.warning(
        "%s %d ragged rows in %s (on_bad_row: %s); first: %r",
        done,
        bad.count,
        path.name,
        bad.mode,
        bad.first_text,
        extra={f"sluice.rows.{done}": bad.count},
    )


def _line_numbers(raw: pa.RecordBatch, first_line: int, bad: BadRows) -> tuple[pa.Array, int]:
    """Physical line of each record and the line after the batch (quoted newlines counted,
    ragged rows set aside before or inside the batch too)."""
    spans = np.ones(raw.num_rows, dtype=np.int64)
    for column in raw.columns:
        if not pa.types.is_string(column.type):
            continue  # numbers, dates and booleans never hold a quoted line break
        if not _has_newline(column):
            continue  # the usual case, found with one byte search instead of one per value
        counts = pc.count_substring_regex(column, LINE_BREAK.pattern)
        spans += counts.fill_null(0).to_numpy(zero_copy_only=False)
    starts, next_line = bad.line_numbers(spans, first_line)
    return pa.array(starts, pa.int64()), next_line


def _has_newline(column: pa.Array) -> bool:
    """Whether a string column's values hold a line break: a search of the bytes its values
    occupy in the data buffer (a slice's neighbours left out)."""
    if len(column) == 0:
        return False
    offsets, data = column.buffers()[1], column.buffers()[2]
    if offsets is None or data is None:
        return False
    first, last = np.frombuffer(
        offsets, dtype=np.int32, count=len(column) + 1, offset=column.offset * 4
    )[[0, -1]]
    values = memoryview(data)[int(first) : int(last)].tobytes()
    return b"\n" in values or b"\r" in values


def _find_long_line(path: Path, encoding: str, limit: int) -> int | None:
    with open_text(path, encoding) as handle:
        for number, line in enumerate(handle, start=1):
            if len(line) >= limit // 4:
                return number
    return None


def _filled_records(
    path: Path, encoding: str, delimiter: str, options: SourceOptions
) -> Iterator[tuple[int, list[str]]]:
    """The records after the title lines, as pyarrow sees them: empty lines left out."""
    records = csv_records(path, encoding, delimiter, options.quotechar, options.skip_rows)
    return ((start, row) for start, row in records if row)


def _find_ragged_line(
    path: Path, encoding: str, delimiter: str, options: SourceOptions
) -> tuple[int | None, str]:
    expected: int | None = None
    for start, row in _filled_records(path, encoding, delimiter, options):
        if expected is None:
            expected = len(row)
        elif len(row) != expected:
            return start, ragged_reason(expected, len(row))
    return None, ""


def _find_value(
    path: Path, encoding: str, delimiter: str, options: SourceOptions, index: int, value: str
) -> tuple[int | None, str | None]:
    """Line and column name of the first record whose field ``index`` is ``value``."""
    records = _filled_records(path, encoding, delimiter, options)
    header = next(records, (0, []))[1] if options.header else None
    names = schemas.unique_names(header) if header else []
    column = names[index] if index < len(names) else f"f{index}"
    for start, row in records:
        if index < len(row) and row[index] == value:
            return start, column
    return None, column
