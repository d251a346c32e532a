"""``https://`` sources: one object per URL, streamed with httpx.

The fingerprint is the ETag, else Last-Modified plus Content-Length (from a HEAD request, or a
GET whose body is not read when HEAD is refused); a server that sends neither gets a SHA-256 of
the streamed body, so ``incremental`` still loads a changed file and skips an unchanged one.
Downloads stream to a private spool file with connect/read timeouts and a size limit.

Zip archives are read in place when the server answers a one-byte range request with ``206``
and ``Content-Range: bytes 0-0/<size>``: listing the members and reading one of them fetch the
archive's directory and that member, not the whole archive once for the listing and once more
per member. Range requests carry ``If-Match`` with a strong ETag, so an archive replaced
between two reads fails the unit (to be retried) instead of mixing two versions.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import urlparse

import httpx

from services.common.errors import BadInput, Transient
from services.common.spec.source import Source
from services.extractor.errors import SourceNotFound
from services.extractor.settings import HttpSourceSettings
from services.extractor.sources.base import (
    RANGE_READ_AHEAD,
    DiscoveredUnit,
    remote_format,
    spool_name,
)
from services.extractor.spool import spool_dir

_CHUNK = 1024 * 1024
_RANGE_BLOCK = 1024 * 1024
"""Most bytes fetched by one range request (a member is copied a block at a time)."""
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class HttpObjects:
    def __init__(self, settings: HttpSourceSettings, max_bytes: int, workdir: Path | None) -> None:
        self.settings = settings
        self.max_bytes = max_bytes
        self.workdir = workdir

    def _client(self) -> httpx.Client:
        timeout = httpx.Timeout(
            self.settings.read_timeout_seconds, connect=self.settings.connect_timeout_seconds
        )
        return httpx.Client(
            timeout=timeout,
            follow_redirects=True,
            headers={"User-Agent": self.settings.user_agent},
        )

    def discover(self, source: Source) -> list[DiscoveredUnit]:
        uri = source.uri
        with self._client() as client:
            try:
                reply = client.head(uri)
                if reply.status_code in (405, 501):
                    with client.stream("GET", uri) as streamed:
                        reply = streamed
                _raise_for_status(reply, uri)
            except httpx.HTTPError as exc:
                raise Transient(f"cannot reach {uri}: {exc}", file=uri) from None
            headers = reply.headers
            size = int(headers.get("content-length") or 0)
            if size > self.max_bytes:
                raise BadInput(_too_big(size, self.max_bytes), file=uri)
            if headers.get("etag"):
                fingerprint = f"etag={headers['etag']}"
            elif headers.get("last-modified"):
                fingerprint = f"last_modified={headers['last-modified']};size={size}"
            else:
                fingerprint = f"sha256={self._digest(client, uri)}"
        name = urlparse(uri).path.rsplit("/", 1)[-1]
        return [
            DiscoveredUnit(
                id=uri,
                uri=uri,
                fingerprint=fingerprint,
                size_bytes=size,
                format=remote_format(name, source),
            )
        ]

    def _digest(self, client: httpx.Client, uri: str) -> str:
        digest = hashlib.sha256()
        for chunk in self._chunks(client, uri):
            digest.update(chunk)
        return digest.hexdigest()

    def _chunks(self, client: httpx.Client, uri: str) -> Iterator[bytes]:
        try:
            with client.stream("GET", uri) as reply:
                _raise_for_status(reply, uri)
                declared = int(reply.headers.get("content-length") or 0)
                if declared > self.max_bytes:
                    raise BadInput(_too_big(declared, self.max_bytes), file=uri)
                received = 0
                for chunk in reply.iter_bytes(_CHUNK):
                    received += len(chunk)
                    if received > self.max_bytes:
                        raise BadInput(_too_big(received, self.max_bytes), file=uri)
                    yield chunk
        except httpx.HTTPError as exc:
            raise Transient(f"download of {uri} failed: {exc}", file=uri) from None

    @contextlib.contextmanager
    def open_seekable(self, uri: str) -> Iterator[IO[bytes]]:
        """The object as a seekable file: read in place with range requests when the server
        offers them, else downloaded to a spool file first."""
        with self._client() as client:
            ranged = _answers_ranges(client, uri)
            if ranged:
                size, etag = ranged
                if size > self.max_bytes:
                    raise BadInput(_too_big(size, self.max_bytes), file=uri)
                strong = etag if etag and not etag.startswith("W/") else None
                yield io.BufferedReader(_RangedObject(client, uri, size, strong), RANGE_READ_AHEAD)
                return
        with self.local_path(uri) as path, path.open("rb") as handle:
            yield handle

    @contextlib.contextmanager
    def local_path(self, uri: str) -> Iterator[Path]:
        name = urlparse(uri).path.rsplit("/", 1)[-1]
        with spool_dir(self.workdir) as directory, self._client() as client:
            target = directory / spool_name(name)
            with target.open("wb") as out:
                for chunk in self._chunks(client, uri):
                    out.write(chunk)
            yield target


def _content_range(reply: httpx.Response) -> re.Match[str] | None:
    """A partial-content reply's ``Content-Range``: (start, end, size or ``*``); None for any
    other reply."""
    if reply.status_code != 206:
        return None
    return _CONTENT_RANGE.fullmatch(reply.headers.get("content-range", ""))


def _answers_ranges(client: httpx.Client, uri: str) -> tuple[int, str] | None:
    """The object's size and ETag when a one-byte range request really gets a range back
    (some servers announce ranges and then send the whole body); None otherwise. The reply
    says all a HEAD would: ``Content-Range: bytes 0-0/<size>``."""
    try:
        with client.stream("GET", uri, headers={"Range": "bytes=0-0"}) as reply:
            match = _content_range(reply)
            if match is None or match.group(3) == "*":
                return None
            size = int(match.group(3))
            return (size, reply.headers.get("etag", "")) if size > 0 else None
    except httpx.HTTPError:
        return None


class _RangedObject(io.RawIOBase):
    """A remote object read with ``Range`` requests (wrapped in a BufferedReader, which turns
    small reads into block-sized ones)."""

    def __init__(self, client: httpx.Client, uri: str, size: int, etag: str | None) -> None:
        self._client = client
        self._uri = uri
        self._size = size
        self._etag = etag
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readall(self) -> bytes:
        """The rest of the object, a block per request (the default would ask 8 KiB at a
        time)."""
        chunks = []
        while self._position < self._size:
            block = bytearray(min(_RANGE_BLOCK, self._size - self._position))
            read = self.readinto(memoryview(block))
            if read == 0:
                break
            chunks.append(bytes(block[:read]))
        return b"".join(chunks)

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._position >= self._size or len(buffer) == 0:
            return 0
        end = min(self._position + min(len(buffer), _RANGE_BLOCK), self._size) - 1
        headers = {"Range": f"bytes={self._position}-{end}"}
        if self._etag:
            headers["If-Match"] = self._etag
        try:
            reply = self._client.get(self._uri, headers=headers)
        except httpx.HTTPError as exc:
            raise Transient(f"range read of {self._uri} failed: {exc}", file=self._uri) from None
        if reply.status_code == 412:
            raise Transient(f"{self._uri} changed while it was being read", file=self._uri)
        _raise_for_status(reply, self._uri)
        match = _content_range(reply)
        if match is None or int(match[1]) != self._position:
            raise Transient(
                f"{self._uri} answered a range request with HTTP {reply.status_code} "
                "and not the range asked for",
                file=self._uri,
            )
        data = reply.content
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)


def _too_big(size: int, limit: int) -> str:
    return (
        f"the object is {size} bytes or more, over the download limit of {limit} "
        "(SLUICE_LIMITS__MAX_DOWNLOAD_BYTES)"
    )


def _raise_for_status(reply: httpx.Response, uri: str) -> None:
    status = reply.status_code
    if status < 400:
        return
    if status in (404, 410):
        raise SourceNotFound(f"HTTP {status}: not found: {uri}", file=uri)
    if status in (408, 429) or status >= 500:
        raise Transient(f"HTTP {status} from {uri}", file=uri)
    raise BadInput(f"HTTP {status} from {uri}", file=uri)
