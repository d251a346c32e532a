"""Loader errors."""

from __future__ import annotations

from services.common.errors import DestinationError, SchemaMismatch, Terminal


class UnsupportedDestination(Terminal):
    code = "unsupported_destination"


__all__ = ["DestinationError", "SchemaMismatch", "UnsupportedDestination"]
