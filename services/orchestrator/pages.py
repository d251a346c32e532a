"""The run page: server-rendered HTML, no JavaScript, no external assets.

``/`` lists what is running, what failed, what runs next and every pipeline with its last run;
``/runs/{id}`` shows one run's tasks and units with row counts, rejects, errors and timings. Both
reload themselves with ``<meta http-equiv="refresh">`` (the run page only while the run is active).

Pages need a ``viewer`` token like the API. A browser cannot send a bearer header by itself, so
the token may also come from the ``sluice_token`` cookie, set by the small login form shown
instead of a page when no valid token came with the request.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security.utils import get_authorization_scheme_param

from services.common.errors import SluiceError, Unauthorized
from services.orchestrator.api import pipeline_summary
from services.orchestrator.auth import Authenticator, Principal
from services.orchestrator.runtime import Runtime
from services.orchestrator.state.models import FINAL_STATUSES

router = APIRouter(include_in_schema=False)
COOKIE = "sluice_token"
REFRESH_SECONDS = 5
RECENT_FAILURES = 10

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d2430;background:#fafbfc}
h1{font-size:20px;margin:0 0 .2em}h2{font-size:16px;margin:1.4em 0 .4em}
table{border-collapse:collapse;width:100%;background:#fff;margin-bottom:.6em}
th,td{border:1px solid #d8dee4;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f4;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.s{display:inline-block;padding:0 6px;border-radius:3px;font-size:12px;font-weight:600}
.succeeded{background:#d4f4dd;color:#14532d}.failed{background:#fde2e1;color:#7f1d1d}
.running{background:#dbeafe;color:#1e3a8a}.queued{background:#f3f4f6;color:#374151}
.cancelled,.skipped{background:#fef3c7;color:#78350f}
pre{margin:0;white-space:pre-wrap;font-size:12px;max-height:12em;overflow:auto}
.muted{color:#6b7280}a{color:#1d4ed8}
"""


def _authenticate(request: Request) -> Principal:
    authenticator: Authenticator = request.app.state.authenticator
    scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
    if scheme.lower() != "bearer" or not token:
        token = request.cookies.get(COOKIE, "")
    return authenticator.authenticate(token or None)


def _page(title: str, body: str, refresh: bool, status: int = 200) -> HTMLResponse:
    meta = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' if refresh else ""
    html = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{meta}'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>{body}"
        f'<p class="muted">Rendered {datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")} UTC'
        f"{f' · refreshes every {REFRESH_SECONDS}s' if refresh else ''}</p></body></html>"
    )
    return HTMLResponse(html, status_code=status)


def _login(message: str) -> HTMLResponse:
    body = (
        "<h1>Sluice</h1>"
        f"<p>{escape(message)}</p>"
        '<form method="post" action="/login"><label>API token (viewer or operator) '
        '<input type="password" name="token" autocomplete="off" required></label> '
        '<button type="submit">Sign in</button></form>'
    )
    return _page("Sluice: sign in", body, refresh=False, status=401)


def badge(status: str | None) -> str:
    value = escape(status or "none")
    return f'<span class="s {value}">{value}</span>'


def _when(value: str | None) -> str:
    if not value:
        return '<span class="muted">-</span>'
    return escape(datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"))


def _seconds(start: str | None, end: str | None) -> str:
    if not start:
        return ""
    finish = datetime.fromisoformat(end) if end else datetime.now(UTC)
    total = (finish - datetime.fromisoformat(start)).total_seconds()
    return f"{total:.1f}s" if total < 120 else f"{total / 60:.1f}min"


def _run_link(run: dict[str, Any]) -> str:
    run_id = escape(run["run_id"])
    return f'<a href="/runs/{run_id}">{run_id[:12]}</a>'


def _table(headers: list[str], rows: list[str], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _runs_table(runs: list[dict[str, Any]], empty: str) -> str:
    rows = [
        f"<tr><td>{_run_link(r)}</td><td>{escape(r['pipeline'])}</td><td>{badge(r['status'])}</td>"
        f"<td>{escape(r['trigger'])}</td><td>{_when(r['created_at'])}</td>"
        f"<td class=n>{_seconds(r['started_at'], r['finished_at'])}</td>"
        f"<td>{_run_errors(r)}</td></tr>"
        for r in runs
    ]
    headers = ["run", "pipeline", "status", "trigger", "created (UTC)", "duration", "error"]
    return _table(headers, rows, empty)


def _run_errors(run: dict[str, Any]) -> str:
    """The run's error and the first line of each failed task's error."""
    lines = [_first_line(run.get("error"))]
    lines += [
        f"{t['task_id']}: {_first_line(t['error'])}"
        for t in run.get("tasks", [])
        if t["status"] == "failed" and t["error"]
    ]
    return "<br>".join(escape(line) for line in lines if line)


def _first_line(text: str | None) -> str:
    stripped = (text or "").strip()
    return stripped.splitlines()[0][:200] if stripped else ""


def index_html(runtime: Runtime) -> tuple[str, bool]:
    """The overview page body (runs on a worker thread: it reads the state DB)."""
    store = runtime.store
    active = store.list_runs(status="running", limit=100) + store.list_runs(
        status="queued", limit=100
    )
    failed = store.list_runs(status="failed", limit=RECENT_FAILURES)
    summaries = [pipeline_summary(p, runtime) for p in runtime.registry.pipelines.values()]
    upcoming = sorted(
        ((s["next_runs"][0], s["name"]) for s in summaries if s["next_runs"]), key=lambda x: x[0]
    )
    pipeline_rows = []
    for s in sorted(summaries, key=lambda s: s["name"]):
        last = s["last_run"]
        last_cells = (
            f"<td>{badge(last['status'])} {_run_link(last)}</td>"
            f"<td>{_when(last['created_at'])}</td>"
            if last
            else '<td class="muted">never run</td><td></td>'
        )
        next_run = _when(s["next_runs"][0]) if s["next_runs"] else '<span class="muted">-</span>'
        pipeline_rows.append(
            f"<tr><td>{escape(s['name'])}</td><td>{escape(s['schedule'] or 'manual')}"
            f" <span class=muted>{escape(s['timezone'])}</span></td>{last_cells}"
            f"<td>{next_run}</td><td>{escape(s['description'])}</td></tr>"
        )
    invalid = "".join(
        f"<li><b>{escape(path)}</b>: {escape(err.message)}</li>"
        for path, err in runtime.registry.errors.items()
    )
    body = (
        f"<h1>Sluice runs</h1><p class=muted>{len(summaries)} pipelines · "
        f"{len(active)} active · replica {escape(runtime.replica_id)}</p>"
        f"<h2 id=running>Running and queued</h2>{_runs_table(active, 'Nothing is running.')}"
        f"<h2 id=failed>Recent failures</h2>{_runs_table(failed, 'No failed runs.')}"
        "<h2 id=next>Next up</h2>"
        + _table(
            ["when (UTC)", "pipeline"],
            [f"<tr><td>{_when(t)}</td><td>{escape(n)}</td></tr>" for t, n in upcoming],
            "No scheduled pipelines.",
        )
        + "<h2 id=pipelines>Pipelines</h2>"
        + _table(
            ["pipeline", "schedule", "last run", "last run at (UTC)", "next run (UTC)", "about"],
            pipeline_rows,
            "No pipelines loaded.",
        )
        + (f"<h2>Invalid pipeline files</h2><ul>{invalid}</ul>" if invalid else "")
    )
    return body, True


def run_html(run: dict[str, Any]) -> tuple[str, bool]:
    """The run detail page body; refresh only while the run can still change."""
    task_rows, unit_sections = [], []
    for t in run["tasks"]:
        detail = t["error"] or t["output"] or ""
        task_rows.append(
            f"<tr><td>{escape(t['task_id'])}</td><td>{escape(t['type'])}</td>"
            f"<td>{badge(t['status'])}</td><td class=n>{t['attempts']}</td>"
            f"<td>{_when(t['started_at'])}</td><td class=n>"
            f"{_seconds(t['started_at'], t['finished_at'])}</td>"
            f"<td class=n>{len(t.get('units', []))}</td><td class=n>{t.get('rows_loaded', 0)}</td>"
            f"<td class=n>{t.get('rows_rejected', 0)}</td>"
            f"<td><pre>{escape(detail[-4000:])}</pre></td></tr>"
        )
        units = [
            f"<tr><td>{escape(u['unit'])}</td><td>{badge(u['status'])}</td>"
            f"<td class=n>{u['attempt']}</td><td class=n>{u['rows_in']}</td>"
            f"<td class=n>{u['rows_loaded']}</td><td class=n>{u['rows_rejected']}</td>"
            f"<td class=n>{u['bytes']}</td><td class=n>{u['duration_seconds']:.2f}s</td>"
            f"<td>{_when(u['started_at'])}</td><td><pre>{escape(u['error'] or '')}</pre></td></tr>"
            for u in t.get("units", [])
        ]
        if units:
            headers = [
                "unit",
                "status",
                "attempt",
                "rows in",
                "loaded",
                "rejected",
                "bytes",
                "duration",
                "started (UTC)",
                "error",
            ]
            unit_sections.append(
                f"<h2>Units of {escape(t['task_id'])}</h2>{_table(headers, units, '')}"
            )
    totals = run.get("totals", {})
    params = ", ".join(
        f"{escape(str(k))}={escape(str(v))}" for k, v in (run["params"] or {}).items()
    )
    body = (
        f'<p><a href="/">&larr; all runs</a></p>'
        f"<h1>{escape(run['pipeline'])} {badge(run['status'])}</h1>"
        f"<table><tr><th>run</th><td>{escape(run['run_id'])}</td><th>trigger</th>"
        f"<td>{escape(run['trigger'])}</td><th>logical date</th>"
        f"<td>{_when(run['logical_date'])}</td></tr>"
        f"<tr><th>created</th><td>{_when(run['created_at'])}</td><th>started</th>"
        f"<td>{_when(run['started_at'])}</td><th>finished</th>"
        f"<td>{_when(run['finished_at'])}</td></tr>"
        f"<tr><th>duration</th><td>{_seconds(run['started_at'], run['finished_at'])}</td>"
        f"<th>rows loaded</th><td class=n>{totals.get('rows_loaded', 0)}</td>"
        f"<th>rows rejected</th><td class=n>{totals.get('rows_rejected', 0)}</td></tr>"
        f"<tr><th>params</th><td colspan=5>{params or '-'}</td></tr></table>"
        + (f"<h2>Error</h2><pre>{escape(run['error'])}</pre>" if run["error"] else "")
        + "<h2>Tasks</h2>"
        + _table(
            [
                "task",
                "type",
                "status",
                "attempts",
                "started (UTC)",
                "duration",
                "units",
                "rows loaded",
                "rejected",
                "error / output",
            ],
            task_rows,
            "No tasks.",
        )
        + "".join(unit_sections)
    )
    return body, run["status"] not in FINAL_STATUSES


@router.get("/", response_class=HTMLResponse)
async def index(request: Request) -> HTMLResponse:
    try:
        _authenticate(request)
    except Unauthorized as exc:
        return _login(exc.message)
    runtime: Runtime = request.app.state.runtime
    body, refresh = await asyncio.to_thread(index_html, runtime)
    return _page("Sluice runs", body, refresh)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
async def run_page(run_id: str, request: Request) -> HTMLResponse:
    try:
        _authenticate(request)
    except Unauthorized as exc:
        return _login(exc.message)
    runtime: Runtime = request.app.state.runtime
    try:
        run = await asyncio.to_thread(runtime.store.get_run, run_id)
    except SluiceError as exc:
        body = (
            f'<p><a href="/">&larr; all runs</a></p><h1>Not found</h1><p>{escape(exc.message)}</p>'
        )
        return _page("Sluice: run not found", body, refresh=False, status=exc.http_status)
    body, refresh = run_html(run)
    return _page(f"Sluice run {run_id[:12]} of {run['pipeline']}", body, refresh)


@router.post("/login")
async def login(request: Request) -> Response:
    """Check a token and keep it in an HttpOnly cookie for the pages."""
    authenticator: Authenticator = request.app.state.authenticator
    form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
    token = (form.get("token") or [""])[0]
    try:
        authenticator.authenticate(token)
    except Unauthorized as exc:
        return _login(exc.message)
    response = RedirectResponse("/", status_code=303)
    secure = request.url.scheme == "https"
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure)
    return response
