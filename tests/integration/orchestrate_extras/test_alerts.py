"""Alerts end to end through the orchestrator: webhook (Slack JSON) and e-mail (real SMTP)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from tests.conftest import wait_for
from tests.integration.orchestrate_extras.conftest import (
    OPERATOR,
    VIEWER,
    Receivers,
    auth,
    trigger,
    wait_final,
)

PY = sys.executable


def job_pipeline(name: str, code: str, alerts: str) -> str:
    return f"""
name: {name}
alerts: {alerts}
tasks:
  - id: fetch
    type: job
    command: [{PY!r}, -c, {code!r}]
"""


FAILING = "import sys; print('portal answered 500'); sys.exit(3)"


def test_failed_run_alerts_by_webhook_and_email(
    orchestrator: Callable[..., TestClient], receivers: Receivers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXTRAS_ALERT_WEBHOOK", receivers.webhook_url)
    alerts = "{on: [failure], webhook: '${EXTRAS_ALERT_WEBHOOK}', email: [ops@example.com]}"
    client = orchestrator(
        {"p.yaml": job_pipeline("sales", FAILING, alerts)}, smtp_port=receivers.smtp_port
    )
    run_id = trigger(client, "sales")
    assert wait_final(client, run_id)["status"] == "failed"
    inbox = receivers.inbox
    inbox.wait(lambda i: len(i.webhooks) == 1 and len(i.mails) == 1)

    hook = inbox.webhooks[0]
    assert hook["sluice"] == {"kind": "failure", "pipeline": "sales", "run_id": run_id}
    assert f"run {run_id} failed" in hook["text"]
    assert "job exited with status 3" in hook["text"]
    assert "portal answered 500" in hook["text"]  # the job's last words
    assert f"http://sluice.test/runs/{run_id}" in hook["text"]
    assert hook["blocks"][0]["text"]["type"] == "mrkdwn"

    mail = inbox.mails[0]
    assert mail["To"] == "ops@example.com"
    assert mail["Subject"] == f"[sluice] failure: sales: run {run_id} failed"
    assert "task fetch: job exited with status 3" in mail.get_payload()


def test_successful_run_sends_no_failure_alert(
    orchestrator: Callable[..., TestClient], receivers: Receivers
) -> None:
    alerts = f"{{on: [failure], webhook: '{receivers.webhook_url}'}}"
    client = orchestrator({"p.yaml": job_pipeline("sales", "print('ok')", alerts)})
    run_id = trigger(client, "sales")
    assert wait_final(client, run_id)["status"] == "succeeded"
    # A test message goes through the same channel: only it may arrive, no failure alert.
    client.post("/api/v1/alerts/test", headers=auth(OPERATOR), json={"pipeline": "sales"})
    receivers.inbox.wait(lambda i: len(i.webhooks) >= 1)
    assert [h["sluice"]["kind"] for h in receivers.inbox.webhooks] == ["test"]


def test_run_past_its_sla_alerts_while_still_running(
    orchestrator: Callable[..., TestClient], receivers: Receivers
) -> None:
    alerts = f"{{on: [late], sla_minutes: 0.02, webhook: '{receivers.webhook_url}'}}"
    client = orchestrator({"p.yaml": job_pipeline("slow", "import time; time.sleep(6)", alerts)})
    run_id = trigger(client, "slow")
    receivers.inbox.wait(lambda i: len(i.webhooks) >= 1, timeout=20)
    run = client.get(f"/api/v1/runs/{run_id}", headers=auth(VIEWER)).json()
    assert run["status"] in ("queued", "running")  # alerted before the run ended
    hook = receivers.inbox.webhooks[0]
    assert hook["sluice"]["kind"] == "late"
    assert "missed its SLA of 0.02 minutes" in hook["text"]
    assert wait_final(client, run_id)["status"] == "succeeded"
    assert len(receivers.inbox.webhooks) == 1  # once per run, not once per check


def test_no_file_by_the_deadline_alerts_once(
    orchestrator: Callable[..., TestClient], receivers: Receivers
) -> None:
    alerts = f"{{on: [freshness], fresh_by: '00:00', webhook: '{receivers.webhook_url}'}}"
    orchestrator({"p.yaml": job_pipeline("daily", "print('ok')", alerts)})
    receivers.inbox.wait(lambda i: len(i.webhooks) >= 1, timeout=20)
    hook = receivers.inbox.webhooks[0]
    assert hook["sluice"]["kind"] == "freshness"
    assert "no new file loaded by 00:00 (UTC)" in hook["text"]
    time.sleep(1.0)  # five more checks at check_seconds=0.2
    assert len(receivers.inbox.webhooks) == 1


def test_alert_test_endpoint(orchestrator: Callable[..., TestClient], receivers: Receivers) -> None:
    client = orchestrator({}, smtp_port=receivers.smtp_port)
    body = {"webhook": receivers.webhook_url, "email": ["oncall@example.com"]}
    reply = client.post("/api/v1/alerts/test", headers=auth(OPERATOR), json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["results"] == {"webhook": "sent", "email": "sent"}
    assert receivers.inbox.webhooks[0]["sluice"]["kind"] == "test"
    assert receivers.inbox.mails[0]["Subject"].startswith("[sluice] test: test: test alert")

    receivers.inbox.webhook_status = 500
    reply = client.post("/api/v1/alerts/test", headers=auth(OPERATOR), json=body)
    assert reply.status_code == 502
    problem = reply.json()
    assert problem["code"] == "alert_delivery_failed"
    assert "webhook" in problem["detail"] and "answered 500" in problem["detail"]

    reply = client.post("/api/v1/alerts/test", headers=auth(OPERATOR), json={})
    assert reply.status_code == 422
    assert "no alert channel" in reply.json()["detail"]
    reply = client.post("/api/v1/alerts/test", headers=auth(OPERATOR), json={"pipeline": "nope"})
    assert reply.status_code == 404

    assert client.post("/api/v1/alerts/test", json=body).status_code == 401
    assert client.post("/api/v1/alerts/test", headers=auth(VIEWER), json=body).status_code == 403


def test_undeliverable_channel_is_counted_and_the_other_still_works(
    orchestrator: Callable[..., TestClient], receivers: Receivers
) -> None:
    labels = {"pipeline": "sales", "kind": "failure", "channel": "webhook", "outcome": "failed"}
    before = REGISTRY.get_sample_value("sluice_alerts_total", labels) or 0.0
    alerts = "{on: [failure], webhook: '${EXTRAS_UNSET_WEBHOOK}', email: [ops@example.com]}"
    client = orchestrator(
        {"p.yaml": job_pipeline("sales", FAILING, alerts)}, smtp_port=receivers.smtp_port
    )
    run = wait_final(client, trigger(client, "sales"))
    assert run["status"] == "failed"  # the alert problem does not change the run
    receivers.inbox.wait(lambda i: len(i.mails) == 1)
    counted = lambda: REGISTRY.get_sample_value("sluice_alerts_total", labels) != before  # noqa: E731
    wait_for(counted, 30, "the failed webhook delivery to be counted")
    assert REGISTRY.get_sample_value("sluice_alerts_total", labels) == before + 1
    scrape = client.get("/metrics").text
    assert (
        'sluice_alerts_total{channel="email",kind="failure",outcome="sent",pipeline="sales"}'
        in (scrape)
    )
