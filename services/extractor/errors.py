"""Extractor errors; all derive from the common root so they map to gRPC statuses."""

from __future__ import annotations

from services.common.errors import BadInput, NotFound, Terminal


class SourceNotFound(NotFound):
    code = "source_not_found"


class UnsupportedFormat(Terminal):
    code = "unsupported_format"


__all__ = ["BadInput", "SourceNotFound", "UnsupportedFormat"]
