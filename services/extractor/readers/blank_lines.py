"""The empty lines of a delimited file, so that ``_sluice_line`` stays the physical line.

pyarrow's csv parser drops empty lines without a trace, and a row's line is counted from the
records before it (one line each, plus the newlines quoted inside their fields), so every
empty line would move the rows after it up by one. Most files have none: one regular
expression count over the bytes (RE2 inside Arrow, about 10 GB/s, without the GIL) says so and
nothing more is done. A file that has some is read once more to place them: by counting
newlines when it holds no quote character at all, else with the standard csv module, which
knows which newlines are inside quoted values (about twice the parse time, paid only by files
with both empty lines and quotes).
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from services.extractor.readers.text import csv_records

_CHUNK_BYTES = 16 * 1024 * 1024
_WITHOUT_BOM = {
    "utf-8-sig": ("utf-8",),
    "utf-16": ("utf-16-le", "utf-16-be"),
    "utf-32": ("utf-32-le", "utf-32-be"),
}
"""Codecs that write a byte order mark: an empty line's bytes in each byte order."""


class BlankLines:
    """Turns line numbers counted without the empty lines into physical line numbers."""

    def __init__(self, lines: list[int]) -> None:
        self.lines = lines
        """Physical numbers of the empty lines, in order."""
        # How many counted lines come before each empty line: a counted line goes after
        # every empty line that has fewer before it.
        self._counted_before = np.asarray(lines, dtype=np.int64) - 1 - np.arange(len(lines))

    def physical(self, counted: np.ndarray) -> np.ndarray:
        counted = np.asarray(counted, dtype=np.int64)
        return counted + np.searchsorted(self._counted_before, counted, side="left")


def find_blank_lines(
    path: Path, encoding: str, delimiter: str, quotechar: str, after_line: int
) -> BlankLines | None:
    """The empty lines past ``after_line`` (the title and header lines, which are skipped as
    they are), or None if there are none."""
    name = codecs.lookup(encoding).name
    orders = _WITHOUT_BOM.get(name, (name,))
    one_byte_newline = "\n".encode(orders[0]) == b"\n"
    patterns, longest = _candidates(orders)
    if not _has_candidates(path, patterns, longest, _content_end(path, one_byte_newline)):
        return None
    lines = _unquoted_empty_lines(path, orders[0], quotechar) if one_byte_newline else None
    if lines is None:  # title lines are skipped as they are, quotes and all, as pyarrow does
        records = csv_records(path, encoding, delimiter, quotechar, skip_rows=after_line)
        lines = [line for line, fields in records if not fields]
    lines = [line for line in lines if line > after_line]
    return BlankLines(lines) if lines else None


def _candidates(orders: tuple[str, ...]) -> tuple[list[bytes], int]:
    """Patterns of the bytes of an empty line (a line break right after another: ``\\n\\n``,
    ``\\n\\r`` or ``\\r\\r``) in each byte order of the file's encoding (RE2 and Python's re
    read them alike), and how many bytes the longest is.

    One pattern per first byte: RE2 then skips to that byte with memchr (10-27 GB/s); one
    pattern whose matches may start with either byte ran at 0.7 GB/s.
    """
    by_first_byte: dict[int, list[bytes]] = {}
    longest = 0
    for codec in orders:
        for text in ("\n\n", "\n\r", "\r\r"):  # a line break right after one
            encoded = text.encode(codec)
            longest = max(longest, len(encoded))
            escaped = b"".join(b"\\x%02x" % byte for byte in encoded)
            by_first_byte.setdefault(encoded[0], []).append(escaped)
    return [b"|".join(group) for group in by_first_byte.values()], longest


def _content_end(path: Path, one_byte_newline: bool) -> int:
    """Where the scan may stop: within the run of line breaks that ends many files (they move
    no row, and would cost a second pass for nothing); the run's first byte stays, as the last
    line's own line break starts with it."""
    size = path.stat().st_size
    if not one_byte_newline:
        return size
    with path.open("rb") as handle:
        handle.seek(max(0, size - 4096))
        tail = handle.read()
    run = len(tail) - len(tail.rstrip(b"\r\n"))
    return size - run + min(run, 1)  # the last line keeps its own newline


def _has_candidates(path: Path, patterns: list[bytes], longest: int, end: int) -> bool:
    """Whether the first ``end`` bytes hold an empty line's bytes (inside quotes or not); the
    longest of them is ``longest`` bytes."""
    seams = re.compile(b"|".join(patterns))
    buffer = bytearray(_CHUNK_BYTES)  # one buffer, refilled: no allocation per chunk
    view = memoryview(buffer)
    previous = b""
    with path.open("rb", buffering=0) as handle:
        while length := handle.readinto(view[: end - handle.tell()]):
            seam = previous + bytes(view[: min(longest, length)])  # across two chunks
            if seams.search(seam):
                return True
            offsets = pa.py_buffer(np.array([0, length], dtype=np.int64))
            chunk = pa.py_buffer(view[:length])  # zero-copy
            array = pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, chunk])
            if any(pc.count_substring_regex(array, p.decode())[0].as_py() for p in patterns):
                return True
            previous = bytes(view[max(0, length - longest) : length])
    return False


def _unquoted_empty_lines(path: Path, codec: str, quotechar: str) -> list[int] | None:
    """Physical numbers of the empty lines of a file whose newline is one byte, found by
    counting newlines; None when the quote character is not one byte or is in the file (a
    newline may then be inside a value)."""
    quote = quotechar.encode(codec, errors="replace")
    if len(quote) != 1:
        return None
    found: list[int] = []
    lines_before = 0  # newlines before the current piece
    carry = b""
    with path.open("rb") as handle:
        while True:
            data = handle.read(_CHUNK_BYTES)
            piece = carry + data
            if data:
                cut = piece.rfind(b"\n") + 1  # whole lines only; the rest waits for more
                piece, carry = piece[:cut], piece[cut:]
            if quote in piece or piece.count(b"\r") != piece.count(b"\r\n"):
                return None  # a quote, or a line ending in a lone \r: the csv module decides
            if piece.startswith((b"\n", b"\r\n")):  # pieces start at a line's start
                found.append(lines_before + 1)
            position = lines = 0
            for match in _BEFORE_EMPTY.finditer(piece):
                lines += piece.count(b"\n", position, match.end())
                position = match.end()
                found.append(lines_before + lines + 1)
            lines_before += piece.count(b"\n")
            if not data:
                return found


_BEFORE_EMPTY = re.compile(rb"\n(?=\r?\n)")
"""The newline ending the line before an empty line (a lookahead: runs of them all match)."""


__all__ = ["BlankLines", "find_blank_lines"]
