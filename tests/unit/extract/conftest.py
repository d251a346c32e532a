"""Helpers that write small source files and read them through the extractor's readers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from services.common.spec.source import Source
from services.extractor.readers import ReadLimits, read_batches
from services.extractor.settings import ExtractorSettings
from services.extractor.units import discover, materialize


def read_table(
    path: Path, fmt: str = "auto", batch_bytes: int = 1 << 20, **options: Any
) -> pa.Table:
    """Every batch of ``path`` as one table; asserts the unit kept one schema."""
    source = Source(uri=path.as_uri(), format=fmt, options=options)  # type: ignore[arg-type]
    limits = ReadLimits(batch_bytes=batch_bytes, max_line_bytes=batch_bytes)
    batches = list(read_batches(path, fmt, source.options, limits))
    if not batches:
        return pa.table({})
    schemas = {b.schema for b in batches}
    assert len(schemas) == 1, f"schema changed mid-unit: {schemas}"
    return pa.Table.from_batches(batches)


def pull_units(
    uri: str, settings: ExtractorSettings | None = None, **spec: Any
) -> dict[str, pa.Table]:
    """Discover ``uri`` and read every unit the way the service does: {unit id: table}."""
    settings = settings or ExtractorSettings()
    source = Source(uri=uri, **spec)
    tables = {}
    for unit in discover(source, settings):
        with materialize(unit.uri, unit.member, unit.format, source, settings) as (path, fmt, _):
            batches = list(read_batches(path, fmt, source.options, ReadLimits(batch_bytes=1 << 20)))
        tables[unit.id] = pa.Table.from_batches(batches) if batches else pa.table({})
    return tables
