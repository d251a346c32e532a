"""Delimited and fixed-width text: dialects, encodings, types, lineage, bad input."""

from __future__ import annotations

import codecs
import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from services.common.errors import BadInput
from services.extractor.readers.delimited import _has_newline
from tests.unit.extract.conftest import read_table


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_european_csv_sniffs_semicolon_and_reads_decimal_comma(tmp_path: Path) -> None:
    path = write(tmp_path / "eu.csv", "Artikel;Menge;Preis\nA-1;1.200;1.234,50\nB-2;3;7,25\n")
    table = read_table(path, decimal=",", thousands=".")
    assert table.column_names == ["Artikel", "Menge", "Preis", "_sluice_line"]
    assert table.column("Menge").to_pylist() == [1200, 3]
    assert table.column("Preis").to_pylist() == [1234.5, 7.25]
    assert table.column("_sluice_line").to_pylist() == [2, 3]


@pytest.mark.parametrize(("name", "delimiter"), [("t.tsv", "\t"), ("p.psv", "|"), ("s.txt", ";")])
def test_other_delimiters(tmp_path: Path, name: str, delimiter: str) -> None:
    path = write(
        tmp_path / name, delimiter.join(["a", "b"]) + "\n" + delimiter.join(["1", "x"]) + "\n"
    )
    table = read_table(path)
    assert table.column("a").to_pylist() == [1]
    assert table.column("b").to_pylist() == ["x"]


def test_explicit_delimiter_wins_over_sniffing(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", "a;b,c\n1;2,3\n")
    table = read_table(path, delimiter=",")
    assert table.column_names[:2] == ["a;b", "c"]


def test_quoted_newlines_keep_exact_line_numbers(tmp_path: Path) -> None:
    text = 'id,note\n1,"two\nlines"\n2,plain\n3,"three\nline\nnote"\n4,end\n'
    table = read_table(write(tmp_path / "q.csv", text))
    assert table.column("note").to_pylist()[0] == "two\nlines"
    assert table.column("_sluice_line").to_pylist() == [2, 4, 5, 8]


def test_line_numbers_stay_exact_across_batches(tmp_path: Path) -> None:
    rows = [f'{i},"multi\nline {i}"' if i % 3 == 0 else f"{i},one" for i in range(20_000)]
    table = read_table(
        write(tmp_path / "big.csv", "id,v\n" + "\n".join(rows) + "\n"), batch_bytes=64 * 1024
    )
    lines = table.column("_sluice_line").to_pylist()
    expected, line = [], 2
    for i in range(20_000):
        expected.append(line)
        line += 2 if i % 3 == 0 else 1
    assert lines == expected


def test_title_rows_skipped_with_header_row(tmp_path: Path) -> None:
    text = "Sales export\ngenerated 2026-11-01\n\nstore,amount\n1,2.5\n"
    table = read_table(write(tmp_path / "t.csv", text), header_row=4)
    assert table.column("store").to_pylist() == [1]
    assert table.column("_sluice_line").to_pylist() == [5]


def test_no_header_names_columns(tmp_path: Path) -> None:
    table = read_table(write(tmp_path / "n.csv", "1,a\n2,b\n"), header=False)
    assert table.column_names == ["f0", "f1", "_sluice_line"]
    assert table.column("_sluice_line").to_pylist() == [1, 2]


def test_null_values_and_declared_types(tmp_path: Path) -> None:
    path = write(tmp_path / "n.csv", "zip,amount,flag\n01234,--,true\n99999,5,false\n")
    table = read_table(path, null_values=["--"], column_types={"zip": "string"})
    assert table.column("zip").to_pylist() == ["01234", "99999"]
    assert table.column("amount").to_pylist() == [None, 5]
    assert table.column("flag").to_pylist() == [True, False]


def test_leading_zero_ids_stay_strings(tmp_path: Path) -> None:
    table = read_table(write(tmp_path / "z.csv", "plz\n01067\n10115\n"))
    assert table.column("plz").to_pylist() == ["01067", "10115"]


def test_dates_and_timestamps_are_inferred(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "d,t\n2026-01-02,2026-01-02 10:11:12\n")
    table = read_table(path)
    assert table.column("d").to_pylist() == [dt.date(2026, 1, 2)]
    assert table.column("t").to_pylist() == [dt.datetime(2026, 1, 2, 10, 11, 12)]


def test_na_late_in_an_integer_column_is_null_and_schema_holds(tmp_path: Path) -> None:
    rows = [f"{i},{i}" for i in range(50_000)] + ["50000,N/A"]
    table = read_table(
        write(tmp_path / "late.csv", "id,n\n" + "\n".join(rows) + "\n"), batch_bytes=64 * 1024
    )
    assert str(table.schema.field("n").type) == "int64"
    assert table.column("n").to_pylist()[-1] is None
    assert table.num_rows == 50_001


def test_a_wider_value_within_the_sample_widens_the_type(tmp_path: Path) -> None:
    rows = [f"{i},{i}" for i in range(50_000)] + ["50000,12.5"]
    table = read_table(
        write(tmp_path / "w.csv", "id,n\n" + "\n".join(rows) + "\n"), batch_bytes=64 * 1024
    )
    assert str(table.schema.field("n").type) == "double"
    assert table.column("n").to_pylist()[-1] == 12.5


def test_late_value_of_another_type_fails_with_line_and_column(tmp_path: Path) -> None:
    rows = [f"{i},{i}" for i in range(200_000)] + ["200000,12.5"]
    path = write(tmp_path / "late.csv", "id,n\n" + "\n".join(rows) + "\n")
    with pytest.raises(BadInput) as caught:
        read_table(path, batch_bytes=64 * 1024)
    err = caught.value
    assert err.context.line == 200_002
    assert err.context.column == "n"
    assert "'12.5'" in err.message and "column_types" in err.message


def test_declared_type_reads_the_late_value(tmp_path: Path) -> None:
    rows = [f"{i},{i}" for i in range(200_000)] + ["200000,12.5"]
    path = write(tmp_path / "late.csv", "id,n\n" + "\n".join(rows) + "\n")
    table = read_table(path, batch_bytes=64 * 1024, column_types={"n": "float64"})
    assert table.column("n").to_pylist()[-1] == 12.5


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [
        ("utf-8", b""),
        ("utf-8", codecs.BOM_UTF8),
        ("cp1252", b""),
        ("utf-16-le", codecs.BOM_UTF16_LE),
    ],
)
def test_encodings_are_detected(tmp_path: Path, encoding: str, bom: bytes) -> None:
    path = tmp_path / "e.txt"
    path.write_bytes(bom + "Straße\tPreis €\r\nMüller\t3\r\n".encode(encoding))
    table = read_table(path)
    assert table.column_names[:2] == ["Straße", "Preis €"]
    assert table.column("Straße").to_pylist() == ["Müller"]


def test_declared_latin1(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_bytes("name\ncafé\n".encode("latin-1"))
    assert read_table(path, encoding="latin-1").column("name").to_pylist() == ["café"]


def test_ragged_row_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", 'a,b\n1,"x\ny"\n2,y,extra\n')
    with pytest.raises(BadInput) as caught:
        read_table(path)
    assert caught.value.context.line == 4
    assert "expected 2 fields, found 3 (too many)" in caught.value.message


def test_ragged_rows_skipped_when_asked(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "a,b\n1,x\n2\n3,z\n")
    table = read_table(path, on_bad_row="skip")
    assert table.column("a").to_pylist() == [1, 3]


@pytest.mark.parametrize("text", ["", "a,b,c\n", "a,b,c"])
def test_empty_and_header_only_files_give_zero_rows(tmp_path: Path, text: str) -> None:
    assert read_table(write(tmp_path / "e.csv", text)).num_rows == 0


def test_binary_garbage_named_csv_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "garbage.csv"
    path.write_bytes(bytes(range(256)) * 10)
    with pytest.raises(BadInput, match="binary data"):
        read_table(path)


def test_line_over_the_limit_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "long.csv", "a,b\n1," + "x" * 300_000 + "\n")
    with pytest.raises(BadInput, match="longer than the limit"):
        read_table(path, batch_bytes=64 * 1024)


def test_duplicate_and_blank_header_names_are_made_unique(tmp_path: Path) -> None:
    table = read_table(write(tmp_path / "h.csv", "a,a,\n1,2,3\n"))
    assert table.column_names == ["a", "a_2", "column_3", "_sluice_line"]


def test_fixed_width_layout(tmp_path: Path) -> None:
    text = "ID  NAME      AMOUNT\n001 alpha      12.50\n\n002 beta        3.00\n"
    columns = [
        {"name": "id", "start": 1, "width": 3},
        {"name": "name", "start": 5, "end": 13},
        {"name": "amount", "start": 14, "width": 7},
    ]
    table = read_table(write(tmp_path / "fw.txt", text), columns=columns)
    assert table.column("id").to_pylist() == ["001", "002"]
    assert table.column("name").to_pylist() == ["alpha", "beta"]
    assert table.column("amount").to_pylist() == [12.5, 3.0]
    assert table.column("_sluice_line").to_pylist() == [2, 4]


def test_fixed_width_without_layout_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="column layout"):
        read_table(write(tmp_path / "fw.dat", "x\n"), fmt="fixed")


def test_fixed_width_in_the_wrong_encoding_names_it(tmp_path: Path) -> None:
    path = write(tmp_path / "fw.txt", "ID NAME\n001 café\n", "latin-1")
    columns = [{"name": "id", "start": 1, "width": 3}, {"name": "name", "start": 5, "width": 4}]
    with pytest.raises(BadInput, match=r"not valid ascii text .*source.options.encoding"):
        read_table(path, fmt="fixed", encoding="ascii", columns=columns)


def test_max_rows_limits_a_unit(tmp_path: Path) -> None:
    path = write(tmp_path / "m.csv", "a\n" + "\n".join(map(str, range(100))) + "\n")
    assert read_table(path, max_rows=10).num_rows == 10


def test_padded_numbers_fall_back_to_the_converter(tmp_path: Path) -> None:
    table = read_table(write(tmp_path / "p.csv", "a,b\n 1 , 2.5\n2,3\n"))
    assert table.column("a").to_pylist() == [1, 2]
    assert table.column("b").to_pylist() == [2.5, 3.0]


def test_late_bad_value_on_the_fast_path_names_line_and_column(tmp_path: Path) -> None:
    rows = [f"{i},2026-01-01" for i in range(100_000)] + ["100000,soon"]
    path = write(tmp_path / "d.csv", "id,day\n" + "\n".join(rows) + "\n")
    with pytest.raises(BadInput) as caught:
        read_table(path, batch_bytes=64 * 1024)
    assert (caught.value.context.line, caught.value.context.column) == (100_002, "day")


def test_bracketed_header_is_not_mistaken_for_json(tmp_path: Path) -> None:
    table = read_table(write(tmp_path / "b.csv", "[Date],[Amount]\n2026-01-02,3\n"))
    assert table.column("[Amount]").to_pylist() == [3]


def test_newline_search_sees_only_the_values_of_a_slice() -> None:
    values = pa.array(["ab", "c\nd", None, "ef"])
    assert _has_newline(values)
    assert _has_newline(values.slice(1, 1))
    assert not _has_newline(values.slice(2))  # the newline before the slice does not count
    assert not _has_newline(values.slice(0, 1))
    assert not _has_newline(pa.array([], pa.string()))
    assert not _has_newline(pa.array([None, None], pa.string()))


@pytest.mark.parametrize("newline", ["\n", "\r"])
def test_types_are_planned_from_whole_lines_whatever_the_line_break(
    tmp_path: Path, newline: str
) -> None:
    """The 1 MiB planning sample ends inside a date: it is cut back to the last line break, a
    lone CR ("CSV (Macintosh)") as well as LF, so the cut value does not make the column text."""
    path = tmp_path / "mac.csv"
    header = f"id;day{newline}"
    line = "{:07d};2026-01-02" + newline  # 19 bytes: the sample's end falls 16 bytes into a line
    rows = 60_000
    path.write_text(header + "".join(line.format(i) for i in range(rows)), newline="")
    assert (2**20 - len(header)) % len(line.format(0)) == 16
    table = read_table(path)
    assert table.schema.field("day").type == pa.date32()
    assert table.num_rows == rows
    assert table.column("day")[-1].as_py() == dt.date(2026, 1, 2)
