"""Where units come from: local files, Google Cloud Storage, HTTP."""

from __future__ import annotations

from services.extractor.errors import UnsupportedFormat
from services.extractor.settings import ExtractorSettings
from services.extractor.sources.base import SourceBackend
from services.extractor.sources.gcs import GcsObjects
from services.extractor.sources.http import HttpObjects
from services.extractor.sources.local import LocalFiles

_GCS: dict[tuple[str, str], GcsObjects] = {}


def backend_for(uri: str, settings: ExtractorSettings | None = None) -> SourceBackend:
    """The backend serving a source URI's scheme."""
    settings = settings or ExtractorSettings()
    if uri.startswith("file://"):
        return LocalFiles()
    if uri.startswith("gs://"):
        # One storage client per configuration: it pools connections and caches credentials.
        # Keyed by value, not id(settings): a freed settings object's id is reused.
        key = (settings.gcs.model_dump_json(), str(settings.work_dir))
        if key not in _GCS:
            _GCS[key] = GcsObjects(settings.gcs, settings.work_dir)
        return _GCS[key]
    if uri.startswith(("https://", "http://")):
        return HttpObjects(settings.http, settings.limits.max_download_bytes, settings.work_dir)
    raise UnsupportedFormat(f"no source backend for {uri!r} (file://, gs://, https://)")
