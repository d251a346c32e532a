"""The ``destination`` block: where units are loaded and how."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from services.common.spec.base import Strict

WriteMode = Literal["append", "replace", "merge"]
SchemaPolicy = Literal["evolve", "freeze"]
PartitionGranularity = Literal["HOUR", "DAY", "MONTH", "YEAR"]


class Partitioning(Strict):
    """BigQuery time partitioning of a table Sluice creates."""

    field: str | None = Field(
        default=None,
        description="DATE/TIMESTAMP/DATETIME column; omitted: partition by load time",
    )
    granularity: PartitionGranularity = "DAY"
    expiration_days: float | None = Field(default=None, gt=0)
    require_filter: bool = False


_SECRET_IN_URI = re.compile(r"^[a-z+]+://[^/:@\s]+:(?P<pw>[^@\s]+)@")


class Destination(Strict):
    uri: str = Field(
        description="postgresql://, mysql://, bigquery://project/dataset, duckdb:///path"
    )
    table: str | None = None
    mode: WriteMode = "append"
    keys: list[str] = []
    schema_policy: SchemaPolicy = Field(default="evolve", alias="schema")
    partition: Partitioning | None = Field(
        default=None, description="BigQuery only: time partitioning when the table is created"
    )
    cluster_by: list[str] = Field(
        default=[],
        max_length=4,
        description="BigQuery only: clustering columns (up to 4) when the table is created",
    )
    staging_bucket: str | None = Field(
        default=None,
        pattern=r"^gs://[a-z0-9][a-z0-9._-]{1,220}(/.*)?$",
        description="BigQuery only: gs://bucket/prefix to stage Parquet files in before the "
        "load job (default: upload with the load job)",
    )

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

    @model_validator(mode="after")
    def _bigquery_options(self) -> Destination:
        used = [
            name
            for name, value in (
                ("partition", self.partition),
                ("cluster_by", self.cluster_by),
                ("staging_bucket", self.staging_bucket),
            )
            if value
        ]
        if used and not self.uri.startswith("bigquery://"):
            raise ValueError(f"{', '.join(used)}: only for bigquery:// destinations")
        return self
