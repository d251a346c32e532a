"""The ``destination`` block: where units are loaded and how."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from services.common.spec.base import Strict

WriteMode = Literal["append", "replace", "merge"]
SchemaPolicy = Literal["evolve", "freeze"]
_SECRET_IN_URI = re.compile(r"^[a-z+]+://[^/:@\s]+:(?P<pw>[^@\s]+)@")


class Destination(Strict):
    uri: str = Field(
        description="postgresql://, mysql://, bigquery://project/dataset, duckdb:///path"
    )
    table: str | None = None
    mode: WriteMode = "append"
    keys: list[str] = []
    schema_policy: SchemaPolicy = Field(default="evolve", alias="schema")

    @field_validator("uri")
    @classmethod
    def _no_literal_secret(cls, uri: str) -> str:
        if not re.match(r"^(postgres|postgresql|mysql|mariadb|bigquery|duckdb)(\+\w+)?://", uri):
            raise ValueError(
                f"unsupported destination URI {uri!r}: use postgresql://, mysql://, "
                "bigquery:// or duckdb://"
            )
        match = _SECRET_IN_URI.match(uri)
        if match and not match.group("pw").startswith("${"):
            raise ValueError(
                "destination URI contains a literal password; use an ${ENV_VAR} reference"
            )
        return uri

    @model_validator(mode="after")
    def _merge_needs_keys(self) -> Destination:
        if self.mode == "merge" and not self.keys:
            raise ValueError("mode: merge needs keys: [...]")
        return self
