"""Destinations: DuckDB (embedded default), PostgreSQL, MySQL/MariaDB and BigQuery."""

from __future__ import annotations

import importlib

from services.common.spec.render import SecretResolver
from services.loader.errors import UnsupportedDestination
from services.loader.settings import BigQuerySettings
from services.loader.sinks.base import Sink

_PRELOADED = (
    "services.loader.sinks.postgres_sink",
    "services.loader.sinks.duckdb_sink",
    "services.loader.sinks.mysql_sink",
)


def preload() -> None:
    """Import the database sinks and their drivers now rather than on the first call.

    Together they take 0.1-0.3 s to import, which the orchestrator's first ledger check and the
    first unit would otherwise wait for; they add about 40 MB. BigQuery's much heavier client
    library stays imported on first use.
    """
    for module in _PRELOADED:
        importlib.import_module(module)


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
