"""Self-describing formats: parquet, jsonl and json arrays.

Parquet and JSON lines stream batch by batch and keep the schema the file (or the first block)
declares. A JSON array has to be parsed whole, so it is refused above ``JSON_DOCUMENT_LIMIT``;
large JSON should be exported as JSON lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pajson
import pyarrow.parquet as pq

from services.common import lineage
from services.common.errors import BadInput
from services.common.spec.source import SourceOptions
from services.extractor.readers.base import BatchIterator, ReadLimits, rebatch

JSON_DOCUMENT_LIMIT = 64 * 1024 * 1024
"""Largest JSON array document read (it is parsed whole)."""


def _numbered(
    batches: Iterable[pa.RecordBatch], options: SourceOptions, limits: ReadLimits
) -> Iterator[pa.RecordBatch]:
    """Batches of about ``limits.batch_bytes``, each row numbered by its record (1-based),
    stopping after ``options.max_rows`` rows."""
    row = 1
    for batch in batches:
        for piece in rebatch(batch, limits.batch_bytes):
            if options.max_rows is not None:
                piece = piece.slice(0, options.max_rows - (row - 1))
                if piece.num_rows == 0:
                    return
            lines = pa.array(range(row, row + piece.num_rows), pa.int64())
            yield piece.append_column(lineage.LINE, lines)
            row += piece.num_rows


class ParquetReader:
    def read(self, path: Path, options: SourceOptions, limits: ReadLimits) -> BatchIterator:
        try:
            parquet = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise BadInput(f"not a readable parquet file: {exc}", file=str(path)) from None
        return _numbered(parquet.iter_batches(batch_size=64 * 1024), options, limits)


class JsonLinesReader:
    def read(self, path: Path, options: SourceOptions, limits: ReadLimits) -> BatchIterator:
        if path.stat().st_size == 0:
            return iter(())
        return self._stream(path, options, limits)

    def _stream(
        self, path: Path, options: SourceOptions, limits: ReadLimits
    ) -> Iterator[pa.RecordBatch]:
        # pyarrow skips blank lines, so line numbers count records (exact without blank lines).
        row = 1
        try:
            reader = pajson.open_json(
                path, read_options=pajson.ReadOptions(block_size=limits.block_bytes)
            )
            for batch in _numbered(reader, options, limits):
                yield batch
                row += batch.num_rows
        except pa.ArrowInvalid as exc:
            raise BadInput(f"invalid JSON lines: {exc}", file=str(path), line=row) from None


class JsonArrayReader:
    def read(self, path: Path, options: SourceOptions, limits: ReadLimits) -> BatchIterator:
        size = path.stat().st_size
        if size == 0:
            return iter(())
        if size > JSON_DOCUMENT_LIMIT:
            raise BadInput(
                f"a JSON document of {size} bytes is over the limit of {JSON_DOCUMENT_LIMIT}; "
                "export JSON lines (one object per line) instead",
                file=str(path),
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadInput(f"invalid JSON: {exc}", file=str(path)) from None
        if isinstance(data, dict):
            data = [data]
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise BadInput("a JSON source must be an array of objects", file=str(path))
        if not data:
            return iter(())
        table = pa.Table.from_pylist(data)
        # In a JSON array the position is the record number.
        return _numbered(table.to_batches(max_chunksize=64 * 1024), options, limits)
