"""BigQuery job ids against a recording HTTP fake: what bqemulator does not model.

The emulator assigns its own job ids and accepts duplicates, so the promise "a retried load is
recognised instead of repeated" is checked here, on the request bodies the real client sends.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from services.common.spec.destination import Destination
from services.loader.settings import BigQuerySettings
from services.loader.sinks.base import LoadContext, UnitKey
from services.loader.sinks.bigquery_sink import BigQuerySink, JobFailed, job_id

PROJECT = "fake-project"


class FakeBigQuery:
    """Jobs by id, resumable uploads, and a log of every request."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.uploads: dict[str, bytes] = {}
        self.fail_next: list[dict[str, str]] = []
        self.pending: dict[str, dict[str, Any]] = {}
        self.on_insert: Any = None

    def finish(self, resource: dict[str, Any]) -> dict[str, Any]:
        jid = resource["jobReference"]["jobId"]
        resource = {**resource, "id": f"{PROJECT}:{jid}", "status": {"state": "DONE"}}
        if self.fail_next:
            error = self.fail_next.pop(0)
            resource["status"] = {"state": "DONE", "errorResult": error, "errors": [error]}
        self.jobs[jid] = resource
        return resource


def handler_for(fake: FakeBigQuery) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return

        def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            fake.requests.append(("GET", path, None))
            jid = path.rsplit("/", 1)[-1]
            if "/jobs/" in path and jid in fake.jobs:
                return self._send(200, fake.jobs[jid])
            return self._send(404, {"error": {"code": 404, "message": f"Not found: {jid}"}})

        def do_POST(self) -> None:
            body = json.loads(self._body() or b"{}")
            path = urlsplit(self.path).path
            fake.requests.append(("POST", path, body))
            jid = body["jobReference"]["jobId"]
            if jid in fake.jobs:
                return self._send(409, {"error": {"code": 409, "message": "Already Exists"}})
            if "/upload/" not in path:  # jobs.insert without media: load from GCS, query
                if fake.on_insert is not None:
                    fake.on_insert(body)
                return self._send(200, fake.finish(body))
            fake.pending[jid] = body
            port = self.server.server_address[1]
            location = f"http://127.0.0.1:{port}/session/{jid}"
            return self._send(200, {}, {"Location": location})

        def do_PUT(self) -> None:
            jid = urlsplit(self.path).path.rsplit("/", 1)[-1]
            data = self._body()
            fake.requests.append(("PUT", self.path, len(data)))
            fake.uploads[jid] = data
            return self._send(200, fake.finish(fake.pending.pop(jid)))

    return Handler


@pytest.fixture
def fake() -> Iterator[tuple[FakeBigQuery, BigQuerySink]]:
    state = FakeBigQuery()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings = BigQuerySettings(
        api_endpoint=f"http://127.0.0.1:{server.server_address[1]}", job_timeout_seconds=30
    )
    yield state, BigQuerySink(f"bigquery://{PROJECT}/ds", settings)
    server.shutdown()


def writer_for(sink: BigQuerySink, **destination: Any) -> Any:
    from services.loader.sinks.bigquery_sink import BigQueryUnitWriter

    dest = Destination.model_validate(
        {"uri": f"bigquery://{PROJECT}/ds", "table": "sales", **destination}
    )
    ctx = LoadContext(UnitKey("pipe", "task", "unit-1", "fp-1"), "run-1", dest, "sales")
    return BigQueryUnitWriter(sink, ctx)


def spool(writer: Any, rows: int = 3) -> str:
    writer.write(pa.RecordBatch.from_pydict({"id": list(range(rows)), "note": ["x"] * rows}))
    path, _ = writer.data.finish()
    return str(path)


def uploads_of(fake: FakeBigQuery) -> list[dict[str, Any]]:
    return [body for method, path, body in fake.requests if method == "POST" and "upload" in path]


def test_load_job_request_carries_a_deterministic_id_and_parquet(fake: Any) -> None:
    state, sink = fake
    writer = writer_for(sink)
    writer._load(spool(writer), sink.table_id("sales"), "WRITE_APPEND", "load", add_fields=True)
    [body] = uploads_of(state)
    expected = job_id(("pipe", "task", "unit-1", "fp-1"), "load")
    assert body["jobReference"]["jobId"] == expected
    load = body["configuration"]["load"]
    assert load["sourceFormat"] == "PARQUET"
    assert load["writeDisposition"] == "WRITE_APPEND"
    assert load["schemaUpdateOptions"] == ["ALLOW_FIELD_ADDITION"]
    assert load["destinationTable"] == {"projectId": PROJECT, "datasetId": "ds", "tableId": "sales"}
    uploaded = pq.read_table(io.BytesIO(state.uploads[expected]))
    assert uploaded.column("id").to_pylist() == [0, 1, 2]
    writer.abort()


def test_a_retried_unit_recognises_its_finished_job_and_uploads_nothing(fake: Any) -> None:
    state, sink = fake
    first = writer_for(sink)
    first._load(spool(first), sink.table_id("sales"), "WRITE_APPEND", "load")
    retry = writer_for(sink)  # same pipeline, task, unit and fingerprint: a retry
    retry._load(spool(retry), sink.table_id("sales"), "WRITE_APPEND", "load")
    assert len(uploads_of(state)) == 1
    assert len(state.uploads) == 1
    first.abort()
    retry.abort()


def test_a_job_failed_on_bigquerys_side_reruns_under_the_next_id(fake: Any) -> None:
    state, sink = fake
    state.fail_next = [{"reason": "backendError", "message": "try again"}]
    writer = writer_for(sink, mode="replace")
    writer._load(spool(writer), sink.table_id("sales"), "WRITE_TRUNCATE", "load")
    ids = [b["jobReference"]["jobId"] for b in uploads_of(state)]
    base = job_id(("pipe", "task", "unit-1", "fp-1"), "load")
    assert ids == [base, base + "_r1"]
    assert uploads_of(state)[1]["configuration"]["load"]["writeDisposition"] == "WRITE_TRUNCATE"
    writer.abort()


def test_an_invalid_input_job_is_not_retried(fake: Any) -> None:
    state, sink = fake
    state.fail_next = [{"reason": "invalid", "message": "bad parquet"}]
    writer = writer_for(sink)
    with pytest.raises(JobFailed, match="bad parquet"):
        writer._load(spool(writer), sink.table_id("sales"), "WRITE_APPEND", "load")
    assert len(uploads_of(state)) == 1
    writer.abort()


def test_job_ids_depend_on_every_part_of_the_unit_key() -> None:
    key = ("p", "t", "u", "f")
    assert job_id(key, "load") == job_id(key, "load")
    variants = {job_id(("p2", "t", "u", "f"), "load"), job_id(("p", "t2", "u", "f"), "load")}
    variants |= {job_id(("p", "t", "u2", "f"), "load"), job_id(("p", "t", "u", "f2"), "load")}
    variants.add(job_id(key, "merge"))
    assert job_id(key, "load") not in variants and len(variants) == 5


def test_staging_bucket_loads_from_gcs_and_removes_the_object(
    fake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gcp_storage_emulator.server import create_server
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from services.cli.stack import free_port

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
        gcs = storage.Client(project=PROJECT, credentials=AnonymousCredentials())
        bucket = gcs.create_bucket("stage-bucket")
        state, sink = fake
        seen: dict[str, Any] = {}

        def staged(body: dict[str, Any]) -> None:
            uri = body["configuration"]["load"]["sourceUris"][0]
            name = uri.removeprefix("gs://stage-bucket/")
            seen["uri"] = uri
            seen["rows"] = pq.read_table(io.BytesIO(bucket.blob(name).download_as_bytes())).num_rows

        state.on_insert = staged
        writer = writer_for(sink, staging_bucket="gs://stage-bucket/loads")
        writer._load(spool(writer), sink.table_id("sales"), "WRITE_APPEND", "load")
        expected = job_id(("pipe", "task", "unit-1", "fp-1"), "load")
        assert seen == {"uri": f"gs://stage-bucket/loads/{expected}.parquet", "rows": 3}
        assert not uploads_of(state)  # nothing went through the media upload endpoint
        assert list(gcs.list_blobs("stage-bucket")) == []
        writer.abort()
    finally:
        server.stop()
