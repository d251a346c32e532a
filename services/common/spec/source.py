"""The ``source`` block of an etl task: where units come from and how to read them."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from services.common.spec.base import Strict

SourceFormat = Literal[
    "auto", "csv", "tsv", "psv", "txt", "fixed", "xls", "xlsx", "xlsm", "ods", "zip",
    "json", "jsonl", "parquet",
]  # fmt: skip

OnBadRow = Literal["error", "skip", "quarantine"]
"""What a ragged row (too many or too few fields) does: fail the unit, be skipped with a
warning in the extractor's log, or be quarantined: its raw text, line and reason go to
``<table>__rejected`` while the good rows load."""

ColumnType = Literal[
    "string", "int64", "float64", "bool", "date", "timestamp", "decimal",
]  # fmt: skip
"""Types a column can be declared as in ``column_types`` (``decimal`` reads as float64 with the
declared ``decimal`` / ``thousands`` separators; cast to an exact decimal in a transform step)."""

_CELL_RANGE = re.compile(r"^[A-Za-z]{1,3}[0-9]+(:[A-Za-z]{1,3}[0-9]*)?$")


class FixedColumn(Strict):
    """One column of a fixed-width text layout; positions count characters from 1."""

    name: str = Field(min_length=1)
    start: int = Field(ge=1, description="first character of the field (1-based)")
    width: int | None = Field(default=None, ge=1, description="number of characters")
    end: int | None = Field(default=None, ge=1, description="last character (inclusive)")

    @model_validator(mode="after")
    def _width_or_end(self) -> FixedColumn:
        if (self.width is None) == (self.end is None):
            raise ValueError(f"fixed-width column {self.name!r}: give exactly one of width, end")
        if self.end is not None and self.end < self.start:
            raise ValueError(f"fixed-width column {self.name!r}: end is before start")
        return self

    @property
    def length(self) -> int:
        """Number of characters of the field."""
        if self.width is not None:
            return self.width
        assert self.end is not None
        return self.end - self.start + 1


class SourceOptions(Strict):
    """Reader options; explicit values win over sniffing and detection."""

    delimiter: str | None = Field(
        default=None, description="field separator; sniffed from the file when not given"
    )
    quotechar: str = Field(default='"', min_length=1, max_length=1)
    encoding: str = Field(
        default="auto",
        description="auto (BOM, then utf-8, else cp1252), utf-8, utf-8-sig, utf-16, cp1252, "
        "latin-1, or any Python codec name",
    )
    skip_rows: int = Field(
        default=0, ge=0, description="lines (text) or rows (Excel) to skip before the header"
    )
    header_row: int | None = Field(
        default=None,
        ge=1,
        description="1-based line or sheet row holding the column names; same as skip_rows "
        "set to header_row - 1",
    )
    header: bool = Field(default=True, description="false: no header, columns are f0, f1, ...")
    null_values: list[str] | None = Field(
        default=None,
        description="strings read as null; default: empty, NA, N/A, #N/A, NULL, null, NaN, -",
    )
    decimal: str = Field(default=".", min_length=1, max_length=1, description='"," for 1,5')
    thousands: str | None = Field(
        default=None, min_length=1, max_length=1, description='"." for 1.234,5 ("," or " " too)'
    )
    columns: list[FixedColumn] | None = Field(
        default=None, description="fixed-width layout (format fixed, or txt with a layout)"
    )
    sheet: str | int | None = Field(
        default=None,
        description="Excel sheet: a name, a 0-based index, or '*' for every sheet "
        "(the sheet name then becomes the column named by sheet_column); default first sheet",
    )
    sheet_column: str = Field(default="sheet", min_length=1)
    cell_range: str | None = Field(
        default=None, description="Excel cells to read, e.g. B3:F200 or B3:F (open-ended)"
    )
    on_bad_row: OnBadRow = "error"
    column_types: dict[str, str] | None = Field(
        default=None,
        description="declared types by column name (string, int64, float64, bool, date, "
        "timestamp, decimal); undeclared columns are inferred from the first block",
    )
    max_rows: int | None = Field(default=None, ge=0, description="stop after this many rows")

    @field_validator("cell_range")
    @classmethod
    def _cell_range(cls, value: str | None) -> str | None:
        if value is not None and not _CELL_RANGE.match(value):
            raise ValueError(f"cell_range {value!r} is not like B3:F200")
        return value

    @field_validator("column_types")
    @classmethod
    def _known_types(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        allowed = set(ColumnType.__args__)  # type: ignore[attr-defined]
        for name, type_name in (value or {}).items():
            if type_name not in allowed:
                raise ValueError(
                    f"column_types.{name}: unknown type {type_name!r}; use one of "
                    f"{', '.join(sorted(allowed))}"
                )
        return value

    @model_validator(mode="after")
    def _header_row(self) -> SourceOptions:
        if self.header_row is not None:
            if self.skip_rows not in (0, self.header_row - 1):
                raise ValueError("give header_row or skip_rows, not both")
            self.skip_rows = self.header_row - 1
        return self


class Source(Strict):
    uri: str = Field(description="file://, gs:// or https:// location; globs allowed in paths")
    format: SourceFormat = "auto"
    members: str | None = Field(
        default=None, description="glob of archive members to read, e.g. '*.csv' or 'daily/*'"
    )
    options: SourceOptions = SourceOptions()
    incremental: bool = Field(default=True, description="only units not yet in the ledger")

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, uri: str) -> str:
        if not re.match(r"^(file|gs|https?)://", uri):
            raise ValueError(f"unsupported source URI {uri!r}: use file://, gs:// or https://")
        return uri
