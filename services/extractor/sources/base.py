"""The interface every source backend implements."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from services.common.spec.source import Source
from services.extractor.readers import format_by_name
from services.extractor.spool import safe_suffix

RANGE_READ_AHEAD = 64 * 1024
"""Read-ahead of ranged reads of a remote zip: the small reads (headers, magic bytes, the
directory) are one request each, and do not pull in a neighbouring member."""


@dataclass(frozen=True)
class DiscoveredUnit:
    """One unit found in a source, before it travels as a protobuf ``Unit``."""

    id: str
    uri: str
    fingerprint: str
    size_bytes: int
    format: str
    member: str = ""


class SourceBackend(Protocol):
    def discover(self, source: Source) -> list[DiscoveredUnit]:
        """List the units of ``source`` with fingerprints, in a stable order."""
        ...

    def local_path(self, uri: str) -> AbstractContextManager[Path]:
        """A local path holding the object's bytes for the duration of the block."""
        ...

    def open_seekable(self, uri: str) -> AbstractContextManager[IO[bytes]]:
        """The object as a seekable binary file (ranged reads where the store allows them, so
        a zip's directory or one member costs only those bytes)."""
        ...


def remote_format(name: str, source: Source) -> str:
    """Format of a remote object from its name; ``auto`` when only the bytes can tell."""
    by_name = format_by_name(name)
    if source.format != "auto" and by_name not in ("zip", "gzip", "bz2", "xz"):
        return source.format
    if by_name == "txt" and source.options.columns:
        return "fixed"
    return by_name or "auto"


def spool_name(name: str) -> str:
    """A safe local file name keeping the object's extensions (they help format detection)."""
    return "object" + safe_suffix(name)


__all__ = ["DiscoveredUnit", "SourceBackend", "remote_format", "spool_name"]
