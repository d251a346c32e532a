"""Where units come from: local files, Google Cloud Storage, HTTP."""

from __future__ import annotations

from services.extractor.errors import UnsupportedFormat
from services.extractor.sources.base import SourceBackend
from services.extractor.sources.local import LocalFiles


def backend_for(uri: str) -> SourceBackend:
    """The backend serving a source URI's scheme."""
    if uri.startswith("file://"):
        return LocalFiles()
    raise UnsupportedFormat(f"no source backend for {uri!r} (file:// is supported)")
