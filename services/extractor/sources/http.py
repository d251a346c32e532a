"""``https://`` sources: one object per URL, streamed with httpx.

The fingerprint is the ETag, else Last-Modified plus Content-Length (from a HEAD request, or a
GET whose body is not read when HEAD is refused); a server that sends neither gets a SHA-256 of
the streamed body, so ``incremental`` still loads a changed file and skips an unchanged one.
Downloads stream to a private spool file with connect/read timeouts and a size limit.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx

from services.common.errors import BadInput, Transient
from services.common.spec.source import Source
from services.extractor.errors import SourceNotFound
from services.extractor.settings import HttpSourceSettings
from services.extractor.sources.base import DiscoveredUnit, remote_format, spool_dir, spool_name

_CHUNK = 1024 * 1024


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
    def local_path(self, uri: str) -> Iterator[Path]:
        name = urlparse(uri).path.rsplit("/", 1)[-1]
        with spool_dir(self.workdir) as directory, self._client() as client:
            target = directory / spool_name(name)
            with target.open("wb") as out:
                for chunk in self._chunks(client, uri):
                    out.write(chunk)
            yield target


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
