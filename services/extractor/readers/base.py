"""The reader interface."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from services.common.spec.model import SourceOptions

BatchIterator = Iterator[pa.RecordBatch]


class Reader(Protocol):
    def read(self, path: Path, options: SourceOptions, batch_bytes: int) -> BatchIterator:
        """Yield record batches of about ``batch_bytes``; raise BadInput naming file and line."""
        ...
