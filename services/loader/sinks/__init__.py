"""Destinations: DuckDB (embedded default), PostgreSQL, MySQL/MariaDB and BigQuery."""

from __future__ import annotations

from services.common.spec.render import SecretResolver
from services.loader.errors import UnsupportedDestination
from services.loader.settings import BigQuerySettings
from services.loader.sinks.base import Sink


def sink_for(uri: str, secrets: SecretResolver, bigquery: BigQuerySettings | None = None) -> Sink:
    """The sink for a destination URI, with ``${ENV}`` references resolved here and only here."""
    resolved = secrets.resolve(uri)
    scheme = resolved.split("://", 1)[0].split("+", 1)[0]
    if scheme == "duckdb":
        from services.loader.sinks.duckdb_sink import DuckDBSink

        return DuckDBSink(resolved)
    if scheme in ("postgres", "postgresql"):
        from services.loader.sinks.postgres_sink import PostgresSink

        return PostgresSink(resolved)
    if scheme in ("mysql", "mariadb"):
        from services.loader.sinks.mysql_sink import MySQLSink

        return MySQLSink(resolved)
    if scheme == "bigquery":
        from services.loader.sinks.bigquery_sink import BigQuerySink

        return BigQuerySink(resolved, bigquery or BigQuerySettings())
    raise UnsupportedDestination(f"destination scheme {scheme!r} is not supported")
