"""``gs://bucket/prefix/*.csv`` sources through google-cloud-storage.

Listing asks for the literal prefix before the first glob character and filters names with the
glob. The fingerprint is the object's generation (a new upload is a new generation, even with the
same bytes). Reading streams the object to a private spool file in ranged chunks: the service
never holds a whole object in memory.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from services.common.errors import BadInput, Transient
from services.common.spec.source import Source
from services.extractor.errors import SourceNotFound
from services.extractor.settings import GcsSourceSettings
from services.extractor.sources.base import (
    RANGE_READ_AHEAD,
    DiscoveredUnit,
    remote_format,
    spool_name,
)
from services.extractor.spool import spool_dir


def split_uri(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b`` -> (``bucket``, ``a/b``)."""
    rest = uri.removeprefix("gs://")
    bucket, _, name = rest.partition("/")
    if not bucket:
        raise BadInput(f"no bucket in {uri!r}; write gs://bucket/path")
    return bucket, name


def _literal_prefix(pattern: str) -> str:
    for index, char in enumerate(pattern):
        if char in "*?[":
            return pattern[:index]
    return pattern


class GcsObjects:
    def __init__(self, settings: GcsSourceSettings, workdir: Path | None) -> None:
        self.settings = settings
        self.workdir = workdir
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            import google.cloud.storage as storage  # heavy import, only for gs:// sources

            if self.settings.emulator_host:
                from google.auth.credentials import AnonymousCredentials

                self._client = storage.Client(
                    project=self.settings.project or "sluice-local",
                    credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                    client_options={"api_endpoint": self.settings.emulator_host},
                )
            else:
                self._client = storage.Client(project=self.settings.project)
        return self._client

    def discover(self, source: Source) -> list[DiscoveredUnit]:
        bucket, pattern = split_uri(source.uri)
        magic = glob.has_magic(pattern)
        prefix = _literal_prefix(pattern) if magic else pattern
        try:
            blobs = list(self.client.list_blobs(bucket, prefix=prefix))
        except Exception as exc:
            raise _classify(exc, source.uri) from None
        units = []
        for blob in sorted(blobs, key=lambda b: b.name):
            if blob.name.endswith("/"):
                continue
            if magic and not fnmatch.fnmatchcase(blob.name, pattern):
                continue
            if not magic and blob.name != pattern:
                continue
            uri = f"gs://{bucket}/{blob.name}"
            units.append(
                DiscoveredUnit(
                    id=uri,
                    uri=uri,
                    fingerprint=f"generation={blob.generation};size={blob.size}",
                    size_bytes=int(blob.size or 0),
                    format=remote_format(blob.name, source),
                )
            )
        if not units and not magic:
            raise SourceNotFound(f"no such object: {source.uri}", file=source.uri)
        return units

    @contextlib.contextmanager
    def open_seekable(self, uri: str) -> Iterator[IO[bytes]]:
        """A seekable reader doing ranged reads: a zip's member list, or one member, without
        the whole zip."""
        bucket, name = split_uri(uri)
        blob = self.client.bucket(bucket).blob(name)
        # No request is made before the first read; reads classify their own failures, and
        # anything else raised in the block (a full spool disk) keeps its own meaning. Every
        # read fetches at least chunk_size bytes: the download chunk (8 MiB) would make each
        # member's 30-byte header pull in 8 MiB of its neighbours.
        with blob.open("rb", chunk_size=RANGE_READ_AHEAD) as reader:
            yield _Classified(reader, uri)  # type: ignore[misc]

    @contextlib.contextmanager
    def local_path(self, uri: str) -> Iterator[Path]:
        bucket, name = split_uri(uri)
        with spool_dir(self.workdir) as directory:
            target = directory / spool_name(name)
            blob = self.client.bucket(bucket).blob(name, chunk_size=self.settings.chunk_bytes)
            try:
                blob.download_to_filename(str(target))
            except Exception as exc:
                raise _classify(exc, uri) from None
            yield target


class _Classified:
    """A blob reader whose failures are Sluice errors as soon as they happen.

    The zip reader around it takes any OSError for a corrupt archive; a connection reset (an
    OSError too) in the middle of a ranged read must stay a transient error that is retried.
    """

    def __init__(self, reader: Any, uri: str) -> None:
        self._reader = reader
        self._uri = uri

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._reader, method)(*args)
        except Exception as exc:
            raise _classify(exc, self._uri) from None

    def read(self, size: int = -1) -> bytes:
        return bytes(self._call("read", size))

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self._call("seek", offset, whence))

    def tell(self) -> int:
        return int(self._call("tell"))

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True


def _classify(exc: Exception, uri: str) -> Exception:
    from google.api_core import exceptions as gexc

    if isinstance(exc, gexc.NotFound):
        return SourceNotFound(f"not found: {uri} ({exc.message})", file=uri)
    if isinstance(exc, gexc.Forbidden | gexc.Unauthorized):
        return BadInput(f"access denied to {uri}: {exc.message}", file=uri)
    return Transient(f"Google Cloud Storage failed for {uri}: {exc}", file=uri)
