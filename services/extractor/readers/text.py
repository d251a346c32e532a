"""Text helpers shared by the delimited and fixed-width readers: encodings and samples."""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

from services.common.errors import BadInput
from services.common.spec.source import SourceOptions

SAMPLE_BYTES = 64 * 1024
LINE_BREAK = re.compile(r"\r\n|\r|\n")
"""The line breaks of delimited text, as pyarrow's parser and the csv module know them
(``str.splitlines`` knows more: a form feed is no line break here)."""

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_ALIASES = {"utf8": "utf-8", "latin1": "latin-1", "windows-1252": "cp1252", "utf16": "utf-16"}


def head(path: Path, size: int = SAMPLE_BYTES) -> bytes:
    with path.open("rb") as handle:
        return handle.read(size)


def detect_encoding(path: Path, options: SourceOptions) -> str:
    """The Python codec of the file: declared, else from the BOM, else utf-8, else cp1252."""
    declared = options.encoding.lower()
    sample = head(path)
    if declared != "auto":
        name = _ALIASES.get(declared, declared)
        try:
            codecs.lookup(name)
        except LookupError:
            raise BadInput(f"unknown encoding {options.encoding!r}", file=str(path)) from None
        if name in ("utf-8", "utf-8-sig") and sample.startswith(codecs.BOM_UTF8):
            return "utf-8-sig"
        return name
    for bom, name in _BOMS:
        if sample.startswith(bom):
            return name
    if b"\x00" in sample:
        raise BadInput(
            "binary data (NUL bytes) in a text file; is the format right? "
            "(UTF-16 text needs a BOM or source.options.encoding: utf-16-le)",
            file=str(path),
        )
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        return "cp1252"
    return "utf-8"


def sample_text(path: Path, encoding: str, size: int = SAMPLE_BYTES) -> str:
    """The decoded start of the file (a truncated last character is dropped)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    try:
        return str(decoder.decode(head(path, size), final=False))
    except UnicodeDecodeError as exc:
        raise BadInput(
            f"not valid {encoding} text near byte {exc.start}; set source.options.encoding",
            file=str(path),
        ) from None


def undecodable(path: Path, encoding: str, exc: UnicodeDecodeError) -> BadInput:
    """The error for text that is not in the encoding it is read with, met while streaming."""
    return BadInput(
        f"not valid {encoding} text ({exc.reason}); set source.options.encoding", file=str(path)
    )


def pyarrow_encoding(encoding: str) -> str:
    """pyarrow reads utf-8 natively (BOM included); other codecs are transcoded by Python."""
    return "utf8" if encoding in ("utf-8", "utf-8-sig") else encoding


def open_text(path: Path, encoding: str) -> io.TextIOWrapper:
    return open(path, encoding=encoding, errors="replace", newline="")


# The readers bound a record's size themselves (``max_line_bytes``); the csv module's own
# limit (128 KiB per field) would fail the passes below on files the reader accepted.
csv.field_size_limit(2**31 - 1)


def csv_records(
    path: Path, encoding: str, delimiter: str, quotechar: str, skip_rows: int = 0
) -> Iterator[tuple[int, list[str]]]:
    """(first physical line, fields) of every record after ``skip_rows`` lines, read with the
    standard csv module (slow: only to find lines, which pyarrow does not report); an empty
    line is a record without fields."""
    with open_text(path, encoding) as handle:
        for _ in range(skip_rows):
            handle.readline()
        reader = csv.reader(handle, delimiter=delimiter, quotechar=quotechar)
        previous_end = skip_rows
        for row in reader:
            yield previous_end + 1, row
            previous_end = reader.line_num + skip_rows
