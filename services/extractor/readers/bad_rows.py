"""Ragged rows a delimited reader set aside (``on_bad_row: skip`` or ``quarantine``).

pyarrow hands every ragged row to a callback while it parses a block, with the row's record
number (counted from the file's start, skipped title rows and the header included; known only
when parsing is single-threaded, so such files parse on one thread). Knowing where the set-aside
records were keeps ``_sluice_line`` of the good rows exact, and gives each quarantined row its
own physical line.

Quarantined rows leave the reader as *rejected* batches (see :func:`.base.rejected_batch`):
the raw line text in ``raw`` plus the reject columns, loaded into ``<table>__rejected``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from services.common.spec.source import OnBadRow
from services.extractor.readers.base import rejected_batch
from services.extractor.readers.blank_lines import BlankLines
from services.extractor.readers.text import LINE_BREAK

RAW_COLUMN = "raw"
"""Column of a quarantined ragged row holding its text as read."""
CHECK_NAME = "bad_row"


def ragged_reason(expected: int, actual: int) -> str:
    """Why a record is ragged, e.g. ``expected 3 fields, found 4 (too many)``."""
    many = "too many" if actual > expected else "too few"
    return f"expected {expected} fields, found {actual} ({many})"


@dataclass(frozen=True)
class _BadRow:
    record: int
    text: str
    expected: int
    actual: int

    @property
    def span(self) -> int:
        return 1 + len(LINE_BREAK.findall(self.text))

    @property
    def reason(self) -> str:
        return ragged_reason(self.expected, self.actual)


class BadRows:
    """Collects ragged rows for one pass over a file and places them between the good rows."""

    def __init__(
        self, mode: OnBadRow, first_record: int, blank_lines: BlankLines | None = None
    ) -> None:
        self.mode = mode
        self.blank_lines = blank_lines
        """The file's empty lines, which pyarrow drops: they move the lines after them."""
        self.count = 0
        self.first_text = ""
        self._pending: list[_BadRow] = []
        self._placed: list[tuple[int, _BadRow]] = []
        self._lock = threading.Lock()  # pyarrow may call back from its parsing threads
        self.next_record = first_record

    @property
    def needs_record_numbers(self) -> bool:
        """Whether the parse must be serial, the only way pyarrow says where a ragged row was.
        Quarantine needs it to place each row; skip too, or the good rows after a skipped one
        would carry the wrong line. Only files read with ``on_bad_row`` set pay for it."""
        return self.mode != "error"

    def on_invalid(self, row: pacsv.InvalidRow) -> str:
        """pyarrow's ``invalid_row_handler``."""
        if self.mode == "error":
            return "error"
        with self._lock:
            self.count += 1
            if self.count == 1:
                self.first_text = row.text[:200]
            if row.number is not None:
                bad = _BadRow(row.number, row.text, row.expected_columns, row.actual_columns)
                self._pending.append(bad)
        return "skip"

    def line_numbers(self, spans: np.ndarray, first_line: int) -> tuple[np.ndarray, int]:
        """Physical first line of each good row of a batch, and the line after the batch.

        ``spans`` is the number of lines of each good row; ragged rows parsed before or inside
        the batch take their place between the good rows and move the lines after them.
        """
        records = self.next_record + np.arange(len(spans), dtype=np.int64)
        with self._lock:
            pending = sorted(self._pending, key=lambda bad: bad.record)
        inside: list[_BadRow] = []
        for bad in pending:
            if len(records) == 0 or bad.record > records[-1]:
                break
            records[records >= bad.record] += 1
            inside.append(bad)
        with self._lock:
            placed = {bad.record for bad in inside}
            self._pending = [bad for bad in self._pending if bad.record not in placed]
        total = int(records[-1] - self.next_record + 1) if len(records) else 0
        all_spans = np.ones(total, dtype=np.int64)
        all_spans[records - self.next_record] = spans
        for bad in inside:
            all_spans[bad.record - self.next_record] = bad.span
        starts = first_line + np.cumsum(all_spans) - all_spans
        if self.mode == "quarantine":  # skipped rows only move the lines after them
            for bad in inside:
                self._placed.append((int(starts[bad.record - self.next_record]), bad))
        self.next_record += total
        good = starts[records - (self.next_record - total)]
        return self._physical(good), first_line + int(all_spans.sum())

    def _physical(self, lines: np.ndarray) -> np.ndarray:
        """Lines counted over the records only, moved past the empty lines before them."""
        return lines if self.blank_lines is None else self.blank_lines.physical(lines)

    def take_rejected(self, next_line: int, *, final: bool = False) -> pa.RecordBatch | None:
        """Quarantined rows placed so far (``final``: all of them) as one rejected batch."""
        if self.mode != "quarantine":
            return None
        placed, self._placed = self._placed, []
        if final:
            with self._lock:
                rest = sorted(self._pending, key=lambda bad: bad.record)
                self._pending = []
            line, record = next_line, self.next_record
            for bad in rest:
                line += bad.record - record
                placed.append((line, bad))
                line, record = line + bad.span, bad.record + 1
        if not placed:
            return None
        lines = self._physical(np.array([line for line, _ in placed], dtype=np.int64))
        return rejected_batch(
            {RAW_COLUMN: pa.array([bad.text for _, bad in placed], pa.string())},
            lines=lines.tolist(),
            check=CHECK_NAME,
            reasons=[bad.reason for _, bad in placed],
        )


__all__ = ["CHECK_NAME", "RAW_COLUMN", "BadRows", "ragged_reason"]
