"""Readers turn a local file into a stream of Arrow record batches, with bounded memory.

``detect_format`` looks at the content first (magic bytes: zip containers, OLE2 workbooks,
compressed streams, parquet, JSON) and only then at the extension, so a ``.csv`` that is really
an Excel file, or a download without an extension, still reads right.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from services.common.spec.source import SourceOptions
from services.extractor.errors import UnsupportedFormat
from services.extractor.readers.base import BatchIterator, Reader, ReadLimits
from services.extractor.readers.columnar import JsonArrayReader, JsonLinesReader, ParquetReader
from services.extractor.readers.delimited import DelimitedReader
from services.extractor.readers.excel import ExcelReader
from services.extractor.readers.fixed import FixedWidthReader
from services.extractor.readers.magic import OLE2_MAGIC, ZIP_MAGIC

_BY_EXTENSION = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".psv": "psv", ".txt": "txt", ".dat": "txt",
    ".xls": "xls", ".xlsx": "xlsx", ".xlsm": "xlsm", ".xlsb": "xlsx", ".ods": "ods",
    ".zip": "zip", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".parquet": "parquet", ".gz": "gzip", ".bz2": "bz2", ".xz": "xz",
}  # fmt: skip
COMPRESSED = ("gzip", "bz2", "xz")
"""Single-file compression formats: unpacked to a private temporary file, then read."""

_EXCEL = ExcelReader()
_READERS: dict[str, Reader] = {
    "csv": DelimitedReader(None),  # ";" csv files are common: sniff, explicit wins
    "tsv": DelimitedReader("\t"),
    "psv": DelimitedReader("|"),
    "txt": DelimitedReader(None),
    "fixed": FixedWidthReader(),
    "xls": _EXCEL,
    "xlsx": _EXCEL,
    "xlsm": _EXCEL,
    "ods": _EXCEL,
    "json": JsonArrayReader(),
    "jsonl": JsonLinesReader(),
    "parquet": ParquetReader(),
}


def format_by_name(name: str) -> str | None:
    """The format an object name suggests, or None."""
    return _BY_EXTENSION.get(Path(name).suffix.lower())


def sniff_format(path: Path) -> str | None:
    """The format the first bytes of a file show, or None for plain text."""
    with path.open("rb") as handle:
        magic = handle.read(8)
    if magic.startswith(ZIP_MAGIC):
        return _zip_kind(path)
    if magic.startswith(OLE2_MAGIC):
        return "xls"  # OLE2: BIFF workbook, or an encrypted xlsx (calamine reports which)
    if magic.startswith(b"\x1f\x8b"):
        return "gzip"
    if magic.startswith(b"BZh"):
        return "bz2"
    if magic.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if magic.startswith(b"PAR1"):
        return "parquet"
    stripped = magic.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"["):
        return "json"
    if stripped.startswith(b"{"):
        return "jsonl"
    return None


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except zipfile.BadZipFile:
        return "zip"  # truncated: the zip layer names the problem
    if "xl/workbook.xml" in names or "xl/workbook.bin" in names:
        return "xlsx"
    if "content.xml" in names and "mimetype" in names:
        return "ods"
    return "zip"


def detect_format(path: Path, declared: str, options: SourceOptions | None = None) -> str:
    """The declared format, or one detected from the content, then from the file name.

    ``path`` need not exist (a remote object name): then only the name is used, and ``auto``
    is returned when the name says nothing, to be detected again once the bytes are local.
    """
    if declared != "auto":
        return declared
    sniffed = sniff_format(path) if path.is_file() else None
    by_name = format_by_name(path.name)
    if sniffed in ("json", "jsonl") and by_name in ("csv", "tsv", "psv", "txt"):
        sniffed = None  # a "[Date],[Amount]" header is text, not JSON
    if sniffed is not None:
        if sniffed == "jsonl" and by_name == "json":
            return "json"
        if sniffed == "json" and by_name == "jsonl":
            return "jsonl"
        return sniffed
    if by_name == "txt" and options is not None and options.columns:
        return "fixed"
    if by_name is not None:
        return by_name
    if not path.is_file():
        return "auto"
    return "fixed" if options is not None and options.columns else "txt"


def read_batches(
    path: Path,
    fmt: str,
    options: SourceOptions,
    limits: ReadLimits | None = None,
) -> BatchIterator:
    """Record batches of the local file ``path`` read as ``fmt`` (``auto``: detected)."""
    limits = limits or ReadLimits()
    fmt = resolve_format(path, fmt, options)
    reader = _READERS.get(fmt)
    if reader is None:
        raise UnsupportedFormat(
            f"format {fmt!r} cannot be read directly (archives are expanded into units)",
            file=str(path),
        )
    return reader.read(path, options, limits)


def resolve_format(path: Path, fmt: str, options: SourceOptions) -> str:
    """The format ``read_batches`` reads the file as: ``auto`` detected, and a ``txt`` with
    ``columns`` checked for fixed width (a resolved format resolves to itself)."""
    if fmt == "auto" or (fmt == "txt" and options.columns):
        return detect_format(path, "auto", options)
    return fmt


def decodes_in_memory(path: Path, fmt: str, limits: ReadLimits) -> bool:
    """Whether ``read_batches`` will decode the file, of the resolved format ``fmt``, in a
    memory-capped worker (a workbook small enough for calamine), which the extractor budgets
    (see ``decode_budget``)."""
    return _READERS.get(fmt) is _EXCEL and _EXCEL.decodes_in_memory(path, limits)


__all__ = [
    "COMPRESSED",
    "ReadLimits",
    "decodes_in_memory",
    "detect_format",
    "format_by_name",
    "read_batches",
    "resolve_format",
]
