"""Units over real gRPC channels to small in-test servers: cancellation and vanished workers.

The servers implement just Discover, Status and Load; what is under test is the orchestrator's
side: that cancelling a run cancels the in-flight ``Load`` call (the server sees it), and that a
loader that vanishes mid-unit makes the task retry instead of hanging.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient

from services.cli.stack import free_port
from services.common.proto.sluice.v1 import (
    data_pb2,
    extractor_pb2,
    extractor_pb2_grpc,
    loader_pb2,
    loader_pb2_grpc,
)
from services.common.settings import UpstreamSettings
from tests.integration.orchestrate.conftest import wait_final

Start = Callable[..., TestClient]
PIPELINE = """\
name: units
retry_delay_seconds: 0.1
tasks:
  - id: load
    retries: {retries}
    source: {{uri: "file:///nowhere/*.csv", format: csv}}
    destination: {{uri: "duckdb:///unused.duckdb", table: t}}
"""


@dataclass
class FakeDataPlane(extractor_pb2_grpc.ExtractorServicer, loader_pb2_grpc.LoaderServicer):
    behaviour: str = "hang"  # hang | vanish
    load_started: threading.Event = field(default_factory=threading.Event)
    load_cancelled: threading.Event = field(default_factory=threading.Event)
    loads: int = 0

    def Discover(self, request: Any, context: Any) -> Any:
        unit = data_pb2.Unit(id="file:///nowhere/a.csv", fingerprint="1", format="csv")
        return extractor_pb2.DiscoverResponse(units=[unit])

    def Status(self, request: Any, context: Any) -> Any:
        return loader_pb2.StatusResponse()

    def Load(self, request: Any, context: Any) -> Any:
        self.loads += 1
        self.load_started.set()
        if self.behaviour == "vanish" and self.loads <= 3:
            # What a client sees when the loader pod disappears mid-stream. The channel itself
            # retries UNAVAILABLE up to 3 times; only then does the task attempt fail.
            context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset by peer")
        if self.behaviour == "hang":
            done = threading.Event()
            context.add_callback(lambda: (self.load_cancelled.set(), done.set()))
            done.wait(60)
            return loader_pb2.LoadResponse()
        return loader_pb2.LoadResponse(rows_in=5, rows_loaded=5, batches=1)


@pytest.fixture
def dataplane() -> Iterator[tuple[FakeDataPlane, int]]:
    fake = FakeDataPlane()
    port = free_port()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    extractor_pb2_grpc.add_ExtractorServicer_to_server(fake, server)
    loader_pb2_grpc.add_LoaderServicer_to_server(fake, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    yield fake, port
    server.stop(0)


def start(orchestrator: Start, port: int, retries: int) -> TestClient:
    target = UpstreamSettings(target=f"127.0.0.1:{port}")
    return orchestrator(
        {"u.yaml": PIPELINE.format(retries=retries)}, loader=target, extractor=target
    )


def test_cancel_reaches_the_in_flight_load_call(
    orchestrator: Start, dataplane: tuple[FakeDataPlane, int]
) -> None:
    fake, port = dataplane
    client = start(orchestrator, port, retries=0)
    run_id = client.post("/api/v1/pipelines/units/runs").json()["run_id"]
    assert fake.load_started.wait(30)
    client.post(f"/api/v1/runs/{run_id}/cancel")
    assert wait_final(client, run_id)["status"] == "cancelled"
    assert fake.load_cancelled.wait(10), "the loader never saw the cancellation"


def test_a_loader_vanishing_mid_unit_is_retried(
    orchestrator: Start, dataplane: tuple[FakeDataPlane, int]
) -> None:
    fake, port = dataplane
    fake.behaviour = "vanish"
    client = start(orchestrator, port, retries=2)
    run_id = client.post("/api/v1/pipelines/units/runs").json()["run_id"]
    run = wait_final(client, run_id)
    assert run["status"] == "succeeded"
    task = run["tasks"][0]
    assert task["attempts"] == 2
    assert [u["status"] for u in task["units"]] == ["failed", "succeeded"]
    assert "connection reset" in task["units"][0]["error"]
    assert run["totals"]["rows_loaded"] == 5
    assert fake.loads == 4
