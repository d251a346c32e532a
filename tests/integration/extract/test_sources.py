"""The extractor over gRPC (GCS emulator, local HTTP server, errors as statuses), and how it
fetches zip members from GCS."""

from __future__ import annotations

import gzip
import io
import json
import random
import zipfile
from pathlib import Path
from typing import Any

import grpc
import pyarrow as pa
import pytest
from google.cloud import storage

from services.common.codec import from_message
from services.common.spec.source import Source
from services.extractor.settings import ExtractorSettings, GcsSourceSettings
from services.extractor.sources.gcs import GcsObjects
from services.extractor.units import discover, materialize
from tests.integration.extract.conftest import Extractor
from tests.unit.extract.conftest import far_cell_xls, far_cell_xlsx, small_xls


def source(uri: str, **extra: Any) -> str:
    return json.dumps({"uri": uri, **extra})


def task(uri: str, **extra: Any) -> str:
    return json.dumps(
        {
            "id": "t",
            "type": "etl",
            "source": {"uri": uri, **extra},
            "destination": {"uri": "duckdb:///x.duckdb", "table": "t"},
        }
    )


def rows(messages: list[Any]) -> pa.Table:
    batches = [from_message(m) for m in messages]
    assert len({b.schema for b in batches}) <= 1
    assert [m.seq for m in messages] == list(range(len(messages)))
    return pa.Table.from_batches(batches)


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_gcs_glob_zip_members_and_generation_fingerprint(
    extractor: Extractor, gcs_client: Any
) -> None:
    bucket = gcs_client.create_bucket("drop")
    bucket.blob("sales/2026-11-01/a.csv").upload_from_string("id,amt\n1,2.5\n2,3.5\n")
    bucket.blob("sales/2026-11-01/parts.zip").upload_from_string(
        zip_bytes({"p1.csv": b"id,amt\n3,1\n", "p2.csv": b"id,amt\n4,2\n", "x.md": b"-"})
    )
    bucket.blob("other/b.csv").upload_from_string("id\n9\n")
    uri = "gs://drop/sales/*/*"
    units = extractor.discover(source(uri, members="*.csv"))
    ids = [u.id for u in units]
    assert ids == [
        "gs://drop/sales/2026-11-01/a.csv",
        "gs://drop/sales/2026-11-01/parts.zip!p1.csv",
        "gs://drop/sales/2026-11-01/parts.zip!p2.csv",
    ]
    assert units[0].fingerprint.startswith("generation=")
    table = rows(extractor.pull(units[0], task(uri)))
    assert table.column("amt").to_pylist() == [2.5, 3.5]
    assert table.column("_sluice_line").to_pylist() == [2, 3]
    member = rows(extractor.pull(units[2], task(uri, members="*.csv")))
    assert member.column("id").to_pylist() == [4]

    bucket.blob("sales/2026-11-01/a.csv").upload_from_string("id,amt\n1,2.5\n")
    again = extractor.discover(source(uri, members="*.csv"))
    assert again[0].fingerprint != units[0].fingerprint
    assert again[1].fingerprint == units[1].fingerprint  # the zip was not uploaded again


def test_gcs_missing_object_is_not_found(extractor: Extractor, gcs_client: Any) -> None:
    gcs_client.create_bucket("empty")
    with pytest.raises(grpc.RpcError) as caught:
        extractor.discover(source("gs://empty/nothing.csv"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "gs://empty/nothing.csv" in caught.value.details()


def test_http_utf16_export_with_last_modified(
    extractor: Extractor, http_root: tuple[Path, str]
) -> None:
    root, base = http_root
    (root / "export.txt").write_bytes("Name\tBetrag\r\nMüller\t3,5\r\n".encode("utf-16"))
    uri = f"{base}/export.txt"
    (unit,) = extractor.discover(source(uri))
    assert unit.fingerprint.startswith("last_modified=")
    table = rows(extractor.pull(unit, task(uri, options={"decimal": ","})))
    assert table.column("Name").to_pylist() == ["Müller"]
    assert table.column("Betrag").to_pylist() == [3.5]


def test_http_gzip_csv(extractor: Extractor, http_root: tuple[Path, str]) -> None:
    root, base = http_root
    (root / "d.csv.gz").write_bytes(gzip.compress(b"a,b\n1,x\n"))
    uri = f"{base}/d.csv.gz"
    (unit,) = extractor.discover(source(uri))
    assert rows(extractor.pull(unit, task(uri))).column("b").to_pylist() == ["x"]


def test_http_404_and_size_limit(extractor: Extractor, http_root: tuple[Path, str]) -> None:
    root, base = http_root
    with pytest.raises(grpc.RpcError) as caught:
        extractor.discover(source(f"{base}/missing.csv"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    (root / "big.csv").write_bytes(b"a\n" + b"1\n" * (2 * 1024 * 1024))
    with pytest.raises(grpc.RpcError) as caught:
        extractor.discover(source(f"{base}/big.csv"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "download limit" in caught.value.details()


def test_bad_input_is_invalid_argument_and_the_service_survives(
    extractor: Extractor, tmp_path: Path
) -> None:
    bad = tmp_path / "ragged.csv"
    bad.write_text('a,b\n1,"two\nlines"\n2,y,z\n')
    (unit,) = extractor.discover(source(bad.as_uri()))
    with pytest.raises(grpc.RpcError) as caught:
        extractor.pull(unit, task(bad.as_uri()))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{bad}, line 4" in caught.value.details()
    assert "expected 2 fields, found 3" in caught.value.details()

    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(zip_bytes({"z.csv": b"0" * (20 * 1024 * 1024)}))
    (unit,) = extractor.discover(source(bomb.as_uri()))
    with pytest.raises(grpc.RpcError) as caught:
        extractor.pull(unit, task(bomb.as_uri()))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "compression ratio" in caught.value.details()

    good = tmp_path / "good.csv"
    good.write_text("a\n1\n")
    (unit,) = extractor.discover(source(good.as_uri()))
    assert rows(extractor.pull(unit, task(good.as_uri()))).num_rows == 1
    spooled = [p for p in extractor.work_dir.iterdir() if p.name.startswith("sluice-")]  # type: ignore[attr-defined]
    assert not spooled, "spool files left behind"


def test_a_workbook_too_big_to_decode_fails_its_unit_not_the_service(
    extractor: Extractor, tmp_path: Path
) -> None:
    far = far_cell_xls(tmp_path / "far.xls")  # about 2 GB inside calamine
    (unit,) = extractor.discover(source(far.as_uri()))
    with pytest.raises(grpc.RpcError) as caught:
        extractor.pull(unit, task(far.as_uri()))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{far}: the workbook needs more than 768 MiB to decode" in caught.value.details()

    wide = far_cell_xlsx(tmp_path / "far.xlsx")  # 512 GiB inside calamine: streamed instead
    (unit,) = extractor.discover(source(wide.as_uri()))
    table = rows(extractor.pull(unit, task(wide.as_uri())))
    assert table.column("name").to_pylist() == ["one", "two"]

    good = small_xls(tmp_path / "good.xls", 2)
    (unit,) = extractor.discover(source(good.as_uri()))
    assert rows(extractor.pull(unit, task(good.as_uri()))).column("id").to_pylist() == [1, 2]


def test_gcs_zip_member_is_read_with_ranged_reads(
    gcs_emulator: str, gcs_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member of a zip on GCS costs the archive's directory and that member's bytes, not a
    download of the whole archive per member."""
    noise = random.Random(7).randbytes(3 * 1024 * 1024)  # does not compress: a big member
    archive = zip_bytes({"big.bin": noise, "day2.csv": b"id,amt\n5,1.5\n6,2.5\n"})
    gcs_client.create_bucket("ranged").blob("parts.zip").upload_from_string(archive)
    settings = ExtractorSettings(
        gcs=GcsSourceSettings(emulator_host=gcs_emulator), work_dir=tmp_path
    )

    def whole_download(self: GcsObjects, uri: str) -> Any:
        raise AssertionError(f"{uri} was downloaded whole")

    fetched: list[int] = []  # bytes each request to GCS brought back
    download = storage.Blob.download_as_bytes

    def counted(self: storage.Blob, *args: Any, **kwargs: Any) -> bytes:
        data: bytes = download(self, *args, **kwargs)
        fetched.append(len(data))
        return data

    monkeypatch.setattr(GcsObjects, "local_path", whole_download)
    monkeypatch.setattr(storage.Blob, "download_as_bytes", counted)
    spec = Source(uri="gs://ranged/parts.zip", members="*.csv")
    (unit,) = discover(spec, settings)
    with materialize(unit.uri, unit.member, unit.format, spec, settings) as (path, fmt, label):
        assert fmt == "csv"
        assert path.read_bytes() == b"id,amt\n5,1.5\n6,2.5\n"
        assert label == "gs://ranged/parts.zip!day2.csv"
    assert 0 < sum(fetched) < len(archive) / 4


def test_http_zip_is_read_in_place_with_byte_ranges(
    extractor: Extractor, ranged_http_root: tuple[Path, str, dict[str, int], list[str]]
) -> None:
    root, base, sent, methods = ranged_http_root
    noise = random.Random(8).randbytes(1024 * 1024)  # does not compress: a big member
    archive = zip_bytes({"big.bin": noise, "day1.csv": b"id\n1\n", "day2.csv": b"id\n2\n3\n"})
    (root / "parts.zip").write_bytes(archive)
    uri = f"{base}/parts.zip"
    units = extractor.discover(source(uri, members="*.csv"))
    assert [u.member for u in units] == ["day1.csv", "day2.csv"]
    assert units[0].fingerprint.startswith("etag=")
    methods.clear()
    table = rows(extractor.pull(units[1], task(uri, members="*.csv")))
    # Opening the archive costs no HEAD: the first ranged GET answers with its size and ETag.
    assert methods and "HEAD" not in methods, methods
    assert table.column("id").to_pylist() == [2, 3]
    assert table.column("_sluice_line").to_pylist() == [2, 3]
    # The listing and the member cost a fraction of the archive, not one download each.
    assert sent["/parts.zip"] < len(archive) / 2


def test_http_zip_without_byte_ranges_is_downloaded(
    extractor: Extractor, http_root: tuple[Path, str]
) -> None:
    root, base = http_root
    (root / "plain.zip").write_bytes(zip_bytes({"a.csv": b"id\n7\n"}))
    (unit,) = extractor.discover(source(f"{base}/plain.zip"))
    assert rows(extractor.pull(unit, task(f"{base}/plain.zip"))).column("id").to_pylist() == [7]
