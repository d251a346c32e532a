"""The run page and the run detail page, as HTML over the in-process orchestrator."""

from __future__ import annotations

import sys
from collections.abc import Callable

from fastapi.testclient import TestClient

from tests.integration.orchestrate_extras.conftest import VIEWER, auth, trigger, wait_final

PY = sys.executable
PIPELINES = {
    "ok.yaml": f"""
name: nightly
description: Nightly <b>export</b>
schedule: "@daily"
timezone: Europe/Berlin
tasks:
  - id: fetch
    type: job
    command: [{PY!r}, -c, "print('fetched 3 files')"]
""",
    "bad.yaml": f"""
name: broken
tasks:
  - id: fetch
    type: job
    command: [{PY!r}, -c, "import sys; print('<script>alert(1)</script>'); sys.exit(3)"]
""",
    "invalid.yaml": "name: invalid\ntasks: []\n",
}


def test_pages_need_a_viewer_token_and_accept_a_cookie(
    orchestrator: Callable[..., TestClient],
) -> None:
    client = orchestrator(PIPELINES)
    page = client.get("/")
    assert page.status_code == 401
    assert '<form method="post" action="/login">' in page.text
    assert client.get("/", headers=auth("wrong")).status_code == 401
    assert client.get("/", headers=auth(VIEWER)).status_code == 200

    refused = client.post("/login", data={"token": "wrong"}, follow_redirects=False)
    assert refused.status_code == 401
    login = client.post("/login", data={"token": VIEWER}, follow_redirects=False)
    assert login.status_code == 303
    cookie = login.headers["set-cookie"]
    assert "sluice_token=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert client.get("/").status_code == 200  # the client keeps the cookie


def test_overview_and_run_detail(orchestrator: Callable[..., TestClient]) -> None:
    client = orchestrator(PIPELINES)
    client.headers.update(auth(VIEWER))
    good = wait_final(client, trigger(client, "nightly"))
    bad = wait_final(client, trigger(client, "broken"))

    page = client.get("/").text
    assert '<meta http-equiv="refresh" content="5">' in page
    assert "Nightly &lt;b&gt;export&lt;/b&gt;" in page  # escaped, never raw HTML
    failed_section = page.split("id=failed>")[1].split("<h2")[0]
    assert f'href="/runs/{bad["run_id"]}"' in failed_section
    assert "job exited with status 3" in failed_section
    assert good["run_id"] not in failed_section
    next_section = page.split("id=next>")[1].split("<h2")[0]
    assert "nightly" in next_section and "broken" not in next_section
    assert "invalid.yaml" in page  # files that failed validation are listed

    detail = client.get(f"/runs/{bad['run_id']}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail
    assert "<script>" not in detail
    assert 'http-equiv="refresh"' not in detail  # a finished run does not change any more
    assert '<span class="s failed">failed</span>' in detail

    detail = client.get(f"/runs/{good['run_id']}").text
    assert "fetched 3 files" in detail

    missing = client.get("/runs/does-not-exist")
    assert missing.status_code == 404
    assert "no run with id" in missing.text
