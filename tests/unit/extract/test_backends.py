"""Source backends: which one serves a URI, and which storage client a gs:// source gets."""

from __future__ import annotations

import gc

from services.extractor.settings import ExtractorSettings, GcsSourceSettings
from services.extractor.sources import backend_for
from services.extractor.sources.gcs import GcsObjects


def gcs_settings(emulator: str) -> ExtractorSettings:
    return ExtractorSettings(gcs=GcsSourceSettings(emulator_host=emulator))


def test_gcs_backend_follows_the_settings_values_not_the_object() -> None:
    first = backend_for("gs://bucket/a.csv", gcs_settings("http://127.0.0.1:9001"))
    gc.collect()  # the first settings object is gone; a new one may reuse its id
    second = backend_for("gs://bucket/a.csv", gcs_settings("http://127.0.0.1:9002"))
    assert isinstance(first, GcsObjects) and isinstance(second, GcsObjects)
    assert first.settings.emulator_host == "http://127.0.0.1:9001"
    assert second.settings.emulator_host == "http://127.0.0.1:9002"
    again = backend_for("gs://bucket/b.csv", gcs_settings("http://127.0.0.1:9001"))
    assert again is first  # same configuration: the pooled client is shared
