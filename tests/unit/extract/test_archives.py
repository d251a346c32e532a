"""Zip members as units, compressed files, format detection, zip bombs and zip slip."""

from __future__ import annotations

import gzip
import io
import lzma
import os
import tempfile
import zipfile
from pathlib import Path

import openpyxl
import pytest

from services.common.errors import BadInput
from services.common.spec.source import Source
from services.extractor.settings import ExtractorSettings
from services.extractor.units import discover
from tests.unit.extract.conftest import pull_units


def make_zip(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def xlsx_bytes(rows: list[list[object]]) -> bytes:
    wb = openpyxl.Workbook()
    for row in rows:
        wb.active.append(row)
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


def test_zip_members_become_units_filtered_by_glob(tmp_path: Path) -> None:
    inner = make_zip(tmp_path / "inner.zip", {"day3.csv": b"n\n3\n"}).read_bytes()
    path = make_zip(
        tmp_path / "parts.zip",
        {
            "daily/day1.csv": b"n\n1\n",
            "daily/day2.csv": b"n\n2\n",
            "notes.md": b"ignore me",
            "__MACOSX/daily/._day1.csv": b"junk",
            "daily/": b"",
            "more.zip": inner,
        },
    )
    tables = pull_units(path.as_uri(), members="*.csv")
    base = str(path)
    assert sorted(tables) == [
        f"{base}!daily/day1.csv",
        f"{base}!daily/day2.csv",
        f"{base}!more.zip!day3.csv",
    ]
    assert tables[f"{base}!more.zip!day3.csv"].column("n").to_pylist() == [3]


def test_mixed_zip_of_csv_and_xlsx(tmp_path: Path) -> None:
    path = make_zip(
        tmp_path / "mixed.zip",
        {"a.csv": b"id;v\n1;x\n", "b.xlsx": xlsx_bytes([["id", "v"], [2, "y"]])},
    )
    tables = pull_units(path.as_uri())
    values = sorted(v for t in tables.values() for v in t.column("v").to_pylist())
    assert values == ["x", "y"]


def test_member_fingerprint_changes_with_content(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "z.zip", {"a.csv": b"n\n1\n"})
    source = Source(uri=path.as_uri())
    first = discover(source, ExtractorSettings())[0].fingerprint
    make_zip(path, {"a.csv": b"n\n2\n"})
    assert discover(source, ExtractorSettings())[0].fingerprint != first


@pytest.mark.parametrize(
    ("name", "opener"), [("d.csv.gz", gzip.compress), ("d.csv.xz", lzma.compress)]
)
def test_compressed_single_files(tmp_path: Path, name: str, opener: object) -> None:
    path = tmp_path / name
    path.write_bytes(opener(b"a,b\n1,x\n2,y\n"))  # type: ignore[operator]
    (table,) = pull_units(path.as_uri()).values()
    assert table.column("b").to_pylist() == ["x", "y"]


def test_format_detected_by_content_not_extension(tmp_path: Path) -> None:
    (tmp_path / "download").write_bytes(xlsx_bytes([["a"], [1]]))
    (tmp_path / "report.csv").write_bytes(xlsx_bytes([["a"], [2]]))
    units = discover(Source(uri=f"file://{tmp_path}/*"), ExtractorSettings())
    assert {Path(u.id).name: u.format for u in units} == {"download": "xlsx", "report.csv": "xlsx"}


def test_zip_slip_member_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "evil.zip", {"../../escaped.csv": b"a\n1\n", "ok.csv": b"a\n1\n"})
    with pytest.raises(BadInput, match=r"'\.\.' path"):
        pull_units(path.as_uri())
    for directory in (
        tmp_path,
        tmp_path.parent,
        tmp_path.parent.parent,
        Path(tempfile.gettempdir()),
    ):
        assert not (directory / "escaped.csv").exists()


def test_absolute_member_is_refused(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "abs.zip", {"/etc/evil.csv": b"a\n1\n"})
    with pytest.raises(BadInput, match="absolute"):
        pull_units(path.as_uri())


def test_zip_bomb_ratio_is_refused_before_unpacking(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "bomb.zip", {"zeros.csv": b"0" * (50 * 1024 * 1024)})
    assert os.path.getsize(path) < 200_000
    with pytest.raises(BadInput, match="compression ratio"):
        pull_units(path.as_uri())


def test_unpacked_size_limit(tmp_path: Path) -> None:
    path = make_zip(
        tmp_path / "big.zip", {"a.csv": os.urandom(3 * 1024 * 1024)}, zipfile.ZIP_STORED
    )
    settings = ExtractorSettings(limits={"max_unpacked_bytes": 1024 * 1024})
    with pytest.raises(BadInput, match="unpacks to"):
        pull_units(path.as_uri(), settings)


def test_gzip_bomb_stops_while_unpacking(tmp_path: Path) -> None:
    path = tmp_path / "bomb.csv.gz"
    path.write_bytes(gzip.compress(b"0" * (50 * 1024 * 1024)))
    with pytest.raises(BadInput, match="ratio"):
        pull_units(path.as_uri())


def test_truncated_zip(tmp_path: Path) -> None:
    data = make_zip(tmp_path / "z.zip", {"a.csv": b"a\n" + b"1\n" * 1000}).read_bytes()
    (tmp_path / "cut.zip").write_bytes(data[:-30])
    with pytest.raises(BadInput, match="zip"):
        pull_units((tmp_path / "cut.zip").as_uri(), format="zip")


def test_json_lines_and_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.jsonl").write_text('{"x": 1}\n{"x": 2}\n')
    pq.write_table(pa.table({"x": [3, 4]}), tmp_path / "b.parquet")
    (tmp_path / "c.json").write_text('[{"x": 5}]')
    tables = pull_units(f"file://{tmp_path}/*")
    assert sorted(v for t in tables.values() for v in t.column("x").to_pylist()) == [1, 2, 3, 4, 5]


def test_max_rows_limits_json_and_parquet_units(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.jsonl").write_text("".join(f'{{"x": {n}}}\n' for n in range(5)))
    pq.write_table(pa.table({"x": list(range(5))}), tmp_path / "b.parquet")
    (tmp_path / "c.json").write_text(str([{"x": n} for n in range(5)]).replace("'", '"'))
    tables = pull_units(f"file://{tmp_path}/*", options={"max_rows": 3})
    assert len(tables) == 3
    for table in tables.values():
        assert table.column("x").to_pylist() == [0, 1, 2]
        assert table.column("_sluice_line").to_pylist() == [1, 2, 3]


def test_encrypted_member_is_refused(tmp_path: Path) -> None:
    data = bytearray(make_zip(tmp_path / "plain.zip", {"secret.csv": b"a\n1\n"}).read_bytes())
    # Set the "encrypted" flag bit in the local and the central header, as a password does.
    data[6] |= 0x1
    central = data.index(b"PK\x01\x02")
    data[central + 8] |= 0x1
    path = tmp_path / "locked.zip"
    path.write_bytes(bytes(data))
    with pytest.raises(BadInput, match="encrypted"):
        pull_units(path.as_uri())


def test_header_only_member_and_empty_member_load_zero_rows(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "e.zip", {"empty.csv": b"", "header.csv": b"a,b\n"})
    tables = pull_units(path.as_uri())
    assert [t.num_rows for t in tables.values()] == [0, 0]
