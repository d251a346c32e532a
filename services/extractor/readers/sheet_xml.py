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
from collections.abc import Iterator
from typing import IO, Any
from xml.parsers import expat

from openpyxl.utils.datetime import from_excel

_NAMESPACES = (
    "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
    "http://purl.oclc.org/ooxml/spreadsheetml/main",  # "strict" Open XML
    "",
)
_LOCAL_NAMES = ("row", "c", "v", "is", "t", "rPh")
_TAGS = {(f"{ns} {local}" if ns else local): local for ns in _NAMESPACES for local in _LOCAL_NAMES}
_CHUNK_BYTES = 1024 * 1024
_MIDNIGHT = dt.time()
_DIGITS = "0123456789"


class SheetXmlError(ValueError):
    """The worksheet XML is not well-formed, or declares a document type."""


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
            self._style = int(style) if style else 0
            self._text = []
        elif tag == "v":
            self._collect = True
        elif tag == "t":
            self._collect = self._inline and not self._phonetic
        elif tag == "row":
            number = attrs.get("r")
            self._row_number = int(number) if number else self._row_number + 1
            self._cells = []
        elif tag == "is":
            self._inline = True
        elif tag == "rPh":  # phonetic reading of Asian text: not part of the value
            self._phonetic = True

    def end(self, name: str) -> None:
        tag = _TAGS.get(name)
        if tag == "c":
            self._place(self._value())
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
        cells = self._cells
        ref = self._ref
        if ref is None:  # cells may leave their reference out: the next column
            cells.append(value)
            return
        letters = ref.rstrip(_DIGITS)
        column = self._columns.get(letters)
        if column is None:
            column = 0
            for letter in letters.upper():
                column = column * 26 + ord(letter) - 64
            column = self._columns[letters] = column - 1
        if column > len(cells):
            cells.extend([""] * (column - len(cells)))
        if column == len(cells):
            cells.append(value)
        else:
            cells[column] = value

    def _value(self) -> Any:
        text = "".join(self._text)
        kind = self._type
        if kind == "n":
            if not text:
                return ""
            number: int | float = (
                float(text) if "." in text or "E" in text or "e" in text else int(text)
            )
            if self._style in self.date_styles:
                return self._date(number)
            return number
        if kind == "s":
            return self.strings[int(text)] if text else ""
        if kind == "str" or kind == "inlineStr":
            return text
        if kind == "b":
            return text in ("1", "true")
        if kind == "d":  # an ISO 8601 date written as such (rare)
            return _midnight_as_date(dt.datetime.fromisoformat(text)) if text else ""
        return ""  # "e": an error cell (#DIV/0!), read as empty as calamine does

    def _date(self, serial: float) -> Any:
        try:
            value = from_excel(serial, self.epoch, timedelta=self._style in self.duration_styles)
        except (OverflowError, ValueError):
            return ""  # a serial outside Excel's dates: an error cell to Excel
        return _midnight_as_date(value) if isinstance(value, dt.datetime) else value


def _midnight_as_date(value: dt.datetime) -> dt.date | dt.datetime:
    return value.date() if value.time() == _MIDNIGHT else value


def _refuse_dtd(*_: Any) -> None:
    raise SheetXmlError("the worksheet XML declares a document type, which Excel never writes")


def iter_sheet_rows(
    source: IO[bytes],
    strings: list[str],
    date_styles: set[int],
    duration_styles: set[int],
    epoch: Any,
) -> Iterator[tuple[int, list[Any]]]:
    """(row number, cells from column A) of each ``<row>`` of the sheet XML, in file order.

    Rows the XML leaves out (no cells) do not appear; cells between filled ones are ``""``.
    The XML is fed a chunk at a time, so memory holds one chunk's rows whatever the sheet's
    size.
    """
    handlers = _Handlers(strings, date_styles, duration_styles, epoch)
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.buffer_text = True
    parser.StartElementHandler = handlers.start
    parser.EndElementHandler = handlers.end
    parser.CharacterDataHandler = handlers.text
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    try:
        while chunk := source.read(_CHUNK_BYTES):
            parser.Parse(chunk, False)
            yield from handlers.done
            handlers.done = []
        parser.Parse(b"", True)
    except expat.ExpatError as exc:
        raise SheetXmlError(f"the worksheet XML is not well-formed: {exc}") from None
    yield from handlers.done


__all__ = ["SheetXmlError", "iter_sheet_rows"]
