"""Fixtures for loader tests: a fresh MariaDB database per test and a driver for sink writers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from services.cli.stack import free_ports
from services.common.spec.destination import Destination
from services.common.spec.render import SecretResolver
from services.loader.settings import BigQuerySettings
from services.loader.sinks import sink_for
from services.loader.sinks.base import LoadContext, UnitKey, WriteCounts
from tests.conftest import my_query, pg_query
from tests.integration.load.bqemu import running_emulator

BQ_REAL_PROJECT = os.environ.get("SLUICE_TEST_BIGQUERY_PROJECT")


@dataclass
class Target:
    """One destination under test: its URI, a table name and a way to query it."""

    kind: str
    uri: str
    table: str
    query: Any
    quote: str = '"'
    extra: dict[str, Any] = field(default_factory=dict)

    def qualified(self, suffix: str = "") -> str:
        parts = (self.table + suffix).split(".")
        return ".".join(self.quote + p + self.quote for p in parts)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.query(sql)]


@pytest.fixture(params=["postgresql", "mariadb", "duckdb"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    kind = request.param
    if kind == "postgresql":
        dsn = request.getfixturevalue("pg_dsn")
        schema = request.getfixturevalue("pg_schema")
        uri = request.getfixturevalue("pg_url")  # the ledger stays inside the test's schema
        return Target(kind, uri, f"{schema}.sales", lambda sql: pg_query(dsn, sql))
    if kind == "mariadb":
        db = request.getfixturevalue("mysql_db")
        uri = request.getfixturevalue("mysql_url")  # the server SLUICE_TEST_MYSQL names
        return Target(kind, uri, "sales", lambda sql: my_query(db, sql), quote="`")
    import duckdb

    path = tmp_path / "out.duckdb"

    def duck(sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(path)) as con:
            return con.execute(sql).fetchall()

    return Target(kind, f"duckdb:///{path}", "sales", duck)


def load(
    uri: str,
    table: str,
    batches: list[pa.RecordBatch],
    *,
    unit: str = "u1",
    fingerprint: str = "f1",
    mode: str = "append",
    keys: list[str] | None = None,
    schema: str = "evolve",
    rejected: list[pa.RecordBatch] | None = None,
    run_id: str = "run-1",
    bigquery: BigQuerySettings | None = None,
    **options: Any,
) -> bool:
    """Drive one unit through a sink the way the loader's server does; False when skipped."""
    destination = Destination.model_validate(
        {"uri": uri, "table": table, "mode": mode, "keys": keys or [], "schema": schema, **options}
    )
    sink = sink_for(uri, SecretResolver({}), bigquery)
    ctx = LoadContext(UnitKey("p", "t", unit, fingerprint), run_id, destination, table)
    writer = sink.open_unit(ctx)
    try:
        if writer.already_loaded():
            writer.abort()
            return False
        counts = WriteCounts()
        for batch in batches:
            writer.write(batch)
            counts.rows_loaded += batch.num_rows
        for batch in rejected or []:
            writer.write_rejected(batch)
            counts.rows_rejected += batch.num_rows
    except BaseException:
        writer.abort()
        raise
    writer.commit(counts)
    return True


@pytest.fixture(scope="session")
def bigquery_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigQuerySettings]:
    """bqemulator on loopback, or a real project when SLUICE_TEST_BIGQUERY_PROJECT is set."""
    if BQ_REAL_PROJECT:
        yield BigQuerySettings()
        return
    log = tmp_path_factory.mktemp("bqemu") / "bqemulator.log"
    with running_emulator("sluice-test", *free_ports(2), log) as endpoint:
        yield BigQuerySettings(api_endpoint=endpoint, job_timeout_seconds=120)


@pytest.fixture
def bq_uri(bigquery_settings: BigQuerySettings) -> Iterator[str]:
    """A fresh dataset per test (dropped afterwards)."""
    from services.loader.sinks.bigquery_sink import make_client, parse_uri

    project = BQ_REAL_PROJECT or "sluice-test"
    uri = f"bigquery://{project}/t_{uuid.uuid4().hex[:10]}"
    yield uri
    client = make_client(parse_uri(uri), bigquery_settings)
    client.delete_dataset(parse_uri(uri).dataset, delete_contents=True, not_found_ok=True)
