"""Alerts: a Slack-compatible webhook and e-mail, on failure, rejects, lateness and freshness.

A pipeline opts in with its ``alerts`` block::

    alerts:
      on: [failure, rejects, late, freshness]
      webhook: ${SALES_ALERT_WEBHOOK}     # resolved from the orchestrator's environment
      email: [data-team@example.com]
      rejects_threshold: 100              # "rejects": more rejected rows than this in one run
      sla_minutes: 90                     # "late": a run not finished 90 minutes after creation
      fresh_by: "09:30"                   # "freshness": no new file loaded today by 09:30

``failure``, ``rejects`` and ``success`` are checked when a run ends (an executor hook). ``late``
and ``freshness`` are checked by a loop on the replica holding the scheduler lease. Each alert is
sent once: per run and kind, and for freshness per pipeline and day. A failed delivery is logged
and never fails the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import smtplib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from email.message import EmailMessage
from typing import Any, Literal
from zoneinfo import ZoneInfo

import httpx

from services.common.errors import BadInput, SluiceError, Transient
from services.common.spec.model import Alerts, Pipeline
from services.common.spec.render import SecretResolver, redact
from services.orchestrator import metrics
from services.orchestrator.loops import repeat
from services.orchestrator.settings import AlertSettings

log = logging.getLogger(__name__)

AlertKind = Literal["failure", "rejects", "late", "freshness", "success", "test"]
ICONS: dict[str, str] = {
    "failure": ":red_circle:",
    "rejects": ":warning:",
    "late": ":hourglass:",
    "freshness": ":zzz:",
    "success": ":large_green_circle:",
    "test": ":bell:",
}
HTTP_TIMEOUT = 10.0


class AlertDeliveryFailed(Transient):
    """A webhook or SMTP server did not take the alert."""

    code = "alert_delivery_failed"
    http_status = 502


@dataclass(frozen=True)
class Alert:
    """One message, rendered the same way for every channel."""

    kind: AlertKind
    pipeline: str
    summary: str
    details: list[str] = field(default_factory=list)
    run_id: str | None = None
    url: str | None = None

    @property
    def subject(self) -> str:
        return f"[sluice] {self.kind}: {self.pipeline}: {self.summary}"

    def text(self) -> str:
        lines = [f"{ICONS[self.kind]} *{self.pipeline}*: {self.summary}", *self.details]
        if self.url:
            lines.append(f"<{self.url}|run page>")
        return "\n".join(lines)

    def slack_payload(self) -> dict[str, Any]:
        """Slack incoming-webhook JSON (``text`` is also what Mattermost and Teams read)."""
        return {
            "text": self.text(),
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": self.text()}}],
            "sluice": {"kind": self.kind, "pipeline": self.pipeline, "run_id": self.run_id},
        }

    def email(self, sender: str, recipients: list[str]) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = self.subject
        message["From"] = sender
        message["To"] = ", ".join(recipients)
        body = [self.summary, "", *self.details]
        if self.url:
            body += ["", self.url]
        message.set_content("\n".join(body) + "\n")
        return message


class AlertSender:
    """Delivers alerts to a pipeline's webhook and e-mail recipients."""

    def __init__(self, settings: AlertSettings, secrets: SecretResolver) -> None:
        self.settings = settings
        self.secrets = secrets

    async def send(self, targets: Alerts, alert: Alert) -> dict[str, str]:
        """Send to every configured channel; returns ``{channel: "sent" | error message}``."""
        results: dict[str, str] = {}
        if targets.webhook:
            results["webhook"] = await self._attempt(self._post_webhook(targets.webhook, alert))
        if targets.email:
            results["email"] = await self._attempt(
                asyncio.to_thread(self._send_email, targets.email, alert)
            )
        for channel, outcome in results.items():
            sent = "sent" if outcome == "sent" else "failed"
            metrics.ALERTS.labels(alert.pipeline, alert.kind, channel, sent).inc()
            if outcome == "sent":
                log.info("%s alert for %s sent by %s", alert.kind, alert.pipeline, channel)
            else:
                log.error(
                    "%s alert for %s not sent by %s: %s",
                    alert.kind,
                    alert.pipeline,
                    channel,
                    outcome,
                )
        return results

    @staticmethod
    async def _attempt(delivery: Any) -> str:
        try:
            await delivery
        except SluiceError as exc:
            return exc.message
        return "sent"

    async def _post_webhook(self, reference: str, alert: Alert) -> None:
        url = self.secrets.resolve(reference)
        try:
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
                reply = await client.post(url, json=alert.slack_payload())
        except httpx.HTTPError as exc:
            raise AlertDeliveryFailed(f"webhook {redact(url)} unreachable: {exc}") from None
        if reply.status_code >= 300:
            raise AlertDeliveryFailed(
                f"webhook {redact(url)} answered {reply.status_code}: {reply.text[:200]}"
            )

    def _send_email(self, recipients: list[str], alert: Alert) -> None:
        to = [self.secrets.resolve(r) for r in recipients]
        s = self.settings
        try:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=HTTP_TIMEOUT) as smtp:
                if s.smtp_starttls:
                    smtp.starttls()
                if s.smtp_username:
                    smtp.login(s.smtp_username, self.secrets.resolve(s.smtp_password or ""))
                smtp.send_message(alert.email(s.email_from, to))
        except (OSError, smtplib.SMTPException) as exc:
            raise AlertDeliveryFailed(
                f"SMTP {s.smtp_host}:{s.smtp_port} did not take the e-mail: {exc}"
            ) from None


def run_alerts(pipeline: Pipeline, run: Mapping[str, Any], base_url: str) -> list[Alert]:
    """The alerts a finished run raises under its pipeline's ``alerts`` block."""
    config = pipeline.alerts
    if config is None:
        return []
    url = f"{base_url.rstrip('/')}/runs/{run['run_id']}"
    found: list[Alert] = []
    failed_tasks = [t for t in run["tasks"] if t["status"] == "failed"]
    if "failure" in config.on and run["status"] == "failed":
        details = [f"task {t['task_id']}: {_excerpt(t['error'])}" for t in failed_tasks]
        found.append(
            Alert(
                "failure",
                pipeline.name,
                f"run {run['run_id']} failed",
                details or [run.get("error") or ""],
                run["run_id"],
                url,
            )
        )
    rejected = sum(t.get("rows_rejected", 0) for t in run["tasks"])
    if "rejects" in config.on and rejected > config.rejects_threshold:
        per_task = [
            f"task {t['task_id']}: {t['rows_rejected']} rejected rows"
            for t in run["tasks"]
            if t.get("rows_rejected")
        ]
        found.append(
            Alert(
                "rejects",
                pipeline.name,
                f"{rejected} rows rejected (threshold {config.rejects_threshold})",
                per_task,
                run["run_id"],
                url,
            )
        )
    if "success" in config.on and run["status"] == "succeeded":
        loaded = sum(t.get("rows_loaded", 0) for t in run["tasks"])
        found.append(
            Alert(
                "success",
                pipeline.name,
                f"run succeeded, {loaded} rows loaded",
                [],
                run["run_id"],
                url,
            )
        )
    late = late_alert(pipeline, run, datetime.now(UTC), base_url)
    if late:
        found.append(late)
    return found


def late_alert(
    pipeline: Pipeline, run: Mapping[str, Any], now: datetime, base_url: str
) -> Alert | None:
    """An alert when ``run`` has not finished ``sla_minutes`` after it was created."""
    config = pipeline.alerts
    if config is None or "late" not in config.on or config.sla_minutes is None:
        return None
    created = datetime.fromisoformat(run["created_at"])
    deadline = created + timedelta(minutes=config.sla_minutes)
    finished = datetime.fromisoformat(run["finished_at"]) if run.get("finished_at") else None
    if (finished or now) <= deadline:
        return None
    state = "finished" if finished else "still " + run["status"]
    return Alert(
        "late",
        pipeline.name,
        f"run {run['run_id']} missed its SLA of {config.sla_minutes:g} minutes ({state})",
        [f"created {run['created_at']}, deadline {deadline.isoformat()}"],
        run["run_id"],
        f"{base_url.rstrip('/')}/runs/{run['run_id']}",
    )


def freshness_due(pipeline: Pipeline, now: datetime) -> tuple[datetime, datetime] | None:
    """``(local midnight, deadline)`` in UTC when today's ``fresh_by`` time has passed."""
    config = pipeline.alerts
    if config is None or "freshness" not in config.on or config.fresh_by is None:
        return None
    zone = ZoneInfo(pipeline.timezone)
    local = now.astimezone(zone)
    hour, minute = (int(p) for p in config.fresh_by.split(":"))
    midnight = datetime.combine(local.date(), time(0, 0), zone)
    deadline = datetime.combine(local.date(), time(hour, minute), zone)
    if local < deadline:
        return None
    return midnight.astimezone(UTC), deadline.astimezone(UTC)


def _excerpt(text: str | None, last_lines: int = 5) -> str:
    """The first line of an error and, for a long one, its last lines (a job's output tail)."""
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    if len(lines) <= last_lines + 1:
        return "\n".join(lines)[:1500]
    return "\n".join([lines[0], "...", *lines[-last_lines:]])[:1500]


class AlertMonitor:
    """Raises alerts: a run-finished hook plus a loop for lateness and freshness."""

    def __init__(
        self,
        sender: AlertSender,
        pipelines: Callable[[], Mapping[str, Pipeline]],
        store: Any,
        settings: AlertSettings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sender = sender
        self.pipelines = pipelines
        self.store = store
        self.settings = settings
        self.clock = clock
        self.sent: set[tuple[str, ...]] = set()
        """Keys of alerts already sent by this replica (a run and kind; a pipeline and day)."""

    async def on_run_finished(self, run: dict[str, Any]) -> None:
        pipeline = self.pipelines().get(run["pipeline"])
        if pipeline is None or pipeline.alerts is None:
            return
        for alert in run_alerts(pipeline, run, self.settings.base_url):
            # Shielded: the run's own task may be cancelled (shutdown) while the alert is out.
            await asyncio.shield(
                self._send_once((run["run_id"], alert.kind), pipeline.alerts, alert)
            )

    async def check(self) -> None:
        """One pass of the lateness and freshness checks."""
        now = self.clock()
        for pipeline in list(self.pipelines().values()):
            if pipeline.alerts is None:
                continue
            with contextlib.suppress(SluiceError):
                await self._check_late(pipeline, now)
                await self._check_freshness(pipeline, now)

    async def loop(self, is_leader: Callable[[], bool]) -> None:
        """Check every ``check_seconds`` while this replica holds the scheduler lease."""

        async def step() -> None:
            if is_leader():
                await self.check()

        await repeat(step, self.settings.check_seconds, "alert checks failed")

    async def _check_late(self, pipeline: Pipeline, now: datetime) -> None:
        assert pipeline.alerts is not None
        if "late" not in pipeline.alerts.on:
            return
        for status in ("queued", "running"):
            runs = await asyncio.to_thread(
                self.store.list_runs, pipeline=pipeline.name, status=status, limit=100
            )
            for run in runs:
                alert = late_alert(pipeline, run, now, self.settings.base_url)
                if alert:
                    await self._send_once((run["run_id"], "late"), pipeline.alerts, alert)

    async def _check_freshness(self, pipeline: Pipeline, now: datetime) -> None:
        assert pipeline.alerts is not None
        window = freshness_due(pipeline, now)
        if window is None:
            return
        midnight, deadline = window
        key = (pipeline.name, "freshness", midnight.date().isoformat())
        if key in self.sent:
            return
        loaded = await asyncio.to_thread(self.store.units_loaded_since, pipeline.name, midnight)
        if loaded:
            return
        alert = Alert(
            "freshness",
            pipeline.name,
            f"no new file loaded by {pipeline.alerts.fresh_by} ({pipeline.timezone})",
            [
                f"no unit was loaded since {midnight.isoformat()}; checked at {now.isoformat()}",
                f"deadline was {deadline.isoformat()}",
            ],
            url=self.settings.base_url,
        )
        await self._send_once(key, pipeline.alerts, alert)

    async def _send_once(self, key: tuple[str, ...], targets: Alerts, alert: Alert) -> None:
        if key in self.sent:
            return
        self.sent.add(key)
        await self.sender.send(targets, alert)


async def send_test(sender: AlertSender, targets: Alerts, pipeline: str) -> dict[str, str]:
    """Send a test message to ``targets``; raises when no channel is configured."""
    if not targets.webhook and not targets.email:
        raise BadInput(
            "no alert channel: give a webhook or e-mail recipients, or a pipeline "
            "whose alerts block has them"
        )
    alert = Alert(
        "test",
        pipeline,
        "test alert: this channel receives Sluice alerts",
        [f"sent at {datetime.now(UTC).isoformat(timespec='seconds')}"],
    )
    return await sender.send(targets, alert)
