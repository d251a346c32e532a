"""The container's memory limit comes from its cgroup, v2 or v1."""

from __future__ import annotations

from pathlib import Path

from services.common.memory import cgroup_memory_limit


def test_v2_limit_is_read(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text("1073741824\n")
    assert cgroup_memory_limit(tmp_path) == 1024**3
    (tmp_path / "memory.max").write_text("max\n")
    assert cgroup_memory_limit(tmp_path) is None


def test_v1_limit_is_read(tmp_path: Path) -> None:
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("536870912\n")
    assert cgroup_memory_limit(tmp_path) == 512 * 1024**2
    # v1's "no limit" is the largest page-aligned signed 64-bit number.
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert cgroup_memory_limit(tmp_path) is None


def test_no_cgroup_files_is_no_limit(tmp_path: Path) -> None:
    assert cgroup_memory_limit(tmp_path) is None
