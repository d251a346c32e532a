"""``file://`` sources: a path or a glob on the service's filesystem."""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlparse

from services.common.spec.source import Source
from services.extractor.errors import SourceNotFound
from services.extractor.readers import detect_format, sniff_format
from services.extractor.sources.base import DiscoveredUnit


def path_of(uri: str) -> str:
    parsed = urlparse(uri)
    # file://relative/path is not a valid URI, but people write it; keep it relative.
    return unquote(parsed.netloc + parsed.path) if parsed.netloc else unquote(parsed.path)


def local_format(path: Path, source: Source) -> str:
    """Declared format, except that a zip (not a workbook) is always a container."""
    if source.format not in ("auto", "zip") and sniff_format(path) in ("zip", "gzip", "bz2", "xz"):
        sniffed = sniff_format(path)
        assert sniffed is not None
        return sniffed
    return detect_format(path, source.format, source.options)


class LocalFiles:
    def discover(self, source: Source) -> list[DiscoveredUnit]:
        pattern = path_of(source.uri)
        matches = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
        if not matches and not glob.has_magic(pattern):
            raise SourceNotFound(f"no such file: {pattern}", file=pattern)
        units = []
        for match in matches:
            stat = os.stat(match)
            absolute = Path(os.path.abspath(match))
            units.append(
                DiscoveredUnit(
                    id=str(absolute),
                    uri=absolute.as_uri(),
                    fingerprint=f"size={stat.st_size};mtime_ns={stat.st_mtime_ns}",
                    size_bytes=stat.st_size,
                    format=local_format(absolute, source),
                )
            )
        return units

    @contextlib.contextmanager
    def local_path(self, uri: str) -> Iterator[Path]:
        path = Path(path_of(uri))
        if not path.is_file():
            raise SourceNotFound(f"no such file: {path}", file=str(path))
        yield path

    @contextlib.contextmanager
    def open_seekable(self, uri: str) -> Iterator[IO[bytes]]:
        with self.local_path(uri) as path, path.open("rb") as handle:
            yield handle
