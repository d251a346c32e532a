"""Empty lines in delimited files: pyarrow drops them, ``_sluice_line`` stays physical."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.errors import BadInput
from services.common.spec.source import SourceOptions
from services.extractor.readers import ReadLimits, blank_lines, read_batches
from services.extractor.readers.bad_rows import RAW_COLUMN
from services.extractor.readers.base import REJECTED_KEY
from services.extractor.readers.blank_lines import BlankLines, find_blank_lines
from tests.unit.extract.conftest import read_table


def lines_of(path: Path, **options: object) -> list[int]:
    return read_table(path, **options).column("_sluice_line").to_pylist()


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_rows_after_empty_lines_keep_their_physical_line(tmp_path: Path, newline: str) -> None:
    text = newline.join(["id,name", "1,a", "", "2,b", "", "", "3,c", ""])
    path = tmp_path / "gaps.csv"
    path.write_bytes(text.encode())
    assert lines_of(path) == [2, 4, 7]


def test_an_empty_line_inside_a_quoted_value_is_part_of_the_value(tmp_path: Path) -> None:
    path = tmp_path / "quoted.csv"
    path.write_text('id,note\n1,"para one\n\npara two"\n\n2,x\n')
    table = read_table(path)
    assert table.column("note").to_pylist() == ["para one\n\npara two", "x"]
    assert table.column("_sluice_line").to_pylist() == [2, 6]


def test_a_bad_value_after_empty_lines_names_its_physical_line(tmp_path: Path) -> None:
    rows = [f"{i},{i}" for i in range(200_000)]  # past the sample the plan is made from
    path = tmp_path / "late.csv"
    path.write_text("id,n\n\n" + "\n\n".join(rows) + "\n200000,12.5\n")
    with pytest.raises(BadInput) as caught:
        read_table(path, batch_bytes=64 * 1024)
    # line 1 the header, then an empty line before each row; the bad row follows the last
    assert caught.value.context.line == 2 + 2 * 200_000
    assert "'12.5'" in caught.value.message


def test_quarantined_rows_after_empty_lines_keep_their_physical_line(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("a,b\n1,x\n\n2,y,extra\n\n3,z\n")
    options = SourceOptions(on_bad_row="quarantine")
    batches = list(read_batches(path, "auto", options, ReadLimits()))
    good = [b for b in batches if REJECTED_KEY not in (b.schema.metadata or {})]
    rejected = [b for b in batches if REJECTED_KEY in (b.schema.metadata or {})]
    assert [line for b in good for line in b.column("_sluice_line").to_pylist()] == [2, 6]
    assert rejected[0].column(RAW_COLUMN).to_pylist() == ["2,y,extra"]
    assert rejected[0].column("_sluice_line").to_pylist() == [4]


@pytest.mark.parametrize("skip_rows", [1, 2])
def test_empty_lines_around_skipped_title_lines(tmp_path: Path, skip_rows: int) -> None:
    path = tmp_path / "report.csv"
    path.write_text("Sales export\n\nstore,amount\n\n1,2.5\n2,3.5\n")
    table = read_table(path, skip_rows=skip_rows)
    assert table.column_names == ["store", "amount", "_sluice_line"]
    assert table.column("store").to_pylist() == [1, 2]
    assert table.column("_sluice_line").to_pylist() == [5, 6]


def test_empty_lines_across_chunk_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(blank_lines, "_CHUNK_BYTES", 7)  # cuts lines and runs of empty lines
    path = tmp_path / "small.csv"
    path.write_bytes(b"h\r\n\r\nabc\r\nq\r\n\r\n\r\nlong line here\r\n\r\nz")
    found = find_blank_lines(path, "utf-8", ",", '"', 0)
    assert found is not None
    assert found.lines == [2, 5, 6, 8]


def test_newlines_inside_quoted_values_are_no_empty_lines(tmp_path: Path) -> None:
    path = tmp_path / "quoted.csv"
    path.write_bytes(b'h\r\n\r\nabc\r\n"q\r\n\r\nq"\r\n\r\n\r\nlong line here\r\n\r\nz')
    found = find_blank_lines(path, "utf-8", ",", '"', 0)
    assert found is not None
    assert found.lines == [2, 7, 8, 10]  # not line 5, inside the quoted value


def test_a_quote_inside_an_unquoted_value_opens_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sizes.csv"
    path.write_text('item,size\npipe,12" long\n\nhose,3" wide\n\n"cap, red",1\n')
    assert lines_of(path) == [2, 4, 6]


def test_empty_lines_in_a_utf16_export(tmp_path: Path) -> None:
    path = tmp_path / "export.txt"
    path.write_bytes("id\tname\r\n1\ta\r\n\r\n2\tb\r\n".encode("utf-16"))
    assert lines_of(path) == [2, 4]


@pytest.fixture
def no_second_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails the test if the file is read again to place empty lines."""

    def read_again(*args: object, **kwargs: object) -> None:
        raise AssertionError("read again")

    monkeypatch.setattr(blank_lines, "_unquoted_empty_lines", read_again)
    monkeypatch.setattr(blank_lines, "csv_records", read_again)


@pytest.mark.usefixtures("no_second_pass")
def test_files_without_empty_lines_are_not_read_twice(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text('a,b\n1,"x\n"\n2,y\n')
    assert find_blank_lines(path, "utf-8", ",", '"', 0) is None


def test_a_gap_only_inside_quotes_is_no_empty_line(tmp_path: Path) -> None:
    path = tmp_path / "quoted.csv"
    path.write_text('a,b\n1,"x\n\ny"\n2,z\n')
    assert find_blank_lines(path, "utf-8", ",", '"', 0) is None
    assert lines_of(path) == [2, 5]


def test_counted_lines_map_to_physical_lines() -> None:
    # physical: 1 header, 2 empty, 3 empty, 4 row, 5 empty, 6 row
    gaps = BlankLines([2, 3, 5])
    assert gaps.physical([1, 2, 3]).tolist() == [1, 4, 6]


def test_an_empty_line_across_two_chunks_is_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(blank_lines, "_CHUNK_BYTES", 4)  # "abc\n" | "\ndef" | "\n"
    path = tmp_path / "seam.csv"
    path.write_bytes(b"abc\n\ndef\nghi\n")
    found = find_blank_lines(path, "utf-8", ",", '"', 0)
    assert found is not None
    assert found.lines == [2]


@pytest.mark.usefixtures("no_second_pass")
def test_newlines_ending_the_file_cost_no_second_pass(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(b'a,b\r\n1,"x"\r\n2,y\r\n\r\n\r\n')
    assert find_blank_lines(path, "utf-8", ",", '"', 0) is None


def test_a_quote_in_a_title_line_opens_nothing(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    path.write_bytes(b'"Sales report\nid,name\n1,a\n\n2,b\n')
    assert lines_of(path, skip_rows=1) == [3, 5]


def test_a_form_feed_does_not_end_a_title_line(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    path.write_bytes(b"Sales report\x0c\nid,a\n1,2\n3,4\n")
    table = read_table(path, skip_rows=1)
    assert table.column("id").to_pylist() == [1, 3]
    assert table.column("_sluice_line").to_pylist() == [3, 4]


def test_a_ragged_row_after_a_leading_empty_line_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_bytes(b"\nid,name\n1,a\n2,b,c\n")
    with pytest.raises(BadInput) as caught:
        read_table(path)
    assert caught.value.context.line == 4
    assert "expected 2 fields, found 3 (too many)" in caught.value.message


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        (b"id,a\r1,2\r\r3,4\r", [2, 4]),  # "CSV (Macintosh)": lines end with a lone CR
        (b"id,a\r\n1,2\r\r\n3,4\r\n", [2, 4]),
        (b"id,a\n1,2\n\r3,4\n", [2, 4]),
        (b"id,a\r1,2\r3,4\n\n5,6\n", [2, 3, 5]),
        (b'id,a\n1,"x\ry"\n\n3,4\n', [2, 5]),  # a lone CR inside a value is a line break too
    ],
)
def test_a_lone_carriage_return_ends_a_line(tmp_path: Path, data: bytes, lines: list[int]) -> None:
    path = tmp_path / "mac.csv"
    path.write_bytes(data)
    assert lines_of(path) == lines
