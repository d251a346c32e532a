"""``bqemulator`` for the BigQuery tests: its own virtualenv, created on first use, on loopback.

The emulator pins packages (DuckDB among them) that clash with Sluice's environment, so it lives
in ``.sluice/bqemu-venv``. The venv is built once (idempotent: a marker file records a complete
install, and a file lock keeps two test processes from building it at the same time). Offline,
the emulator would try to download DuckDB's spatial extension at start; importing it from the
``duckdb-extension-spatial`` wheel once avoids that.
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[3]
VENV = ROOT / ".sluice" / "bqemu-venv"
PACKAGES = [
    "bqemulator",
    "google-cloud-bigquery",
    "pandas",
    "pyarrow",
    "duckdb==1.5.5",
    "duckdb-extensions",
    "duckdb-extension-spatial",
]
_READY = VENV / ".sluice-ready"


def ensure_venv() -> Path:
    """The emulator's executable, installing its virtualenv first when needed."""
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / "bqemu-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _READY.exists():
            python = VENV / "bin" / "python"
            if not python.exists():
                subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", *PACKAGES],
                check=True,
                timeout=1200,
            )
            subprocess.run(
                [
                    str(python),
                    "-c",
                    "from duckdb_extensions import import_extension; import_extension('spatial')",
                ],
                check=True,
            )
            _READY.write_text(" ".join(PACKAGES) + "\n")
    return VENV / "bin" / "bqemulator"


@contextmanager
def running_emulator(project: str, rest_port: int, grpc_port: int, log: Path) -> Iterator[str]:
    """Start the emulator; yield its REST endpoint; stop it."""
    executable = ensure_venv()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                str(executable),
                "start",
                "--rest-host",
                "127.0.0.1",
                "--rest-port",
                str(rest_port),
                "--grpc-port",
                str(grpc_port),
                "--project",
                project,
                "--ephemeral",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{rest_port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"bqemulator exited ({proc.returncode}); see {log}")
            try:
                httpx.get(f"{endpoint}/bigquery/v2/projects/{project}/datasets", timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"bqemulator did not start in 90s; see {log}") from None
                time.sleep(0.3)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
