"""The reader interface and helpers every reader shares."""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from services.common import lineage
from services.common.spec.source import SourceOptions
from services.extractor.settings import LimitSettings

BatchIterator = Iterator[pa.RecordBatch]


_SETTINGS = LimitSettings()


@dataclass(frozen=True)
class ReadLimits:
    """Sizes a reader works with; the defaults are the extractor settings' (documented there)."""

    batch_bytes: int = _SETTINGS.batch_bytes
    """Target Arrow size of one emitted batch (bigger parsed blocks are sliced, zero-copy)."""
    max_line_bytes: int = _SETTINGS.max_line_bytes
    """Longest record accepted; also the text parser's block size, so it bounds memory too."""
    excel_in_memory_bytes: int = _SETTINGS.excel_in_memory_bytes
    """Largest sheet XML decoded in memory by calamine; bigger workbooks are streamed."""
    excel_decode_memory_bytes: int = _SETTINGS.excel_decode_memory_bytes
    """Data segment a calamine decode may use (it runs in a child process capped at this)."""

    @classmethod
    def of(cls, settings: LimitSettings) -> ReadLimits:
        # Every field is the setting of the same name.
        return cls(**settings.model_dump(include={f.name for f in fields(cls)}))

    @property
    def block_bytes(self) -> int:
        return max(self.max_line_bytes, 64 * 1024)


class Reader(Protocol):
    def read(self, path: Path, options: SourceOptions, limits: ReadLimits) -> BatchIterator:
        """Yield batches of about ``limits.batch_bytes``; raise BadInput naming file and line."""
        ...


def rebatch(batch: pa.RecordBatch, batch_bytes: int) -> BatchIterator:
    """Zero-copy slices of ``batch`` of about ``batch_bytes`` each."""
    size = batch.nbytes
    if size <= batch_bytes or batch.num_rows <= 1:
        yield batch
        return
    pieces = -(-size // batch_bytes)
    step = max(1, -(-batch.num_rows // pieces))
    for start in range(0, batch.num_rows, step):
        yield batch.slice(start, step)


REJECTED_KEY = b"sluice.batch_kind"
"""Schema metadata key marking a batch of rows a reader rejected (sent as BATCH_KIND_REJECTED)."""


def rejected_batch(
    columns: dict[str, pa.Array], *, lines: list[int], check: str, reasons: list[str]
) -> pa.RecordBatch:
    """Rows a reader set aside, with the reject columns the loader's quarantine table has."""
    n = len(lines)
    arrays = {
        **columns,
        lineage.CHECK: pa.array([check] * n, pa.string()),
        lineage.COLUMN: pa.nulls(n, pa.string()),
        lineage.REASON: pa.array(reasons, pa.string()),
        lineage.LINE: pa.array(lines, pa.int64()),
    }
    batch = pa.RecordBatch.from_pydict(arrays)
    return batch.replace_schema_metadata({REJECTED_KEY: b"rejected"})


def is_rejected(batch: pa.RecordBatch) -> bool:
    """Whether ``batch`` holds rejected rows rather than data."""
    metadata = batch.schema.metadata or {}
    return metadata.get(REJECTED_KEY) == b"rejected"


_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = False


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a reader turns cells into Python objects.

    A sheet chunk creates hundreds of thousands of objects that all stay alive until the batch
    is built; each allocation burst triggers collections that walk every one of them again (a
    third of the Excel reader's time). Reference counting still frees everything; the pause is
    process-wide, so it is counted across threads and never spans a ``yield``.
    """
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()
