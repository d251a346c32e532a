"""Fixed-width text: the column layout comes from ``source.options.columns``.

pyarrow splits the file into whole lines (a separator that never occurs in text, no quoting),
so every line is one row and its number is exact; fields are cut with vectorised substring
kernels, trimmed, and converted to the unit's schema like delimited text. With ``header: true``
(the default) the first line after ``skip_rows`` is a heading and is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from services.common.errors import BadInput
from services.common.spec.source import FixedColumn, SourceOptions
from services.extractor.readers import schema as schemas
from services.extractor.readers.base import BatchIterator, ReadLimits, rebatch
from services.extractor.readers.text import detect_encoding, pyarrow_encoding, undecodable

_LINE = "line"


class FixedWidthReader:
    def read(self, path: Path, options: SourceOptions, limits: ReadLimits) -> BatchIterator:
        if not options.columns:
            raise BadInput(
                "fixed-width text needs a column layout: source.options.columns "
                "[{name, start, width}]",
                file=str(path),
            )
        if path.stat().st_size == 0:
            return iter(())
        encoding = detect_encoding(path, options)
        return self._stream(path, encoding, options.columns, options, limits)

    def _stream(
        self,
        path: Path,
        encoding: str,
        layout: list[FixedColumn],
        options: SourceOptions,
        limits: ReadLimits,
    ) -> Iterator[pa.RecordBatch]:
        header_lines = options.skip_rows + (1 if options.header else 0)
        nulls = pa.array(schemas.null_values(options), pa.string())
        schema: pa.Schema | None = None
        next_line = header_lines + 1
        rows = 0
        try:
            # pyarrow reads the first block on opening: its decoding errors surface here.
            reader = pacsv.open_csv(
                path,
                read_options=pacsv.ReadOptions(
                    block_size=limits.block_bytes,
                    skip_rows=header_lines,
                    column_names=[_LINE],
                    encoding=pyarrow_encoding(encoding),
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter="\x1f", quote_char=False, ignore_empty_lines=False
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={_LINE: pa.string()}, strings_can_be_null=False
                ),
            )
            for block in reader:
                text = pc.utf8_rtrim(block.column(0), characters="\r")
                lines = pa.array(range(next_line, next_line + len(text)), pa.int64())
                next_line += len(text)
                keep = pc.not_equal(pc.utf8_trim_whitespace(text), "")
                text, lines = text.filter(keep), lines.filter(keep)
                if options.max_rows is not None:
                    text, lines = text[: options.max_rows - rows], lines[: options.max_rows - rows]
                if len(text) == 0:
                    continue
                fields = []
                for column in layout:
                    value = pc.utf8_trim_whitespace(
                        pc.utf8_slice_codeunits(
                            text, column.start - 1, column.start - 1 + column.length
                        )
                    )
                    fields.append(pc.if_else(pc.is_in(value, value_set=nulls), None, value))
                raw = pa.RecordBatch.from_arrays(fields, names=[c.name for c in layout])
                if schema is None:
                    schema, batch = schemas.plan_and_convert(raw, lines, options, file=str(path))
                else:
                    batch = schemas.convert(raw, schema, lines, options, file=str(path))
                rows += batch.num_rows
                yield from rebatch(batch, limits.batch_bytes)
                if options.max_rows is not None and rows >= options.max_rows:
                    break
        except pa.ArrowInvalid as exc:
            if "Empty CSV file" in str(exc):
                return
            raise BadInput(f"cannot read fixed-width text: {exc}", file=str(path)) from None
        except UnicodeDecodeError as exc:
            raise undecodable(path, encoding, exc) from None
