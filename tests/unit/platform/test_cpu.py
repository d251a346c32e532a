"""Arrow's thread pool follows the container's CPU limit, not the node's core count."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest

from services.common.cpu import available_cpus, cgroup_cpu_limit, size_arrow_threads


def cgroup_v2(tmp_path: Path, cpu_max: str) -> Path:
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    return tmp_path


def test_v2_quota_is_read(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(cgroup_v2(tmp_path, "150000 100000")) == 1.5


def test_v2_without_quota_is_no_limit(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(cgroup_v2(tmp_path, "max 100000")) is None


def test_v1_quota_is_read(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path) == 0.5
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(tmp_path) is None


def test_no_cgroup_files_is_no_limit(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(tmp_path) is None
    assert available_cpus(tmp_path) == len(os.sched_getaffinity(0))


def test_fractions_round_up_and_never_exceed_the_cores(tmp_path: Path) -> None:
    assert available_cpus(cgroup_v2(tmp_path, "50000 100000")) == 1
    assert available_cpus(cgroup_v2(tmp_path, "10000000 100000")) == len(os.sched_getaffinity(0))


def test_arrow_pool_takes_the_limit(
    tmp_path: Path, arrow_pool: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert size_arrow_threads(cgroup_v2(tmp_path, "100000 100000")) == 1
    assert pa.cpu_count() == 1


def test_omp_num_threads_wins(
    tmp_path: Path, arrow_pool: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    pa.set_cpu_count(3)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert size_arrow_threads(cgroup_v2(tmp_path, "100000 100000")) == 3
