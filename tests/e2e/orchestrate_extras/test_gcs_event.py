"""A GCS object-finalize push runs the matching pipeline through the real stack (GCS emulator)."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from tests.conftest import wait_for_run


@pytest.fixture
def bucket() -> Iterator[tuple[str, Any]]:
    from gcp_storage_emulator.server import create_server
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    url = f"http://127.0.0.1:{port}"
    client = storage.Client(
        project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": url}
    )
    yield url, client.create_bucket("landing")
    server.stop()


def push(blob: Any) -> dict[str, Any]:
    resource = {"bucket": blob.bucket.name, "name": blob.name, "generation": str(blob.generation)}
    return {
        "message": {
            "attributes": {
                "eventType": "OBJECT_FINALIZE",
                "bucketId": blob.bucket.name,
                "objectId": blob.name,
                "objectGeneration": str(blob.generation),
            },
            "data": base64.b64encode(json.dumps(resource).encode()).decode(),
            "messageId": "1",
        }
    }


def test_object_finalize_runs_the_pipeline_once_per_generation(
    stack_factory: Any, tmp_path: Path, bucket: tuple[str, Any]
) -> None:
    emulator, landing = bucket
    database = tmp_path / "events.duckdb"
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "sales.yaml").write_text(f"""
name: sales-events
tasks:
  - id: load
    source: {{uri: "gs://landing/sales/*.csv", format: csv}}
    destination: {{uri: "duckdb:///{database}", table: sales, mode: append}}
""")
    stack = stack_factory(
        pipelines, service_env={"extractor": {"SLUICE_GCS__EMULATOR_HOST": emulator}}
    )
    first = landing.blob("sales/2026-11-23.csv")
    first.upload_from_string("id,amount\n1,9.50\n2,3.25\n", content_type="text/csv")
    first.reload()

    reply = httpx.post(f"{stack.url}/api/v1/events/gcs", json=push(first), timeout=10)
    assert reply.status_code == 200, reply.text
    (created,) = reply.json()["runs"]
    assert created["created"] is True
    run = wait_for_run(stack.url, created["run_id"])
    assert run["status"] == "succeeded", run
    assert run["trigger"] == "event"
    assert run["totals"]["rows_loaded"] == 2

    # Redelivery of the same message: the same run, nothing loaded twice.
    again = httpx.post(f"{stack.url}/api/v1/events/gcs", json=push(first), timeout=10).json()
    assert again["runs"][0]["run_id"] == created["run_id"]
    assert again["runs"][0]["created"] is False

    second = landing.blob("sales/2026-11-24.csv")
    second.upload_from_string("id,amount\n3,1.00\n", content_type="text/csv")
    second.reload()
    reply = httpx.post(f"{stack.url}/api/v1/events/gcs", json=push(second), timeout=10).json()
    run = wait_for_run(stack.url, reply["runs"][0]["run_id"])
    assert run["status"] == "succeeded"
    assert run["totals"]["rows_loaded"] == 1  # only the new object; the first is in the ledger

    with duckdb.connect(str(database), read_only=True) as con:
        assert con.execute("SELECT count(*), sum(amount) FROM sales").fetchone() == (3, 13.75)
