"""The BigQuery sink with the real client library against bqemulator (or a real project).

Set SLUICE_TEST_BIGQUERY_PROJECT (and Application Default Credentials) to run the same tests
against BigQuery itself; job-id deduplication, which the emulator does not model, is covered by
tests/unit/load/test_bigquery_jobs.py against a recording fake.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pytest

from services.common import lineage
from services.common.errors import SchemaMismatch
from services.common.spec.render import SecretResolver
from services.loader.settings import BigQuerySettings
from services.loader.sinks import sink_for
from services.loader.sinks.bigquery_sink import BigQuerySink
from tests.integration.load.conftest import BQ_REAL_PROJECT, load


def rows_of(sink: BigQuerySink, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r.values()) for r in sink.client.query(sql).result()]


def batch(ids: list[int], amount: float = 1.0, **extra: list[object]) -> pa.RecordBatch:
    columns: dict[str, Any] = {
        "id": pa.array(ids, pa.int64()),
        "amount": pa.array([amount + i for i in ids], pa.float64()),
        "day": pa.array([dt.date(2026, 11, 1 + i % 20) for i in ids]),
        "note": pa.array([f"n{i}" for i in ids]),
    }
    columns.update({k: pa.array(v) for k, v in extra.items()})
    return pa.RecordBatch.from_pydict(columns)


@pytest.fixture
def bq(bq_uri: str, bigquery_settings: BigQuerySettings) -> tuple[str, BigQuerySettings, Any]:
    sink = sink_for(bq_uri, SecretResolver({}), bigquery_settings)
    assert isinstance(sink, BigQuerySink)
    return bq_uri, bigquery_settings, sink


def table(sink: BigQuerySink, name: str = "sales") -> str:
    return f"`{sink.table_id(name)}`"


def test_append_loads_once_and_keeps_a_ledger(bq: Any) -> None:
    uri, settings, sink = bq
    assert load(uri, "sales", [batch([1, 2]), batch([3])], unit="a", bigquery=settings)
    assert not load(uri, "sales", [batch([1, 2])], unit="a", bigquery=settings)
    assert load(uri, "sales", [batch([4])], unit="b", bigquery=settings)
    assert rows_of(sink, f"SELECT id FROM {table(sink)} ORDER BY id") == [(1,), (2,), (3,), (4,)]
    assert sink.loaded_units("p", "t", [("a", "f1"), ("b", "f1"), ("c", "f1")]) == {"a", "b"}
    ledger = rows_of(sink, f"SELECT unit_key, rows_loaded FROM {table(sink, '_sluice_ledger')}")
    assert sorted(ledger) == [("a", 3), ("b", 1)]


def test_replace_and_merge(bq: Any) -> None:
    uri, settings, sink = bq
    load(uri, "sales", [batch([1, 2, 3])], unit="a", bigquery=settings)
    load(uri, "sales", [batch([7, 8])], unit="b", mode="replace", bigquery=settings)
    assert rows_of(sink, f"SELECT id FROM {table(sink)} ORDER BY id") == [(7,), (8,)]
    load(
        uri,
        "sales",
        [batch([8, 9], amount=100.0), batch([9], amount=500.0)],
        unit="c",
        mode="merge",
        keys=["id"],
        bigquery=settings,
    )
    rows = rows_of(sink, f"SELECT id, amount FROM {table(sink)} ORDER BY id")
    assert rows == [(7, 8.0), (8, 108.0), (9, 509.0)]


def test_partitioning_and_clustering_on_created_tables(bq: Any) -> None:
    uri, settings, sink = bq
    load(
        uri,
        "sales",
        [batch([1, 2])],
        bigquery=settings,
        partition={"field": "day", "granularity": "DAY"},
        cluster_by=["id"],
    )
    created = sink.client.get_table(sink.table_id("sales"))
    assert created.time_partitioning.field == "day"
    assert created.time_partitioning.type_ == "DAY"
    assert created.clustering_fields == ["id"]


def test_schema_freeze_refuses_new_columns(bq: Any) -> None:
    uri, settings, sink = bq
    load(uri, "sales", [batch([1])], unit="a", bigquery=settings)
    with pytest.raises(SchemaMismatch, match=r"'channel'.*freeze"):
        load(
            uri,
            "sales",
            [batch([3], channel=["web"])],
            unit="c",
            schema="freeze",
            bigquery=settings,
        )
    assert rows_of(sink, f"SELECT id FROM {table(sink)}") == [(1,)]


@pytest.mark.skipif(
    not BQ_REAL_PROJECT,
    reason="bqemulator 1.4 ignores ALLOW_FIELD_ADDITION on load jobs; the request body is "
    "checked in tests/unit/load/test_bigquery_jobs.py",
)
def test_schema_evolves_on_a_real_project(bq: Any) -> None:
    uri, settings, sink = bq
    load(uri, "sales", [batch([1])], unit="a", bigquery=settings)
    load(uri, "sales", [batch([2], region=["north"])], unit="b", bigquery=settings)
    rows = rows_of(sink, f"SELECT id, region FROM {table(sink)} ORDER BY id")
    assert rows == [(1, None), (2, "north")]


def test_quarantine_and_sql_task_parameters(bq: Any) -> None:
    uri, settings, sink = bq
    rejected = pa.RecordBatch.from_pydict(
        {"id": ["x"], lineage.REASON: ["not an int"], lineage.LINE: pa.array([4], pa.int64())}
    )
    load(uri, "sales", [batch([1, 2])], rejected=[rejected], run_id="run-9", bigquery=settings)
    quarantined = rows_of(
        sink,
        f"SELECT id, {lineage.REASON}, {lineage.LINE}, {lineage.RUN_ID} "
        f"FROM {table(sink, 'sales__rejected')}",
    )
    assert quarantined == [("x", "not an int", 4, "run-9")]
    affected = sink.execute(
        f"UPDATE {table(sink)} SET note = @ds WHERE id > @min_id",
        {"ds": "2026-11-24'; DROP TABLE x; --", "min_id": 1, "unused": "ignored"},
    )
    assert affected == 1
    assert rows_of(sink, f"SELECT note FROM {table(sink)} WHERE id = 2") == [
        ("2026-11-24'; DROP TABLE x; --",)
    ]
