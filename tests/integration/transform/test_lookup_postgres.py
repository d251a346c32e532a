"""lookup against a table in a PostgreSQL destination (real server, fresh schema)."""

from __future__ import annotations

import psycopg
import pyarrow as pa
import pytest

from services.common.spec.render import SecretResolver
from services.transformer.errors import StepFailed
from services.transformer.steps import UnitContext
from tests.unit.transform.conftest import transform


def test_lookup_reads_the_destination_table_once_per_unit(pg_dsn: str, pg_schema: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{pg_schema}".stores (id bigint, name text, region text)')
        conn.execute(
            f"INSERT INTO \"{pg_schema}\".stores VALUES (1, 'Köln', 'W'), (2, 'Kiel', 'N')"
        )
    # The password travels as a ${ENV} reference and is resolved by the transformer.
    uri = pg_dsn.replace("postgres@", "postgres:${PGPASS}@")
    ctx = UnitContext(file="f.csv", unit="u1", destination_uri=uri)
    step = {
        "lookup": {"table": f"{pg_schema}.stores", "on": {"store_id": "id"}, "columns": ["name"]}
    }
    t = transform(step, context=ctx, secrets=SecretResolver({"PGPASS": "unused"}))
    first = t.apply(pa.RecordBatch.from_pydict({"store_id": [2, 3, 1]}), 0)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DELETE FROM "{pg_schema}".stores')
    second = t.apply(pa.RecordBatch.from_pydict({"store_id": [1]}), 3)
    assert first.good is not None and second.good is not None
    assert first.good.to_pydict() == {"store_id": [2, 3, 1], "name": ["Kiel", None, "Köln"]}
    assert second.good.to_pydict()["name"] == ["Köln"]  # cached for the unit

    missing = transform(
        {"lookup": {"table": f"{pg_schema}.nope", "on": "id"}}, context=ctx,
        secrets=SecretResolver({"PGPASS": "unused"}),
    )  # fmt: skip
    with pytest.raises(StepFailed) as info:
        missing.apply(pa.RecordBatch.from_pydict({"id": [1]}), 0)
    assert f"cannot read table {pg_schema}.nope" in info.value.full_message
    assert "unused" not in info.value.full_message  # the resolved password is never shown
