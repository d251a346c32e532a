"""The ``source`` block of an etl task: where units come from and how to read them."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from services.common.spec.base import Strict

SourceFormat = Literal[
    "auto", "csv", "tsv", "psv", "txt", "fixed", "xls", "xlsx", "xlsm", "ods", "zip",
    "json", "jsonl", "parquet",
]  # fmt: skip


class SourceOptions(Strict):
    """Reader options; explicit values win over sniffing."""

    delimiter: str | None = None
    quotechar: str = '"'
    encoding: str = "auto"
    skip_rows: int = Field(default=0, ge=0)
    header: bool = True
    null_values: list[str] | None = None
    block_size_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024)
    column_types: dict[str, str] | None = None


class Source(Strict):
    uri: str = Field(description="file://, gs:// or https:// location; globs allowed in paths")
    format: SourceFormat = "auto"
    members: str | None = Field(default=None, description="glob of archive members to read")
    options: SourceOptions = SourceOptions()
    incremental: bool = Field(default=True, description="only units not yet in the ledger")

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, uri: str) -> str:
        if not re.match(r"^(file|gs|https?)://", uri):
            raise ValueError(f"unsupported source URI {uri!r}: use file://, gs:// or https://")
        return uri
