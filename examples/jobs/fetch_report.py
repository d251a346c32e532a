"""Fetch one day's report from the portal into a landing folder: the example ``job`` task.

    python3 examples/jobs/fetch_report.py --url URL --out DIR [--name FILE]

It follows Sluice's job contract: exit 0 when the file is in place; exit 75 ("try again later")
when the portal is unreachable, answers 5xx, or has not published the report yet (404), so the
orchestrator retries with backoff; exit 2 for anything a retry cannot fix (a bad URL, 401/403).
The file is written under a temporary name and renamed, so the etl task never sees half a file.
Standard library only, so the same script runs as a subprocess or in a small container.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

EXIT_RETRY = 75
EXIT_FAIL = 2


def fetch(url: str, timeout: float) -> bytes:
    agent = {"User-Agent": "sluice-example-fetch/1"}
    request = urllib.request.Request(url, headers=agent)  # noqa: S310 - main() checks scheme
    with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310 - http(s) only
        data: bytes = reply.read()
        return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--name", help="file name (default: the last part of the URL)")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    if not args.url.startswith(("http://", "https://")):
        print(f"error: --url must be http(s), got {args.url!r}", file=sys.stderr)
        return EXIT_FAIL
    name = args.name or args.url.rstrip("/").rsplit("/", 1)[-1]
    try:
        data = fetch(args.url, args.timeout)
    except urllib.error.HTTPError as exc:
        retry = exc.code == 404 or exc.code == 429 or exc.code >= 500
        print(f"{args.url}: HTTP {exc.code} {exc.reason}", file=sys.stderr)
        return EXIT_RETRY if retry else EXIT_FAIL
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        print(f"{args.url}: unreachable: {exc}", file=sys.stderr)
        return EXIT_RETRY
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / name
    if target.exists() and target.read_bytes() == data:
        print(f"{target} is already up to date ({len(data)} bytes)")
        return 0
    with tempfile.NamedTemporaryFile(dir=args.out, prefix=".partial-", delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, target)
    print(f"fetched {len(data)} bytes into {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
