"""Private scratch space for a unit's bytes: downloaded objects, zip members, unpacked streams."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath


@contextlib.contextmanager
def spool_dir(workdir: Path | None) -> Iterator[Path]:
    """A private (0700) temporary directory, removed with everything in it afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="sluice-", dir=workdir))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def safe_suffix(name: str) -> str:
    """The last two extensions of ``name`` (they help format detection), reduced to letters,
    digits and dots: never a path of its own."""
    suffixes = "".join(PurePosixPath(name).suffixes[-2:])
    return "".join(c for c in suffixes if c.isalnum() or c == ".")[:16]
