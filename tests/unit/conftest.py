"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pytest


@pytest.fixture
def arrow_pool() -> Iterator[None]:
    """Arrow's thread count is process-wide: a test that sets it gets it back afterwards."""
    before = pa.cpu_count()
    yield
    pa.set_cpu_count(before)
