"""The first bytes that tell container formats apart, whatever a file's name says."""

from __future__ import annotations

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
"""How a zip file starts: a local file header, or the end record of an empty archive."""
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
"""First bytes of an OLE2 container: a BIFF workbook, or an encrypted Office file."""

__all__ = ["OLE2_MAGIC", "ZIP_MAGIC"]
