"""An in-process orchestrator with tokens, a webhook receiver and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient

from services.cli.stack import free_port
from services.orchestrator.auth import hash_token
from services.orchestrator.settings import (
    AlertSettings,
    AuthSettings,
    ExecutionSettings,
    OrchestratorSettings,
    TokenEntry,
)
from tests.integration.orchestrate.conftest import auth, started_clients
from tests.integration.orchestrate.conftest import make_settings as base_settings
from tests.integration.orchestrate.conftest import wait_final as base_wait_final

OPERATOR = "extras-operator-token-0123456789"
VIEWER = "extras-viewer-token-0123456789"


@dataclass
class Inbox:
    """Everything the fake webhook and SMTP servers received."""

    webhooks: list[dict[str, Any]] = field(default_factory=list)
    mails: list[Message] = field(default_factory=list)
    webhook_status: int = 200

    def wait(self, predicate: Callable[[Inbox], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return
            time.sleep(0.1)
        raise AssertionError(f"not received within {timeout}s: {self.webhooks} {self.mails}")


@dataclass
class Receivers:
    inbox: Inbox
    webhook_url: str
    smtp_port: int


@pytest.fixture
def receivers() -> Iterator[Receivers]:
    inbox = Inbox()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            inbox.webhooks.append(json.loads(self.rfile.read(length)))
            self.send_response(inbox.webhook_status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=http.serve_forever, daemon=True).start()

    class Mailbox:
        async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
            inbox.mails.append(message_from_bytes(envelope.content))
            return "250 Message accepted for delivery"

    smtp_port = free_port()
    smtp = Controller(Mailbox(), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    yield Receivers(inbox, f"http://127.0.0.1:{http.server_address[1]}/hook", smtp_port)
    smtp.stop()
    http.shutdown()
    http.server_close()


def make_settings(tmp_path: Path, smtp_port: int = 25, **overrides: Any) -> OrchestratorSettings:
    values: dict[str, Any] = {
        "execution": ExecutionSettings(
            poll_seconds=0.1,
            heartbeat_seconds=0.2,
            heartbeat_timeout_seconds=60,  # no adoption of our own runs on a busy machine
            unit_retry_backoff_seconds=0.05,
        ),
        "auth": AuthSettings(
            tokens=[
                TokenEntry(name="ops", sha256=hash_token(OPERATOR), role="operator"),
                TokenEntry(name="dash", sha256=hash_token(VIEWER), role="viewer"),
            ]
        ),
        "alerts": AlertSettings(
            smtp_port=smtp_port, check_seconds=0.2, base_url="http://sluice.test"
        ),
    }
    values.update(overrides)
    return base_settings(tmp_path, **values)


@pytest.fixture
def orchestrator(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """``start(pipelines: {file: yaml}, smtp_port=..., **settings)``: a client with no token set."""
    with started_clients(tmp_path) as launch:

        def start(pipelines: dict[str, str], smtp_port: int = 25, **overrides: Any) -> TestClient:
            return launch(pipelines, make_settings(tmp_path, smtp_port, **overrides))

        yield start


def wait_final(client: TestClient, run_id: str, timeout: float = 60) -> dict[str, Any]:
    return base_wait_final(client, run_id, timeout, headers=auth(VIEWER))


def trigger(client: TestClient, pipeline: str) -> str:
    reply = client.post(f"/api/v1/pipelines/{pipeline}/runs", headers=auth(OPERATOR), json={})
    assert reply.status_code == 202, reply.text
    run_id: str = reply.json()["run_id"]
    return run_id
