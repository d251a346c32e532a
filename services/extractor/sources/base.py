"""The interface every source backend implements."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from services.common.spec.model import Source


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
