"""The memory a service's container may use, read from its cgroup.

Like the CPU count (see :mod:`.cpu`), the machine's memory is the node's inside a container; the
limit the kernel enforces, and at which it kills, is the cgroup's.
"""

from __future__ import annotations

from pathlib import Path

from services.common.cpu import CGROUP_ROOT

_V1_UNLIMITED = 2**60
"""cgroup v1 writes "no limit" as a page-rounded 2**63 - 1; anything this large is no limit."""


def cgroup_memory_limit(root: Path = CGROUP_ROOT) -> int | None:
    """Bytes the cgroup may use (v2 ``memory.max`` or v1 ``memory.limit_in_bytes``); None: no
    limit, or no cgroup files to read."""
    try:
        text = (root / "memory.max").read_text().strip()
        return None if text == "max" else int(text)
    except (OSError, ValueError):
        pass
    try:
        limit = int((root / "memory" / "memory.limit_in_bytes").read_text())
    except (OSError, ValueError):
        return None
    return limit if 0 < limit < _V1_UNLIMITED else None
