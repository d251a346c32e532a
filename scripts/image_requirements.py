"""Print the runtime requirements of one service image, one per line.

``docker/<svc>.Dockerfile`` runs this in its build stage so that an image installs only the
``runtime-common`` extra plus the service's own extra from ``pyproject.toml``, not the full
development dependency list. Standard library only (runs on a bare ``python:3.11-slim``).

Usage: ``python scripts/image_requirements.py <service> [pyproject.toml]``
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

SERVICES = ("extractor", "transformer", "loader", "orchestrator")


def image_requirements(service: str, pyproject: Path) -> list[str]:
    """Requirements of ``service``: ``runtime-common`` then the service extra, deduplicated."""
    if service not in SERVICES:
        raise SystemExit(f"unknown service {service!r}; expected one of {', '.join(SERVICES)}")
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    merged: list[str] = []
    for requirement in [*extras["runtime-common"], *extras[service]]:
        if requirement not in merged:
            merged.append(requirement)
    return merged


def main(argv: list[str]) -> None:
    if len(argv) not in (2, 3):
        raise SystemExit(__doc__)
    pyproject = Path(argv[2] if len(argv) == 3 else "pyproject.toml")
    print("\n".join(image_requirements(argv[1], pyproject)))


if __name__ == "__main__":
    main(sys.argv)
