"""The CPUs a service may use, and Arrow's thread pool sized to them.

Arrow sizes its CPU pool from the machine's core count, which inside a container is the node's:
a pod limited to one CPU on a 16-core node would run 16 parsing threads, each holding blocks
in flight (memory grows with them) and all fighting over one CPU's quota. The container's
limit is read from its cgroup instead.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import pyarrow as pa

log = logging.getLogger(__name__)
CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs the cgroup's quota allows (cgroup v2 ``cpu.max`` or v1 CFS files); None: no limit."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota == "max":
            return None
        return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def available_cpus(root: Path = CGROUP_ROOT) -> int:
    """Whole CPUs this process may use: the cgroup limit rounded up, at most the cores it may
    run on."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    limit = cgroup_cpu_limit(root)
    return cores if limit is None else max(1, min(cores, math.ceil(limit)))


def size_arrow_threads(root: Path = CGROUP_ROOT) -> int:
    """Give Arrow's CPU pool one thread per available CPU, unless ``OMP_NUM_THREADS`` (which
    Arrow reads itself) says otherwise; returns the pool's size."""
    if not os.environ.get("OMP_NUM_THREADS"):
        pa.set_cpu_count(available_cpus(root))
    return int(pa.cpu_count())
