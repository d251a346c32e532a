"""A real extractor process, a GCS emulator and a local HTTP server, all on loopback."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import grpc
import pytest

from services.cli.stack import free_port
from services.common.proto.sluice.v1 import data_pb2, extractor_pb2, extractor_pb2_grpc

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def gcs_emulator() -> Iterator[str]:
    """gcp-storage-emulator in memory on a free loopback port; yields its URL."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="module")
def gcs_client(gcs_emulator: str) -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(
        project="test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": gcs_emulator},
    )


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _served(root: Path, handler: type[http.server.SimpleHTTPRequestHandler]) -> Iterator[str]:
    """``root`` served by ``handler`` in a thread; yields the base URL."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(root))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def http_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A directory served by http.server in a thread: (directory, base URL)."""
    root = tmp_path_factory.mktemp("www")
    with _served(root, _QuietHandler) as url:
        yield root, url


class _RangeHandler(_QuietHandler):
    """Files with byte ranges, a strong ETag and ``If-Match``, counting the body bytes sent and
    the requests by method."""

    sent: ClassVar[dict[str, int]] = {}
    methods: ClassVar[list[str]] = []

    def do_HEAD(self) -> None:
        self.methods.append("HEAD")
        self._serve(body=False)

    def do_GET(self) -> None:
        self.methods.append("GET")
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        etag = f'"{len(data)}-{path.stat().st_mtime_ns}"'
        wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if self.headers.get("If-Match") not in (None, etag):
            self.send_error(412)
            return
        if wanted:
            start = int(wanted[1])
            end = min(int(wanted[2]) if wanted[2] else len(data) - 1, len(data) - 1)
            part = data[start : end + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            part = data
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(part)))
        self.end_headers()
        if body:
            self.wfile.write(part)
            self.sent[self.path] = self.sent.get(self.path, 0) + len(part)


@pytest.fixture(scope="module")
def ranged_http_root(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, str, dict[str, int], list[str]]]:
    """Like ``http_root``, from a server that honours byte ranges: (directory, base URL,
    body bytes sent per path, methods of the requests in order)."""
    root = tmp_path_factory.mktemp("ranged")
    _RangeHandler.sent.clear()  # the counts are the class's: start from none
    _RangeHandler.methods.clear()
    with _served(root, _RangeHandler) as url:
        yield root, url, _RangeHandler.sent, _RangeHandler.methods


class Extractor:
    """A client of a real extractor process."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        grpc.channel_ready_future(self.channel).result(timeout=60)
        self.stub = extractor_pb2_grpc.ExtractorStub(self.channel)

    def discover(self, source_json: str) -> list[data_pb2.Unit]:
        reply = self.stub.Discover(
            extractor_pb2.DiscoverRequest(
                run_id="r1", pipeline="p", task="t", source_spec_json=source_json
            ),
            timeout=60,
        )
        return list(reply.units)

    def pull(self, unit: data_pb2.Unit, task_json: str) -> list[data_pb2.RecordBatch]:
        request = data_pb2.UnitRequest(
            run_id="r1", pipeline="p", task="t", unit=unit, task_spec_json=task_json
        )
        return list(self.stub.Pull(request, timeout=120))


@pytest.fixture(scope="module")
def extractor(gcs_emulator: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Extractor]:
    """``python -m services.extractor`` as a subprocess, pointed at the GCS emulator."""
    port = free_port()
    work = tmp_path_factory.mktemp("work")
    env = {
        **os.environ,
        "SLUICE_GRPC__HOST": "127.0.0.1",
        "SLUICE_GRPC__PORT": str(port),
        "SLUICE_METRICS__ENABLED": "false",
        "SLUICE_GCS__EMULATOR_HOST": gcs_emulator,
        "SLUICE_LIMITS__MAX_DOWNLOAD_BYTES": str(2 * 1024 * 1024),
        "SLUICE_WORK_DIR": str(work),
        "SLUICE_LOG__FORMAT": "console",
    }
    log = (work / "extractor.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "services.extractor"], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    try:
        client = Extractor(f"127.0.0.1:{port}")
        client.work_dir = work  # type: ignore[attr-defined]
        yield client
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
