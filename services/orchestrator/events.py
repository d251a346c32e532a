"""``POST /api/v1/events/gcs``: run the pipelines whose source matches a newly written GCS object.

Point a GCS bucket notification (``OBJECT_FINALIZE``, payload ``JSON_API_V1``) at a Pub/Sub topic
and give its push subscription the endpoint
``https://<orchestrator>/api/v1/events/gcs?token=<operator token>`` (Pub/Sub push cannot send a
custom ``Authorization`` header; the bearer header works as well).

Every pipeline with an ``etl`` task whose ``source.uri`` is ``gs://<bucket>/<glob>`` matching the
object gets one run per object generation: the idempotency key is derived from bucket, object and
generation, so a redelivered message (Pub/Sub delivers at least once) returns the same run. A new
upload of the same name is a new generation and runs again. The run's params carry the object
(``params.gcs_uri``, ``params.gcs_bucket``, ``params.gcs_object``, ``params.gcs_generation``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import fnmatch
import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from services.common.errors import BadInput, Forbidden
from services.common.spec.model import EtlTask, Pipeline
from services.orchestrator.auth import ROLE_RANK, Authenticator, Principal
from services.orchestrator.runtime import Runtime
from services.orchestrator.triggers import queue_run

router = APIRouter(prefix="/api/v1", tags=["events"])
FINALIZE = "OBJECT_FINALIZE"
_TEMPLATE = re.compile(r"\{\{[^}]*\}\}")
_bearer = HTTPBearer(auto_error=False)


def operator_by_header_or_query(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    token: Annotated[str | None, Query(description="operator token, for Pub/Sub push")] = None,
) -> Principal:
    """An operator token from ``Authorization: Bearer`` or the ``token`` query parameter."""
    authenticator: Authenticator = request.app.state.authenticator
    principal = authenticator.authenticate(credentials.credentials if credentials else token)
    if ROLE_RANK[principal.role] < ROLE_RANK["operator"]:
        raise Forbidden(f"token {principal.name!r} has role {principal.role}; this needs operator")
    return principal


class PubSubMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    data: str = ""
    attributes: dict[str, str] = Field(default_factory=dict)
    message_id: str | None = Field(default=None, alias="messageId")


class PushEnvelope(BaseModel):
    """The body Pub/Sub POSTs to a push endpoint."""

    model_config = ConfigDict(extra="allow")

    message: PubSubMessage
    subscription: str | None = None


def gcs_object(message: PubSubMessage) -> tuple[str, str, str, str]:
    """``(event type, bucket, object name, generation)`` from a GCS notification message."""
    attrs = message.attributes
    resource: dict[str, Any] = {}
    if message.data:
        try:
            decoded = json.loads(base64.b64decode(message.data, validate=True))
        except (binascii.Error, ValueError):
            raise BadInput(
                "message.data is not base64-encoded JSON (payload JSON_API_V1)"
            ) from None
        if isinstance(decoded, dict):
            resource = decoded
    event = attrs.get("eventType", "")
    bucket = attrs.get("bucketId") or str(resource.get("bucket") or "")
    name = attrs.get("objectId") or str(resource.get("name") or "")
    generation = attrs.get("objectGeneration") or str(resource.get("generation") or "")
    missing = [
        k
        for k, v in (
            ("eventType", event),
            ("bucketId", bucket),
            ("objectId", name),
            ("objectGeneration", generation),
        )
        if not v
    ]
    if missing:
        raise BadInput(f"not a GCS notification: missing {', '.join(missing)}")
    return event, bucket, name, generation


def source_matches(uri: str, bucket: str, name: str) -> bool:
    """Whether ``gs://bucket/name`` is one of the objects a source URI (a glob) covers.

    ``{{ ds }}``-style templates match anything, since the run's date is not known yet.
    """
    if not uri.startswith("gs://"):
        return False
    source_bucket, _, pattern = uri.removeprefix("gs://").partition("/")
    if source_bucket != bucket:
        return False
    return fnmatch.fnmatchcase(name, _TEMPLATE.sub("*", pattern))


def matching_pipelines(pipelines: list[Pipeline], bucket: str, name: str) -> list[Pipeline]:
    return [
        p
        for p in pipelines
        if any(
            isinstance(t, EtlTask) and source_matches(t.source.uri, bucket, name) for t in p.tasks
        )
    ]


def idempotency_key(bucket: str, name: str, generation: str) -> str:
    """One key per object generation (hashed: object names may be 1024 bytes long)."""
    digest = hashlib.sha256(f"{bucket}\0{name}\0{generation}".encode()).hexdigest()
    return f"gcs:{digest}"


@router.post("/events/gcs", dependencies=[Depends(operator_by_header_or_query)])
async def gcs_event(envelope: PushEnvelope, request: Request) -> dict[str, Any]:
    """Run the pipelines whose ``gs://`` source matches the finalized object, once per generation.

    Other event types (delete, metadata update, archive) are acknowledged and ignored.
    """
    event, bucket, name, generation = gcs_object(envelope.message)
    if event != FINALIZE:
        return {"ignored": f"event type {event}", "runs": []}
    runtime: Runtime = request.app.state.runtime
    key = idempotency_key(bucket, name, generation)
    params = {
        "gcs_uri": f"gs://{bucket}/{name}",
        "gcs_bucket": bucket,
        "gcs_object": name,
        "gcs_generation": generation,
    }
    runs = []
    for pipeline in matching_pipelines(list(runtime.registry.pipelines.values()), bucket, name):
        created = await asyncio.to_thread(
            queue_run,
            runtime.store,
            pipeline,
            trigger="event",
            logical_date=datetime.now(UTC),
            params=params,
            idempotency_key=key,
            max_queued=runtime.settings.execution.max_queued_runs,
        )
        runs.append(
            {
                "pipeline": pipeline.name,
                "run_id": created.run["run_id"],
                "status": created.run["status"],
                "created": created.created,
            }
        )
    if any(r["created"] for r in runs):
        runtime.executor.wake()
    return {"object": params["gcs_uri"], "generation": generation, "runs": runs}
