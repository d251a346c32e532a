"""``file://`` sources: a path or a glob on the service's filesystem."""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

from services.common.spec.model import Source
from services.extractor.errors import SourceNotFound
from services.extractor.readers import detect_format
from services.extractor.sources.base import DiscoveredUnit


def path_of(uri: str) -> str:
    parsed = urlparse(uri)
    # file://relative/path is not a valid URI, but people write it; keep it relative.
    return unquote(parsed.netloc + parsed.path) if parsed.netloc else unquote(parsed.path)


class LocalFiles:
    def discover(self, source: Source) -> list[DiscoveredUnit]:
        pattern = path_of(source.uri)
        matches = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
        if not matches and not glob.has_magic(pattern):
            raise SourceNotFound(f"no such file: {pattern}", file=pattern)
        units = []
        for match in matches:
            stat = os.stat(match)
            absolute = os.path.abspath(match)
            units.append(
                DiscoveredUnit(
                    id=absolute,
                    uri=Path(absolute).as_uri(),
                    fingerprint=f"size={stat.st_size};mtime_ns={stat.st_mtime_ns}",
                    size_bytes=stat.st_size,
                    format=detect_format(Path(absolute), source.format),
                )
            )
        return units

    @contextlib.contextmanager
    def local_path(self, uri: str) -> Iterator[Path]:
        path = Path(path_of(uri))
        if not path.is_file():
            raise SourceNotFound(f"no such file: {path}", file=str(path))
        yield path
