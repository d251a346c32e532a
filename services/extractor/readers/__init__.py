"""Readers turn a local file into a stream of Arrow record batches, with bounded memory."""

from __future__ import annotations

from pathlib import Path

from services.common.spec.model import SourceOptions
from services.extractor.errors import UnsupportedFormat
from services.extractor.readers.base import BatchIterator, Reader
from services.extractor.readers.delimited import DelimitedReader

_BY_EXTENSION = {".csv": "csv", ".tsv": "tsv", ".psv": "psv", ".txt": "txt"}
_READERS: dict[str, Reader] = {
    "csv": DelimitedReader(","),
    "tsv": DelimitedReader("\t"),
    "psv": DelimitedReader("|"),
    "txt": DelimitedReader(None),
}


def detect_format(path: Path, declared: str) -> str:
    """The declared format, or one detected from the file name."""
    if declared != "auto":
        return declared
    fmt = _BY_EXTENSION.get(path.suffix.lower())
    if fmt is None:
        raise UnsupportedFormat(
            f"cannot detect the format of {path.name}; set source.format", file=str(path)
        )
    return fmt


def read_batches(path: Path, fmt: str, options: SourceOptions, batch_bytes: int) -> BatchIterator:
    reader = _READERS.get(fmt)
    if reader is None:
        raise UnsupportedFormat(f"format {fmt!r} is not supported yet", file=str(path))
    return reader.read(path, options, batch_bytes)
