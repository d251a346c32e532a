"""``POST /api/v1/events/gcs``: Pub/Sub push messages for GCS object-finalize events."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from tests.integration.orchestrate_extras.conftest import OPERATOR, VIEWER, auth

# Runs are created but their etl tasks cannot reach a bucket here; this checks the triggering.
PIPELINES = {
    "sales.yaml": """
name: sales
tasks:
  - id: load
    source: {uri: "gs://landing/sales/*/day_*.csv", format: csv}
    destination: {uri: "duckdb:///x.duckdb", table: sales}
""",
    "stock.yaml": """
name: stock
tasks:
  - id: load
    source: {uri: "gs://landing/stock/{{ ds }}.csv", format: csv}
    destination: {uri: "duckdb:///x.duckdb", table: stock}
""",
    "other_bucket.yaml": """
name: other-bucket
tasks:
  - id: load
    source: {uri: "gs://elsewhere/sales/*/day_*.csv", format: csv}
    destination: {uri: "duckdb:///x.duckdb", table: sales}
""",
}


def push(name: str, generation: str, event: str = "OBJECT_FINALIZE") -> dict[str, Any]:
    """A push body as Pub/Sub sends it for a GCS notification (payload JSON_API_V1)."""
    resource = {
        "kind": "storage#object",
        "bucket": "landing",
        "name": name,
        "generation": generation,
        "size": "1024",
    }
    return {
        "message": {
            "attributes": {
                "bucketId": "landing",
                "objectId": name,
                "objectGeneration": generation,
                "eventType": event,
                "payloadFormat": "JSON_API_V1",
            },
            "data": base64.b64encode(json.dumps(resource).encode()).decode(),
            "messageId": "1234567890",
            "publishTime": "2026-11-24T05:00:00Z",
        },
        "subscription": "projects/p/subscriptions/sluice-gcs",
    }


def post(client: TestClient, body: dict[str, Any], token: str = OPERATOR) -> Any:
    return client.post(f"/api/v1/events/gcs?token={token}", json=body)


def test_finalize_runs_matching_pipelines_once_per_generation(
    orchestrator: Callable[..., TestClient],
) -> None:
    client = orchestrator(PIPELINES)
    first = post(client, push("sales/2026-11/day_23.csv", "1700000000000001"))
    assert first.status_code == 200, first.text
    runs = first.json()["runs"]
    assert [(r["pipeline"], r["created"]) for r in runs] == [("sales", True)]
    run = client.get(f"/api/v1/runs/{runs[0]['run_id']}", headers=auth(VIEWER)).json()
    assert run["trigger"] == "event"
    assert run["params"]["gcs_uri"] == "gs://landing/sales/2026-11/day_23.csv"
    assert run["params"]["gcs_generation"] == "1700000000000001"

    # Pub/Sub delivers at least once: the same generation is the same run.
    again = post(client, push("sales/2026-11/day_23.csv", "1700000000000001")).json()["runs"]
    assert again == [{**runs[0], "created": False, "status": again[0]["status"]}]
    # A new upload under the same name is a new generation: a new run.
    newer = post(client, push("sales/2026-11/day_23.csv", "1700000000000002")).json()["runs"]
    assert newer[0]["created"] is True and newer[0]["run_id"] != runs[0]["run_id"]

    listed = client.get("/api/v1/runs?pipeline=sales", headers=auth(VIEWER)).json()["runs"]
    assert len(listed) == 2


def test_templated_source_and_non_matching_objects(
    orchestrator: Callable[..., TestClient],
) -> None:
    client = orchestrator(PIPELINES)
    runs = post(client, push("stock/2026-11-23.csv", "5")).json()["runs"]
    assert [r["pipeline"] for r in runs] == ["stock"]
    reply = post(client, push("archive/sales/2026-11/day_23.csv", "5"))
    assert reply.status_code == 200  # acknowledged, or Pub/Sub would redeliver forever
    assert reply.json()["runs"] == []


def test_other_events_are_acknowledged_and_ignored(
    orchestrator: Callable[..., TestClient],
) -> None:
    client = orchestrator(PIPELINES)
    reply = post(client, push("sales/2026-11/day_23.csv", "7", event="OBJECT_DELETE"))
    assert reply.status_code == 200
    assert reply.json() == {"ignored": "event type OBJECT_DELETE", "runs": []}
    assert client.get("/api/v1/runs", headers=auth(VIEWER)).json()["runs"] == []


def test_bad_messages_and_auth(orchestrator: Callable[..., TestClient]) -> None:
    client = orchestrator(PIPELINES)
    body = push("sales/2026-11/day_23.csv", "9")
    assert client.post("/api/v1/events/gcs", json=body).status_code == 401
    assert post(client, body, token="wrong").status_code == 401
    assert post(client, body, token=VIEWER).status_code == 403
    # The bearer header works as well as the query parameter.
    assert client.post("/api/v1/events/gcs", json=body, headers=auth(OPERATOR)).status_code == 200

    reply = post(client, {"message": {"attributes": {"eventType": "OBJECT_FINALIZE"}}})
    assert reply.status_code == 422
    assert "missing bucketId, objectId, objectGeneration" in reply.json()["detail"]
    reply = post(client, {"message": {"data": "%%%not-base64"}})
    assert reply.status_code == 422
    assert "not base64-encoded JSON" in reply.json()["detail"]
    assert post(client, {"nothing": 1}).status_code == 422
