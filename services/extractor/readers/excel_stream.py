"""Workbooks too big to hold in memory, read row by row.

calamine decodes a whole sheet before the first row comes out: about 1.6 bytes of memory per
byte of the sheet's XML, so a million-row export needs more than an extractor pod has. Above
``ReadLimits.excel_in_memory_bytes`` of sheet XML the reader switches to streaming: openpyxl's
read-only mode reads the workbook's parts (sheet names, shared strings, date styles, the date
system) and :mod:`.sheet_xml` parses the sheet's cells as a stream (memory stays flat; about
four times slower than calamine). The classes here present those sheets the way calamine
does, so everything after the decoding (header, title rows, ranges, typing, lineage, errors) is
the same code whichever decoder ran:

- empty cells are ``""``; rows come from row 1, each from the first used column, whose
  position the sheet's dimension record gives (every common writer fills it in);
- a date or time at exactly midnight is a ``date``, as calamine gives it;
- error cells (``#DIV/0!``) are ``""``, as calamine hides them; they are found in the file
  afterwards for the warning (:mod:`.excel_errors`).
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import openpyxl.reader.excel
import python_calamine as calamine
from openpyxl.worksheet._read_only import ReadOnlyWorksheet

from services.extractor.readers.cells import cell_position
from services.extractor.readers.sheet_xml import SheetRows

_DIMENSION = re.compile(rb"<(?:\w+:)?dimension\b[^>]*\bref=\"([A-Z]+[0-9]+)(?::[A-Z]+[0-9]+)?\"")
_HEAD_BYTES = 64 * 1024
"""The dimension record comes before the cells: only the start of the sheet XML is read."""


def largest_sheet_bytes(path: Path) -> int:
    """Uncompressed size of the biggest worksheet part of an xlsx/xlsm file (0 if none)."""
    try:
        with zipfile.ZipFile(path) as archive:
            sizes = [
                info.file_size
                for info in archive.infolist()
                if info.filename.startswith("xl/worksheets/") and info.filename.endswith(".xml")
            ]
    except (zipfile.BadZipFile, OSError):
        return 0
    return max(sizes, default=0)


class _SizedFromHead(ReadOnlyWorksheet):
    """openpyxl's read-only sheet, sized from the start of its XML.

    openpyxl looks for the dimension record with an XML pass that, when the record is absent
    (openpyxl's own write-only mode omits it), runs to the end of the sheet data: a whole extra
    parse of the biggest part of the file, for every sheet, when the workbook is opened.
    """

    def _get_size(self) -> None:
        with self._get_source() as source:  # type: ignore[attr-defined]
            head = source.read(_HEAD_BYTES)
        match = _DIMENSION.search(head)
        if match is not None:
            row, col = cell_position(match.group(1).decode())
            self._min_column, self._min_row = col + 1, row


# openpyxl creates its read-only sheets itself, from this module attribute.
openpyxl.reader.excel.ReadOnlyWorksheet = _SizedFromHead  # type: ignore[attr-defined]


class StreamedSheet:
    """One worksheet, with the attributes of a calamine sheet the Excel reader uses."""

    def __init__(self, sheet: Any) -> None:
        self._sheet = sheet
        self.name: str = sheet.title
        first_row, first_col = sheet.min_row or 1, sheet.min_column or 1
        # Only the dimension record's top-left corner is used: the cells themselves say how
        # far the sheet goes (a writer may get the far corner wrong).
        self.start: tuple[int, int] | None = (first_row - 1, first_col - 1)
        self._rows: SheetRows | None = None

    def iter_rows(self) -> Iterator[list[Any]]:
        """Rows from the sheet's row 1, each from the first used column on (as calamine)."""
        left = (self.start or (0, 0))[1]
        book = self._sheet.parent
        following = 1
        with self._sheet._get_source() as source:
            self._rows = rows = SheetRows(
                source,
                self._sheet._shared_strings,
                book._date_formats,
                book._timedelta_formats,
                book.epoch,
            )
            for number, cells in rows:
                while following < number:  # rows the XML leaves out are empty
                    yield []
                    following += 1
                following = max(following, number + 1)
                # Cut here, not where the row was parsed: this loop takes a row before it hands
                # out the empty ones above it, maybe before the reader set the limit.
                del cells[rows.column_limit :]
                yield cells[left:] if left else cells

    def limit_columns(self, count: int) -> None:
        """Leave out the cells from column ``count`` on (0-based, counted from column A): the
        reader knows its columns once it has the header, and a sparse cell far to the right
        must not make every row that wide."""
        if self._rows is not None:
            self._rows.limit_columns(count)


class StreamedWorkbook:
    """An xlsx/xlsm file opened for streaming, with calamine's workbook methods."""

    def __init__(self, path: Path) -> None:
        self._book = openpyxl.load_workbook(path, read_only=True, data_only=True)

    @property
    def sheet_names(self) -> list[str]:
        return list(self._book.sheetnames)

    def get_sheet_by_name(self, name: str) -> StreamedSheet:
        if name not in self._book.sheetnames:
            raise calamine.WorksheetNotFound(name)  # as calamine's own workbooks do
        return StreamedSheet(self._book[name])

    def get_sheet_by_index(self, index: int) -> StreamedSheet:
        return StreamedSheet(self._book.worksheets[index])

    def close(self) -> None:
        self._book.close()
