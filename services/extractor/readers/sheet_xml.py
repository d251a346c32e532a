"""The rows of one worksheet's XML, parsed as a stream by expat.

For sheets too big to decode in memory (see :mod:`.excel_stream`). openpyxl's own read-only
parser builds an element tree per row and a dictionary per cell, through defusedxml's
pure-Python parser: about nine times slower than calamine. Here expat (C) calls three small
handlers per element and a row is a list of values: two to three times faster than openpyxl.

Values come out as calamine gives them: numbers (int or float), texts, booleans, datetimes
(dates when at midnight) for cells styled as dates; empty and error cells are ``""`` (error
cells are found in the file afterwards for the warning, see :mod:`.excel_errors`).

The XML comes from an untrusted file: a document type declaration (which no worksheet has) is
refused, so no entity is ever defined; expat itself also limits entity amplification.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import IO, Any
from xml.parsers import expat

from openpyxl.utils.datetime import from_excel

from services.extractor.readers.cells import column_index

_NAMESPACES = (
    "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
    "http://purl.oclc.org/ooxml/spreadsheetml/main",  # "strict" Open XML
    "",
)
_LOCAL_NAMES = ("row", "c", "v", "is", "t", "rPh")
_TAGS = {(f"{ns} {local}" if ns else local): local for ns in _NAMESPACES for local in _LOCAL_NAMES}
_FIRST_CHUNK_BYTES = 8 * 1024
_CHUNK_BYTES = 256 * 1024
"""XML fed to expat at a time: the rows it holds are all in memory before they are handed out.
The first chunks are small: until the reader has the header and limits the columns, a row
may be as wide as the sheet."""
_MAX_COLUMNS = 16_384  # column XFD
_MAX_ROWS = 1_048_576
"""Excel's own limits: a reference past them is refused, not turned into millions of cells."""
_MIDNIGHT = dt.time()
_DIGITS = "0123456789"
_NUMBER = re.compile(
    r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)", re.I | re.ASCII
)
"""What calamine reads as a number (Rust's float syntax: ASCII digits only); any other text
stays text."""


class SheetXmlError(ValueError):
    """The worksheet XML is not well-formed, declares a document type, or holds a cell that is
    not a valid value."""


class _Handlers:
    """expat's callbacks: cells collected into rows, finished rows into ``done``."""

    def __init__(
        self, strings: list[str], date_styles: set[int], duration_styles: set[int], epoch: Any
    ) -> None:
        self.strings = strings
        self.date_styles = date_styles
        self.duration_styles = duration_styles
        self.epoch = epoch
        self.done: list[tuple[int, list[Any]]] = []
        self.column_limit = _MAX_COLUMNS
        """Cells from this column on are dropped: the reader does not use them."""
        self._next_column = 0
        self._columns: dict[str, int] = {}  # "AB" -> 27, cached: a sheet uses few letters
        self._row_number = 0
        self._cells: list[Any] = []
        self._ref: str | None = None
        self._type = "n"
        self._style = 0
        self._text: list[str] = []
        self._collect = False
        self._inline = False
        self._phonetic = False

    def start(self, name: str, attrs: dict[str, str]) -> None:
        tag = _TAGS.get(name)
        if tag == "c":
            self._ref = attrs.get("r")
            self._type = attrs.get("t", "n")
            style = attrs.get("s")
            self._style = _whole(style) or 0
            self._text = []
        elif tag == "v":
            self._collect = True
        elif tag == "t":
            self._collect = self._inline and not self._phonetic
        elif tag == "row":
            number = attrs.get("r")
            row = self._row_number + 1 if number is None else _whole(number)
            if row is None or not 0 < row <= _MAX_ROWS:
                raise SheetXmlError(f"row number {number!r} is not a row of a sheet")
            self._row_number = row
            self._cells = []
            self._next_column = 0
        elif tag == "is":
            self._inline = True
            self._type = "inlineStr"  # whatever the cell says (as calamine reads it)
        elif tag == "rPh":  # phonetic reading of Asian text: not part of the value
            self._phonetic = True

    def end(self, name: str) -> None:
        tag = _TAGS.get(name)
        if tag == "c":
            try:
                value = self._value()
            except ValueError as exc:
                cell = self._ref or f"row {self._row_number}, column {self._next_column + 1}"
                raise SheetXmlError(f"cell {cell}: {exc}") from None
            self._place(value)
        elif tag == "v" or tag == "t":
            self._collect = False
        elif tag == "row":
            self.done.append((self._row_number, self._cells))
        elif tag == "is":
            self._inline = False
        elif tag == "rPh":
            self._phonetic = False

    def text(self, data: str) -> None:
        if self._collect:
            self._text.append(data)

    def _place(self, value: Any) -> None:
        # Cells may leave their reference out: then they are in the next column.
        column = self._next_column if self._ref is None else self._column(self._ref)
        self._next_column = column + 1
        if value == "" or column >= self.column_limit:
            return  # an empty cell adds nothing: a row is only as long as its last value
        cells = self._cells
        if column > len(cells):
            cells.extend([""] * (column - len(cells)))
        if column == len(cells):
            cells.append(value)
        else:
            cells[column] = value

    def _column(self, ref: str) -> int:
        letters = ref.rstrip(_DIGITS)
        column = self._columns.get(letters)
        if column is None:
            if not (letters.isascii() and letters.isalpha() and len(letters) <= 3):
                raise SheetXmlError(f"cell reference {ref!r} is not a cell of a sheet")
            column = column_index(letters)
            if column >= _MAX_COLUMNS:
                raise SheetXmlError(f"cell reference {ref!r} is not a cell of a sheet")
            self._columns[letters] = column
        return column

    def _value(self) -> Any:
        text = "".join(self._text)
        kind = self._type
        if kind == "n":
            if not text:
                return ""
            number = _number(text)
            if number.__class__ is str:
                return number  # not a number: calamine gives the text
            if self._style in self.date_styles:
                return self._date(number)
            return number
        if kind == "s":
            if not text:
                return ""
            index = int(text)
            if not 0 <= index < len(self.strings):
                raise ValueError(f"shared string {index} does not exist")
            return self.strings[index]
        if kind == "str" or kind == "inlineStr":
            return text
        if kind == "b":
            return text.strip().lower() in ("1", "true")
        if kind == "d":  # an ISO 8601 date or time written as such (rare)
            return _iso_date(text.strip()) if text else ""
        return ""  # "e": an error cell (#DIV/0!), read as empty as calamine does

    def _date(self, serial: float) -> Any:
        try:
            value = from_excel(serial, self.epoch, timedelta=self._style in self.duration_styles)
        except (OverflowError, ValueError):
            return ""  # a serial outside Excel's dates: an error cell to Excel
        return _midnight_as_date(value) if isinstance(value, dt.datetime) else value


def _number(text: str) -> Any:
    """The number a cell's text writes (int when whole), or the text itself if it is none."""
    if text.isdigit() and text.isascii():  # the usual case, without a regular expression
        return int(text)
    if _NUMBER.fullmatch(text) is None:
        return text
    return int(text) if text.lstrip("+-").isdigit() else float(text)  # -3; 2.5, 1E+20, INF


def _whole(text: str | None) -> int | None:
    """A row or style number; None when the text is not one (``isdigit`` also takes ``²``)."""
    if text and text.isascii() and text.isdigit():
        return int(text)
    return None


def _iso_date(text: str) -> dt.date | dt.datetime | dt.time:
    try:
        return _midnight_as_date(dt.datetime.fromisoformat(text))
    except ValueError:
        return dt.time.fromisoformat(text)  # a time of day alone; else the cell's error


def _midnight_as_date(value: dt.datetime) -> dt.date | dt.datetime:
    return value.date() if value.time() == _MIDNIGHT else value


def _refuse_dtd(*_: Any) -> None:
    raise SheetXmlError("the worksheet XML declares a document type, which Excel never writes")


class SheetRows:
    """(row number, cells from column A) of each ``<row>`` of a sheet's XML, in file order.

    Rows the XML leaves out (no cells) do not appear; cells between filled ones are ``""``.
    The XML is fed a chunk at a time, so memory holds one chunk's rows whatever the sheet's
    size; setting ``column_limit`` once the reader knows its columns keeps rows that narrow.
    """

    def __init__(
        self,
        source: IO[bytes],
        strings: list[str],
        date_styles: set[int],
        duration_styles: set[int],
        epoch: Any,
    ) -> None:
        self._source = source
        self._handlers = _Handlers(strings, date_styles, duration_styles, epoch)

    @property
    def column_limit(self) -> int:
        return self._handlers.column_limit

    def limit_columns(self, count: int) -> None:
        """Leave out the cells from column ``count`` on (0-based, from column A) in the rows
        parsed from now on (rows already parsed are as wide as they were)."""
        self._handlers.column_limit = count

    def __iter__(self) -> Iterator[tuple[int, list[Any]]]:
        handlers = self._handlers
        parser = expat.ParserCreate(namespace_separator=" ")
        parser.buffer_text = True
        parser.StartElementHandler = handlers.start
        parser.EndElementHandler = handlers.end
        parser.CharacterDataHandler = handlers.text
        parser.StartDoctypeDeclHandler = _refuse_dtd
        parser.EntityDeclHandler = _refuse_dtd
        size = _FIRST_CHUNK_BYTES
        try:
            while chunk := self._source.read(size):
                size = min(2 * size, _CHUNK_BYTES)
                parser.Parse(chunk, False)
                yield from handlers.done
                handlers.done = []
            parser.Parse(b"", True)
        except expat.ExpatError as exc:
            raise SheetXmlError(f"the worksheet XML is not well-formed: {exc}") from None
        yield from handlers.done


__all__ = ["SheetRows", "SheetXmlError"]
