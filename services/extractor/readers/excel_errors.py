"""Where a workbook's error cells (``#DIV/0!``, ``#N/A``, ...) are.

python-calamine (0.9) hands error cells to Python as empty strings, the same as blank cells
(python-calamine issue #105), so the reader cannot tell them apart. They become nulls either
way; this module finds them in the file itself so the warning can name the sheet, the cells and
the count. It reads only what locates errors, at C speed where it can:

- xlsx / xlsm: the sheet XML is decompressed in chunks and searched for ``t="e"`` cells (a
  byte search; the cell reference is parsed only around a hit);
- xls (BIFF8): the records of the ``Workbook`` stream are walked for BOOLERR records with the
  error flag and FORMULA records whose cached result is an error;
- ods: ``content.xml`` is searched for LibreOffice's ``calcext:value-type="error"`` cells; the
  positions are worked out (repeated rows and columns counted) only when there are any.

No XML parser is used (so no entity expansion on untrusted input): the few tags that matter are
matched with regular expressions.

Anything it cannot read (xlsb, an unusual container) yields no findings rather than an error:
the workbook itself was already read by calamine.
"""

from __future__ import annotations

import html
import re
import struct
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import olefile  # type: ignore[import-untyped]

from services.extractor.readers.cells import cell_position, column_letters
from services.extractor.readers.magic import OLE2_MAGIC, ZIP_MAGIC

MAX_NAMED = 5
"""Cells named in the warning per sheet; the count covers all of them."""
_CHUNK = 1024 * 1024
_ERROR_CODES = {
    0x00: "#NULL!", 0x07: "#DIV/0!", 0x0F: "#VALUE!", 0x17: "#REF!", 0x1D: "#NAME?",
    0x24: "#NUM!", 0x2A: "#N/A", 0x2B: "#GETTING_DATA",
}  # fmt: skip
ERROR_TEXTS = frozenset(_ERROR_CODES.values())
"""How Excel shows its error values (``#DIV/0!``, ``#N/A``, ...)."""


Wanted = Callable[[str, int, int], bool]
"""Whether a cell (sheet name, 1-based row, 0-based column) is one the reader read."""


@dataclass
class SheetErrors:
    """Error cells of one sheet: how many, and the first few (``B7``)."""

    sheet: str
    wanted: Wanted
    count: int = 0
    cells: list[str] = field(default_factory=list)

    def add(self, row: int, col: int) -> None:
        if not self.wanted(self.sheet, row, col):
            return
        self.count += 1
        if len(self.cells) < MAX_NAMED:
            self.cells.append(f"{column_letters(col)}{row}")


class _Found(dict[str, SheetErrors]):
    def __init__(self, wanted: Wanted) -> None:
        super().__init__()
        self.wanted = wanted

    def sheet(self, name: str) -> SheetErrors:
        if name not in self:
            self[name] = SheetErrors(name, self.wanted)
        return self[name]


def find_error_cells(path: Path, wanted: Wanted) -> dict[str, SheetErrors]:
    """Error cells by sheet name (only sheets with wanted ones), the format read from the file."""
    try:
        with path.open("rb") as handle:
            magic = handle.read(8)
        found = _Found(wanted)
        if magic == OLE2_MAGIC:
            _xls(path, found)
        elif magic.startswith(ZIP_MAGIC):
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
                if "xl/workbook.xml" in names:
                    _xlsx(archive, names, found)
                elif "content.xml" in names:
                    _ods(archive, found)
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, struct.error):
        return {}
    return {name: errors for name, errors in found.items() if errors.count}


# xlsx ------------------------------------------------------------------------------------------

_ERROR_CELL = re.compile(rb"<c\b[^>]*?\bt=\"e\"[^>]*>")
_REF = re.compile(rb"\br=\"([A-Z]+[0-9]+)\"")
_TAG = re.compile(r"<([A-Za-z]+:)?(sheet|Relationship)\b([^>]*)>")
_ATTRIBUTE = re.compile(r"([\w:.-]+)\s*=\s*\"([^\"]*)\"")


def _attributes(text: str) -> dict[str, str]:
    """Attributes of a tag, namespace prefixes dropped (``r:id`` -> ``id``), entities decoded."""
    return {
        name.rsplit(":", 1)[-1]: html.unescape(value) for name, value in _ATTRIBUTE.findall(text)
    }


def _xlsx(archive: zipfile.ZipFile, names: set[str], found: _Found) -> None:
    for name, member in _xlsx_sheets(archive):
        if member not in names:
            continue
        errors = found.sheet(name)
        with archive.open(member) as handle:
            for ref in _xml_error_refs(handle):
                errors.add(*cell_position(ref))


def _xlsx_sheets(archive: zipfile.ZipFile) -> list[tuple[str, str]]:
    """(sheet name, zip member of its XML) in workbook order.

    Both parts are small; they are read with regular expressions, not an XML parser, so no
    entity expansion is ever done on untrusted input.
    """
    workbook = archive.read("xl/workbook.xml").decode("utf-8")
    rels = archive.read("xl/_rels/workbook.xml.rels").decode("utf-8")
    targets = {}
    for _, tag, text in _TAG.findall(rels):
        if tag == "Relationship":
            attributes = _attributes(text)
            targets[attributes.get("Id")] = attributes.get("Target", "")
    sheets = []
    for _, tag, text in _TAG.findall(workbook):
        if tag != "sheet":
            continue
        attributes = _attributes(text)
        target = targets.get(attributes.get("id"), "")
        member = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
        sheets.append((attributes.get("name", ""), member))
    return sheets


def _xml_error_refs(handle: IO[bytes]) -> Iterator[str]:
    """References of ``t="e"`` cells, reading the XML a chunk at a time."""
    tail = b""
    while True:
        chunk = handle.read(_CHUNK)
        buffer = tail + chunk
        if not chunk:
            cut = len(buffer)
        else:
            cut = buffer.rfind(b"<c ")  # a cell tag may straddle chunks: keep its start
            cut = cut if cut > 0 else len(buffer)
        part, tail = buffer[:cut], buffer[cut:]
        if b't="e"' in part:
            for match in _ERROR_CELL.finditer(part):
                ref = _REF.search(match.group(0))
                if ref is not None:
                    yield ref.group(1).decode()
        if not chunk:
            return


# xls -------------------------------------------------------------------------------------------

_BOF, _BOUNDSHEET, _BOOLERR, _FORMULA, _EOF = 0x0809, 0x0085, 0x0205, 0x0006, 0x000A


_CODES = b"[\x00\x07\x0f\x17\x1d\x24\x2a\x2b]"
_BIFF_ERROR = re.compile(
    # Every record the walk below counts: a BOOLERR (type 0x0205) with an error code and the
    # error flag, or a FORMULA (0x0006) whose cached result has type 2 (error) and ends 0xFFFF.
    b"\x05\x02...{6}" + _CODES + b"\x01|\x06\x00...{6}\x02.{5}\xff\xff",
    re.DOTALL,
)
"""Byte patterns every error record has; their absence proves there is none, at C speed."""


def _xls(path: Path, found: _Found) -> None:
    with olefile.OleFileIO(str(path)) as ole:
        stream = "Workbook" if ole.exists("Workbook") else "Book"
        data: bytes = ole.openstream(stream).read()
    if not _BIFF_ERROR.search(data):
        return  # no record anywhere could hold an error: skip the walk (the usual case)
    sheets: dict[int, str] = {}
    current: SheetErrors | None = None
    position, size = 0, len(data)
    unpack = struct.unpack_from
    while position + 4 <= size:
        kind, length = unpack("<HH", data, position)
        body = position + 4
        if kind == _BOOLERR and length >= 8 and current is not None:
            if data[body + 7] == 1 and data[body + 6] in _ERROR_CODES:
                row, col = unpack("<HH", data, body)
                current.add(row + 1, col)
        elif kind == _FORMULA and length >= 14 and current is not None:
            if data[body + 6] == 2 and data[body + 12 : body + 14] == b"\xff\xff":
                row, col = unpack("<HH", data, body)
                current.add(row + 1, col)
        elif kind == _BOUNDSHEET and length >= 8:
            (offset,) = unpack("<I", data, body)
            chars, flags = data[body + 6], data[body + 7]
            raw = data[body + 8 : body + 8 + chars * (2 if flags & 1 else 1)]
            sheets[offset] = raw.decode("utf-16-le" if flags & 1 else "latin-1")
        elif kind == _BOF:
            name = sheets.get(position)
            current = found.sheet(name) if name is not None else None
        elif kind == _EOF:
            current = None
        position = body + length


# ods -------------------------------------------------------------------------------------------

_ODS_ERROR = b'calcext:value-type="error"'
_ODS_TAG = re.compile(
    rb"<(/?)table:(table-row|table-cell|covered-table-cell|table)(?=[\s/>])([^>]*?)(/?)>"
)
_REPEAT_ROWS = re.compile(rb'table:number-rows-repeated="(\d+)"')
_REPEAT_COLUMNS = re.compile(rb'table:number-columns-repeated="(\d+)"')
_TABLE_NAME = re.compile(rb'table:name="([^"]*)"')


def _ods(archive: zipfile.ZipFile, found: _Found) -> None:
    with archive.open("content.xml") as handle:
        if not _contains(handle, _ODS_ERROR):
            return
    with archive.open("content.xml") as handle:
        _ods_positions(handle, found)


def _contains(handle: IO[bytes], needle: bytes) -> bool:
    tail = b""
    while chunk := handle.read(_CHUNK):
        if needle in tail + chunk:
            return True
        tail = chunk[-len(needle) :]
    return False


def _ods_positions(handle: IO[bytes], found: _Found) -> None:
    """Walk the table, row and cell tags (repeats counted) to place the error cells."""
    errors = found.sheet("")
    row = col = 0
    row_repeat = 1
    tail = b""
    while True:
        chunk = handle.read(_CHUNK)
        buffer = tail + chunk
        cut = buffer.rfind(b"<") if chunk else len(buffer)  # a tag may straddle chunks
        part, tail = buffer[: max(cut, 0)], buffer[max(cut, 0) :]
        for closing, name, attributes, empty in _ODS_TAG.findall(part):
            if name == b"table":
                if not closing:
                    title = _TABLE_NAME.search(attributes)
                    errors = found.sheet(html.unescape(title.group(1).decode()) if title else "")
                    row = 0
            elif name == b"table-row":
                if not closing:
                    col = 0
                    repeat = _REPEAT_ROWS.search(attributes)
                    row_repeat = int(repeat.group(1)) if repeat else 1
                if closing or empty:
                    row += row_repeat
            elif not closing:
                repeat = _REPEAT_COLUMNS.search(attributes)
                span = int(repeat.group(1)) if repeat else 1
                if _ODS_ERROR in attributes:
                    for offset in range(span):
                        errors.add(row + 1, col + offset)
                col += span
        if not chunk:
            return
