"""Delimited text (csv, tsv, psv, txt) with pyarrow's streaming reader.

pyarrow reads block by block, so memory stays bounded by the block size whatever the file size.
Its parse errors do not carry line numbers, so on failure the file is re-scanned with the
standard ``csv`` module to name the exact line; that cost is only paid on the error path.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from services.common.errors import BadInput
from services.common.spec.model import SourceOptions
from services.extractor.readers.base import BatchIterator

_ENCODINGS = {"auto": "utf8", "utf-8": "utf8", "utf8": "utf8"}


class DelimitedReader:
    def __init__(self, default_delimiter: str | None) -> None:
        self.default_delimiter = default_delimiter

    def _delimiter(self, path: Path, options: SourceOptions, encoding: str) -> str:
        if options.delimiter:
            return options.delimiter
        if self.default_delimiter:
            return self.default_delimiter
        with path.open("r", encoding="utf-8-sig", errors="replace") as handle:
            sample = handle.read(64 * 1024)
        try:
            return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
        except csv.Error:
            return ","

    def read(self, path: Path, options: SourceOptions, batch_bytes: int) -> BatchIterator:
        encoding = _ENCODINGS.get(options.encoding.lower(), options.encoding)
        delimiter = self._delimiter(path, options, encoding)
        if path.stat().st_size == 0:
            return iter(())
        read_options = pacsv.ReadOptions(
            block_size=batch_bytes,
            skip_rows=options.skip_rows,
            autogenerate_column_names=not options.header,
            encoding=encoding,
            use_threads=True,
        )
        parse_options = pacsv.ParseOptions(
            delimiter=delimiter, quote_char=options.quotechar, newlines_in_values=True
        )
        convert_options = pacsv.ConvertOptions(
            null_values=options.null_values if options.null_values is not None else None,
            strings_can_be_null=True,
            column_types=options.column_types or None,
        )
        return self._stream(path, read_options, parse_options, convert_options, delimiter, options)

    def _stream(
        self,
        path: Path,
        read_options: pacsv.ReadOptions,
        parse_options: pacsv.ParseOptions,
        convert_options: pacsv.ConvertOptions,
        delimiter: str,
        options: SourceOptions,
    ) -> Iterator[pa.RecordBatch]:
        try:
            reader = pacsv.open_csv(
                path,
                read_options=read_options,
                parse_options=parse_options,
                convert_options=convert_options,
            )
            yield from reader
        except pa.ArrowInvalid as exc:
            if "Empty CSV file" in str(exc):
                return
            raise self._explain(path, exc, delimiter, options) from None
        except UnicodeDecodeError as exc:
            raise BadInput(
                f"not valid {options.encoding} text ({exc.reason}); set source.options.encoding",
                file=str(path),
            ) from None

    def _explain(
        self, path: Path, exc: pa.ArrowInvalid, delimiter: str, options: SourceOptions
    ) -> BadInput:
        text = str(exc)
        conversion = re.search(
            r"column #(\d+): CSV conversion error to (\w+): invalid value '(.*)'", text
        )
        if conversion:
            col_index, type_name, value = conversion.groups()
            line, column = _find_value(path, delimiter, options, int(col_index), value)
            return BadInput(
                f"value {value!r} is not {type_name} like the rows before it; declare the "
                f"column's type in source.options.column_types (e.g. string) or cast it in a step",
                file=str(path),
                line=line,
                column=column,
            )
        line, problem = _find_ragged_line(path, delimiter, options)
        if line is not None:
            return BadInput(problem, file=str(path), line=line)
        return BadInput(f"cannot parse as delimited text: {text}", file=str(path))


def _open_text(path: Path, options: SourceOptions) -> io.TextIOWrapper:
    encoding = (
        "utf-8-sig" if options.encoding.lower() in ("auto", "utf-8", "utf8") else options.encoding
    )
    return open(path, encoding=encoding, errors="replace", newline="")


def _find_ragged_line(path: Path, delimiter: str, options: SourceOptions) -> tuple[int | None, str]:
    with _open_text(path, options) as handle:
        for _ in range(options.skip_rows):
            handle.readline()
        reader = csv.reader(handle, delimiter=delimiter, quotechar=options.quotechar)
        expected: int | None = None
        for row in reader:
            if expected is None:
                expected = len(row)
                continue
            if row and len(row) != expected:
                line = reader.line_num + options.skip_rows
                return line, f"expected {expected} fields, found {len(row)}"
    return None, ""


def _find_value(
    path: Path, delimiter: str, options: SourceOptions, col_index: int, value: str
) -> tuple[int | None, str | None]:
    with _open_text(path, options) as handle:
        for _ in range(options.skip_rows):
            handle.readline()
        reader = csv.reader(handle, delimiter=delimiter, quotechar=options.quotechar)
        header = next(reader, None)
        column = header[col_index] if header and col_index < len(header) else None
        for row in reader:
            if col_index < len(row) and row[col_index] == value:
                return reader.line_num + options.skip_rows, column
    return None, None
