"""Loader helpers that need no database: lineage stripping, names, LOAD DATA text, the pipe."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pyarrow as pa
import pytest
from pydantic import ValidationError

from services.common.lineage import strip_lineage
from services.common.spec.destination import Destination
from services.loader.sinks.arrow_stream import BatchPipe, Spool
from services.loader.sinks.base import LoadContext, UnitKey, ledger_insert, tag_rejects
from services.loader.sinks.mysql_sink import connect_args, load_data_bytes
from services.loader.sinks.sql import derived_name, quote_table


def test_lineage_columns_are_stripped_from_data_batches() -> None:
    batch = pa.RecordBatch.from_pydict({"a": [1], "_sluice_line": [2], "b": ["x"]})
    assert strip_lineage(batch).schema.names == ["a", "b"]
    clean = pa.RecordBatch.from_pydict({"a": [1]})
    assert strip_lineage(clean) is clean


def test_identifiers_are_quoted_and_derived_names_fit() -> None:
    assert quote_table('s."x') == '"s"."""x"'
    long = "t" * 80
    name = derived_name(long, "__sluice_swap")
    assert len(name) <= 63 and name.endswith("__sluice_swap")
    assert derived_name(long, "__sluice_swap") == name != derived_name("u" * 80, "__sluice_swap")


def test_rejects_are_tagged_with_run_and_unit_even_when_empty() -> None:
    ctx = LoadContext(UnitKey("p", "t", "u.csv", "f"), "run-1", Destination(uri="duckdb:///x"), "t")
    tagged = tag_rejects(pa.record_batch({"a": [1, 2]}), ctx)
    assert tagged.to_pydict() == {
        "a": [1, 2],
        "_sluice_run_id": ["run-1", "run-1"],
        "_sluice_unit": ["u.csv", "u.csv"],
    }
    empty = tag_rejects(pa.record_batch({"a": pa.array([], pa.int64())}), ctx)
    assert empty.schema.field("_sluice_unit").type == pa.string()


def test_ledger_insert_puts_leading_columns_first() -> None:
    sql = ledger_insert("`l`", lambda i, name: "%s", leading=("unit_hash",))
    assert sql.startswith("INSERT INTO `l` (unit_hash, pipeline, task, unit_key, ")
    assert sql.endswith("VALUES (" + ", ".join(["%s"] * 9) + ")")
    numbered = ledger_insert("l", lambda i, name: f"${i}", computed=[("loaded_at", "now()")])
    assert numbered.endswith(
        "rows_rejected, loaded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())"
    )


def test_load_data_text_quotes_values_and_marks_nulls() -> None:
    batch = pa.RecordBatch.from_pydict(
        {
            "s": ["a,b", 'q"x', None, "NULL"],
            "n": [1, None, 3, 4],
            "ok": [True, False, None, True],
            "t": pa.array([dt.datetime(2026, 1, 2, 3, 4, 5)] * 4, pa.timestamp("ns", "UTC")),
        }
    )
    lines = load_data_bytes(batch).decode().splitlines()
    assert lines[0] == '"a,b","1","1","2026-01-02 03:04:05.000000"'
    assert lines[1] == '"q""x",NULL,"0","2026-01-02 03:04:05.000000"'
    assert lines[2].startswith("NULL,")
    assert lines[3].startswith('"NULL",')


def test_mysql_uri_becomes_connect_arguments() -> None:
    args = connect_args("mariadb://etl:s%40cret@db.internal:3307/warehouse")
    assert (args["host"], args["port"], args["user"], args["password"]) == (
        "db.internal",
        3307,
        "etl",
        "s@cret",
    )
    assert args["database"] == "warehouse" and args["local_infile"] is True


def test_bigquery_options_only_for_bigquery() -> None:
    with pytest.raises(ValidationError, match="cluster_by: only for bigquery"):
        Destination.model_validate({"uri": "duckdb:///x.duckdb", "cluster_by": ["a"]})
    dest = Destination.model_validate(
        {
            "uri": "bigquery://p/d",
            "partition": {"field": "day", "granularity": "MONTH"},
            "staging_bucket": "gs://bucket/stage",
        }
    )
    assert dest.partition is not None and dest.partition.granularity == "MONTH"
    with pytest.raises(ValidationError):
        Destination.model_validate({"uri": "bigquery://p/d", "staging_bucket": "s3://x"})


def test_batch_pipe_hands_batches_over_and_reports_consumer_errors() -> None:
    schema = pa.schema([("a", pa.int64())])
    seen: list[int] = []
    pipe = BatchPipe(schema, lambda reader: seen.extend(reader.read_all().column("a").to_pylist()))
    for i in range(10):
        pipe.put(pa.RecordBatch.from_pydict({"a": [i]}, schema=schema))
    pipe.close()
    assert seen == list(range(10))

    def broken(reader: pa.RecordBatchReader) -> None:
        reader.read_next_batch()
        raise RuntimeError("COPY failed: disk full")

    failing = BatchPipe(schema, broken)

    def feed() -> None:
        for i in range(50):
            failing.put(pa.RecordBatch.from_pydict({"a": [i]}, schema=schema))
        failing.close()

    with pytest.raises(RuntimeError, match="disk full"):
        feed()


def test_aborting_a_pipe_stops_a_consumer_with_a_full_queue() -> None:
    schema = pa.schema([("a", pa.int64())])
    release = threading.Event()

    def slow(reader: pa.RecordBatchReader) -> None:
        release.wait(30)  # busy elsewhere until cancelled: it does not drain the queue
        reader.read_all()

    pipe = BatchPipe(schema, slow, depth=2, cancel=release.set)
    for i in range(2):
        pipe.put(pa.RecordBatch.from_pydict({"a": [i]}, schema=schema))
    started = time.monotonic()
    pipe.abort()  # the queue was full: the stop signal still gets in
    assert pipe.finished
    assert time.monotonic() - started < 10  # well before the consumer's own wait runs out


def test_aborting_a_pipe_cancels_a_consumer_stuck_in_the_database() -> None:
    schema = pa.schema([("a", pa.int64())])
    cancelled = threading.Event()

    def stuck(reader: pa.RecordBatchReader) -> None:
        reader.read_next_batch()
        if not cancelled.wait(30):  # like a COPY waiting for a table lock
            raise AssertionError("never cancelled")
        raise RuntimeError("canceling statement due to user request")

    pipe = BatchPipe(schema, stuck, cancel=cancelled.set)
    pipe.put(pa.RecordBatch.from_pydict({"a": [1]}, schema=schema))
    pipe.abort()
    assert cancelled.is_set()
    assert pipe.finished


def test_spool_keeps_batches_per_schema_on_disk() -> None:
    spool = Spool()
    spool.add(pa.RecordBatch.from_pydict({"a": [1]}))
    spool.add(pa.RecordBatch.from_pydict({"a": [2]}))
    spool.add(pa.RecordBatch.from_pydict({"b": ["x"]}))
    tables = [reader.read_all() for reader in spool.readers()]
    spool.close()
    assert [t.num_rows for t in tables] == [2, 1]
