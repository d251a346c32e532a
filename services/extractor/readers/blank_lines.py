"""The empty lines of a delimited file, so that ``_sluice_line`` stays the physical line.

pyarrow's csv parser drops empty lines without a trace, and a row's line is counted from the
records before it (one line each, plus the newlines quoted inside their fields), so every
empty line would move the rows after it up by one. Most files have none: one regular
expression count over the bytes (RE2 inside Arrow, about 10 GB/s, without the GIL) says so and
nothing more is done. A file that has some is read once more to place them, leaving out the
newlines inside quoted values (the parity of the quote characters before them) and the title
lines that ``skip_rows`` skips as they are.

Only encodings that write ``\\n`` and the quote as single ASCII bytes are scanned (utf-8,
cp1252, latin-1, ...); in a UTF-16 file empty lines still move the numbers after them.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_CANDIDATES = rb"\n\r?\n"
_BEFORE_EMPTY = re.compile(rb"\n(?=\r?\n)")
"""The newline ending the line before an empty line (a lookahead: runs of them all match)."""
_CHUNK_BYTES = 16 * 1024 * 1024


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
    path: Path, encoding: str, quotechar: str, after_line: int
) -> BlankLines | None:
    """The empty lines past ``after_line`` (the lines skipped as they are), or None if none."""
    try:
        newline, quote = "\n".encode(encoding), quotechar.encode(encoding)
    except (UnicodeError, LookupError):
        return None
    if newline != b"\n" or len(quote) != 1 or codecs.lookup(encoding).name.startswith("utf-16"):
        return None
    if not _has_candidates(path):
        return None
    lines = [line for line in _empty_lines(path, quote) if line > after_line]
    return BlankLines(lines) if lines else None


def _has_candidates(path: Path) -> bool:
    """Whether the bytes hold ``\\n\\n`` or ``\\n\\r\\n`` anywhere (quoted or not), or start
    with an empty line."""
    buffer = bytearray(_CHUNK_BYTES)  # one buffer, refilled: no allocation per chunk
    view = memoryview(buffer)
    previous = b"\n"  # as if a line ended before the file: an empty first line is seen
    with path.open("rb", buffering=0) as handle:
        while length := handle.readinto(view):
            seam = previous + bytes(view[: min(2, length)])  # a candidate across two chunks
            if b"\n\n" in seam or b"\n\r\n" in seam:
                return True
            offsets = pa.py_buffer(np.array([0, length], dtype=np.int64))
            chunk = pa.py_buffer(view[:length])  # zero-copy
            array = pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, chunk])
            if pc.count_substring_regex(array, _CANDIDATES)[0].as_py():
                return True
            previous = bytes(view[max(0, length - 2) : length])
    return False


def _empty_lines(path: Path, quote: bytes) -> list[int]:
    """Physical numbers of the empty lines outside quoted values."""
    found: list[int] = []
    lines_before = 0  # newlines before the current piece
    quotes_before = 0
    carry = b""
    with path.open("rb") as handle:
        while True:
            data = handle.read(_CHUNK_BYTES)
            piece = carry + data
            if data:
                cut = piece.rfind(b"\n") + 1  # whole lines only; the rest waits for more
                piece, carry = piece[:cut], piece[cut:]
            if not piece:
                if not data:
                    break
                continue
            starts = [0] if piece.startswith((b"\n", b"\r\n")) else []
            starts += [match.end() for match in _BEFORE_EMPTY.finditer(piece)]
            position = lines = quotes = 0
            for start in starts:
                lines += piece.count(b"\n", position, start)
                quotes += piece.count(quote, position, start)
                position = start
                if (quotes_before + quotes) % 2 == 0:  # not inside a quoted value
                    found.append(lines_before + lines + 1)
            lines_before += piece.count(b"\n")
            quotes_before += piece.count(quote)
            if not data:
                break
    return found


__all__ = ["BlankLines", "find_blank_lines"]
