"""Ragged rows with ``on_bad_row: quarantine``: rejected batches, exact lines, good rows kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from services.common.spec.source import Source
from services.extractor.readers import ReadLimits, read_batches
from services.extractor.readers.base import is_rejected


def split_read(path: Path, batch_bytes: int = 1 << 20, **options: Any) -> tuple[pa.Table, pa.Table]:
    """(good rows, quarantined rows) of ``path``, each concatenated into a table."""
    source = Source(uri=path.as_uri(), options=options)
    limits = ReadLimits(batch_bytes=batch_bytes, max_line_bytes=max(batch_bytes, 64 * 1024))
    batches = list(read_batches(path, "auto", source.options, limits))
    good = [b for b in batches if not is_rejected(b)]
    bad = [b for b in batches if is_rejected(b)]
    return pa.Table.from_batches(good), (
        pa.Table.from_batches(bad) if bad else pa.table({"raw": pa.array([], pa.string())})
    )


def test_quarantined_rows_carry_raw_text_line_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text('title line\na,b,c\n1,"x\ny",3\n4,5,6,7\n8,9\n10,11,12\n')
    good, bad = split_read(path, skip_rows=1, on_bad_row="quarantine")
    assert good.column("a").to_pylist() == [1, 10]
    # Physical lines: the quoted newline and the two set-aside lines are counted.
    assert good.column("_sluice_line").to_pylist() == [3, 7]
    assert bad.column("raw").to_pylist() == ["4,5,6,7", "8,9"]
    assert bad.column("_sluice_line").to_pylist() == [5, 6]
    assert bad.column("_sluice_check").to_pylist() == ["bad_row", "bad_row"]
    assert bad.column("_sluice_column").to_pylist() == [None, None]
    assert bad.column("_sluice_reason").to_pylist() == [
        "expected 3 fields, found 4 (too many)",
        "expected 3 fields, found 2 (too few)",
    ]


def test_trailing_ragged_rows_are_quarantined_too(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n3\n4,5,6\n")
    good, bad = split_read(path, on_bad_row="quarantine")
    assert good.column("a").to_pylist() == [1]
    assert bad.column("_sluice_line").to_pylist() == [3, 4]
    assert bad.column("raw").to_pylist() == ["3", "4,5,6"]


@pytest.mark.parametrize("on_bad_row", ["quarantine", "skip"])
def test_many_blocks_keep_every_good_row_and_exact_lines(tmp_path: Path, on_bad_row: str) -> None:
    lines = ["id,name,amount"]
    ragged = {1_000, 25_000, 49_999}
    for i in range(1, 50_001):
        lines.append(f"{i},n{i},{i}.5,extra" if i in ragged else f"{i},n{i},{i}.5")
    path = tmp_path / "big.csv"
    path.write_text("\n".join(lines) + "\n")
    good, bad = split_read(path, batch_bytes=64 * 1024, on_bad_row=on_bad_row)
    assert good.num_rows == 50_000 - len(ragged)
    ids = good.column("id").to_pylist()
    assert ragged.isdisjoint(ids)
    # Line = id + 1 (the header) for every good row, however the blocks fell.
    assert good.column("_sluice_line").to_pylist() == [i + 1 for i in ids]
    if on_bad_row == "quarantine":
        assert sorted(bad.column("_sluice_line").to_pylist()) == sorted(i + 1 for i in ragged)
    else:
        assert bad.num_rows == 0


def test_skip_still_emits_no_rejected_batches(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("a,b\n1,x\n2\n3,z\n")
    good, bad = split_read(path, on_bad_row="skip")
    assert good.column("a").to_pylist() == [1, 3]
    assert bad.num_rows == 0


def test_quarantine_with_strings_fallback_path(tmp_path: Path) -> None:
    # Padded numbers send the reader to the string-conversion path; rejects must not double.
    path = tmp_path / "p.csv"
    path.write_text("a,b\n 1,x\n2,y,z\n 3,w\n")
    good, bad = split_read(path, on_bad_row="quarantine", column_types={"a": "int64"})
    assert good.column("a").to_pylist() == [1, 3]
    assert bad.column("_sluice_line").to_pylist() == [3]


@pytest.mark.usefixtures("arrow_pool")
@pytest.mark.parametrize("cpus", [1, 4])
def test_skipped_ragged_rows_keep_lines_exact_on_any_cpus(tmp_path: Path, cpus: int) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("a,b\n1,x\n9,9,9\n2,y\n8\n3,z\n")
    pa.set_cpu_count(cpus)
    good, bad = split_read(path, on_bad_row="skip")
    assert good.column("a").to_pylist() == [1, 2, 3]
    assert good.column("_sluice_line").to_pylist() == [2, 4, 6]
    assert bad.num_rows == 0
