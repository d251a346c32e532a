"""``make demo-daily``: start the stand-in portal, run the daily-report pipeline, stop the portal.

python3 examples/jobs/demo_daily.py [--sluice .venv/bin/sluice] [--date YYYY-MM-DD]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PIPELINE = HERE.parent / "pipelines" / "daily_report.yaml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sluice", default=".venv/bin/sluice")
    args = parser.parse_args()
    port = free_port()
    portal = subprocess.Popen(
        [sys.executable, str(HERE / "portal.py"), "--port", str(port)], stdout=subprocess.PIPE
    )
    try:
        assert portal.stdout is not None
        print(portal.stdout.readline().decode().strip())
        command = [
            args.sluice,
            "run",
            str(PIPELINE.relative_to(Path.cwd())),
            "--param",
            f"portal_url=http://127.0.0.1:{port}",
        ]
        return subprocess.run(command, check=False).returncode
    finally:
        portal.terminate()
        portal.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
