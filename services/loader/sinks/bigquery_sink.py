"""BigQuery destination: Parquet load jobs with deterministic job ids, ledger as a table.

BigQuery has no transaction spanning a load job and a DML statement, so exactly-once comes from
the job ids instead: every step of a unit (the load, the MERGE, the quarantine load, the ledger
insert) runs as a job whose id is derived from pipeline, task, unit, fingerprint and step. A
retried unit (after a crash, a 503, an evicted pod) looks each id up first: a job that already
succeeded is recognised and not repeated, one still running is awaited, and only a job that
failed on BigQuery's side is re-run under the next id (``<id>_r1``, ...). Two loaders racing on
the same unit collide on the id (HTTP 409) and the second one waits for the first one's job.

Batches are spooled to a local Parquet file (bounded memory), then either uploaded with the load
job (resumable upload) or staged in a GCS bucket when the destination sets ``staging_bucket``.

Modes: ``append`` loads with WRITE_APPEND, ``replace`` with WRITE_TRUNCATE (BigQuery swaps the
table's contents atomically), ``merge`` loads into a staging table and runs one ``MERGE``.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
from google.api_core import exceptions as gexc
from google.cloud import bigquery

from services.common.errors import SchemaMismatch, Terminal
from services.common.spec.destination import Destination
from services.loader.errors import DestinationError
from services.loader.settings import BigQuerySettings
from services.loader.sinks.base import (
    LEDGER_COLUMNS,
    LEDGER_TABLE,
    LoadContext,
    WriteCounts,
    key_digest,
    ledger_insert,
    ledger_values,
    loaded_among,
    refuse_frozen_columns,
    tag_rejects,
)
from services.loader.sinks.sql import merge_statement

LEDGER_SCHEMA = [
    bigquery.SchemaField("pipeline", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("task", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("unit_key", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("fingerprint", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("run_id", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("target_table", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("rows_loaded", "INT64", mode="REQUIRED"),
    bigquery.SchemaField("rows_rejected", "INT64", mode="REQUIRED"),
    bigquery.SchemaField("loaded_at", "TIMESTAMP", mode="REQUIRED"),
]
_ORD = "_sluice_ord"
# Job errors that say the input or the SQL is wrong: retrying under a new job id cannot help.
_TERMINAL_REASONS = {"invalid", "invalidQuery", "notFound", "duplicate", "accessDenied"}


class JobFailed(Terminal):
    code = "bigquery_job_failed"


def job_id(key: tuple[str, str, str, str], step: str) -> str:
    """The deterministic id of one step of one unit (pipeline, task, unit, fingerprint)."""
    return f"sluice_{key_digest(*key)[:40]}_{step}"


def bq_type(arrow_type: pa.DataType) -> str:
    """The BigQuery column type for an Arrow type (STRING for anything exotic)."""
    if pa.types.is_boolean(arrow_type):
        return "BOOL"
    if pa.types.is_integer(arrow_type):
        return "INT64"
    if pa.types.is_floating(arrow_type):
        return "FLOAT64"
    if pa.types.is_decimal(arrow_type):
        fits = arrow_type.precision - arrow_type.scale <= 29 and arrow_type.scale <= 9
        return "NUMERIC" if fits else "BIGNUMERIC"
    if pa.types.is_date(arrow_type):
        return "DATE"
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMP" if arrow_type.tz else "DATETIME"
    if pa.types.is_time(arrow_type):
        return "TIME"
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return "BYTES"
    return "STRING"


def bq_schema(schema: pa.Schema) -> list[bigquery.SchemaField]:
    return [bigquery.SchemaField(f.name, bq_type(f.type), mode="NULLABLE") for f in schema]


def q(name: str) -> str:
    """Quote a BigQuery identifier (backticks; backslash and backtick escaped)."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _parquet_ready(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Types BigQuery reads from Parquet: decoded dictionaries, microsecond timestamps."""
    arrays, fields = [], []
    for field, column in zip(batch.schema, batch.columns, strict=True):
        if pa.types.is_dictionary(field.type):
            column = column.dictionary_decode()
        if pa.types.is_timestamp(column.type) and column.type.unit == "ns":
            column = column.cast(pa.timestamp("us", column.type.tz), safe=False)
        if pa.types.is_null(column.type):
            column = column.cast(pa.string())
        arrays.append(column)
        fields.append(pa.field(field.name, column.type))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


@dataclass(frozen=True)
class Location:
    project: str
    dataset: str
    location: str | None


def parse_uri(uri: str) -> Location:
    """``bigquery://project/dataset[?location=EU]``."""
    parts = urlsplit(uri)
    dataset = parts.path.strip("/")
    if not parts.netloc or not dataset or "/" in dataset:
        raise DestinationError(f"BigQuery URI must be bigquery://project/dataset, not {uri!r}")
    location = parse_qs(parts.query).get("location", [None])[0]
    return Location(parts.netloc, dataset, location)


def make_client(where: Location, settings: BigQuerySettings) -> bigquery.Client:
    if settings.api_endpoint:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return bigquery.Client(
            project=where.project,
            location=where.location,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=settings.api_endpoint),
        )
    return bigquery.Client(project=where.project, location=where.location)


class Jobs:
    """Runs jobs under deterministic ids: recognised when done, awaited when running."""

    def __init__(self, client: bigquery.Client, settings: BigQuerySettings) -> None:
        self.client = client
        self.settings = settings

    def _lookup(self, jid: str) -> Any:
        try:
            return self.client.get_job(jid, location=self.client.location)
        except gexc.NotFound:
            return None

    def run(self, base_id: str, start: Callable[[str], Any]) -> Any:
        """Run ``start(job_id)`` at most once successfully per ``base_id``; return the job."""
        last_error: Any = None
        for attempt in range(self.settings.job_attempts):
            jid = base_id if attempt == 0 else f"{base_id}_r{attempt}"
            job = self._lookup(jid)
            if job is None:
                try:
                    job = start(jid)
                except gexc.Conflict:
                    job = self._lookup(jid)
                    if job is None:
                        raise
            try:
                job.result(timeout=self.settings.job_timeout_seconds)
            except gexc.GoogleAPICallError as exc:
                error = getattr(job, "error_result", None) or {"message": str(exc)}
                if error.get("reason") in _TERMINAL_REASONS:
                    raise JobFailed(f"BigQuery job {jid} failed: {error.get('message')}") from None
                last_error = error
                continue
            except TimeoutError:
                raise DestinationError(
                    f"BigQuery job {jid} still running after {self.settings.job_timeout_seconds}s"
                ) from None
            return job
        raise DestinationError(
            f"BigQuery job {base_id} failed {self.settings.job_attempts} times; last: "
            f"{(last_error or {}).get('message')}"
        )


class BigQuerySink:
    name = "bigquery"

    def __init__(self, uri: str, settings: BigQuerySettings) -> None:
        self.where = parse_uri(uri)
        self.settings = settings
        self.client = make_client(self.where, settings)
        self.jobs = Jobs(self.client, settings)

    def table_id(self, name: str) -> str:
        """``table`` in the URI's dataset, or ``dataset.table`` / ``project.dataset.table``."""
        parts = name.split(".")
        if len(parts) == 1:
            return f"{self.where.project}.{self.where.dataset}.{name}"
        if len(parts) == 2:
            return f"{self.where.project}.{name}"
        return name

    @property
    def ledger_id(self) -> str:
        return self.table_id(LEDGER_TABLE)

    def ensure_ledger(self) -> None:
        try:
            if self.settings.create_datasets:
                dataset = bigquery.Dataset(f"{self.where.project}.{self.where.dataset}")
                if self.where.location:
                    dataset.location = self.where.location
                with contextlib.suppress(gexc.Conflict):
                    self.client.create_dataset(dataset, exists_ok=True)
            self.client.create_table(
                bigquery.Table(self.ledger_id, schema=LEDGER_SCHEMA), exists_ok=True
            )
        except gexc.GoogleAPICallError as exc:
            raise DestinationError(f"BigQuery ledger {self.ledger_id}: {exc.message}") from None

    def query(self, sql: str, params: Sequence[Any] = (), jid: str | None = None) -> Any:
        config = bigquery.QueryJobConfig(query_parameters=list(params))
        if jid is None:
            return self.client.query(sql, job_config=config).result(
                timeout=self.settings.job_timeout_seconds
            )
        return self.jobs.run(jid, lambda j: self.client.query(sql, job_config=config, job_id=j))

    def open_unit(self, ctx: LoadContext) -> BigQueryUnitWriter:
        self.ensure_ledger()
        return BigQueryUnitWriter(self, ctx)

    def loaded_units(self, pipeline: str, task: str, keys: Sequence[tuple[str, str]]) -> set[str]:
        self.ensure_ledger()
        try:
            rows = self.query(
                f"SELECT unit_key, fingerprint FROM {q(self.ledger_id)} "
                "WHERE pipeline = @pipeline AND task = @task",
                [
                    scalar_parameter("pipeline", pipeline),
                    scalar_parameter("task", task),
                ],
            )
        except gexc.GoogleAPICallError as exc:
            raise DestinationError(f"BigQuery ledger query failed: {exc.message}") from None
        return loaded_among(keys, rows)

    def execute(self, sql: str, params: dict[str, object]) -> int:
        """Run a ``sql`` task; parameters are BigQuery named parameters (``@name``)."""
        used = {m.group(1) for m in re.finditer(r"@(\w+)", sql)}
        bound = [scalar_parameter(k, v) for k, v in params.items() if k in used]
        try:
            job = self.client.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=bound))
            job.result(timeout=self.settings.job_timeout_seconds)
        except gexc.GoogleAPICallError as exc:
            raise DestinationError(f"sql task failed: {exc.message}") from None
        return max(int(job.num_dml_affected_rows or 0), 0)


def scalar_parameter(name: str, value: object) -> bigquery.ScalarQueryParameter:
    if isinstance(value, bool):
        return bigquery.ScalarQueryParameter(name, "BOOL", value)
    if isinstance(value, int):
        return bigquery.ScalarQueryParameter(name, "INT64", value)
    if isinstance(value, float):
        return bigquery.ScalarQueryParameter(name, "FLOAT64", value)
    return bigquery.ScalarQueryParameter(name, "STRING", None if value is None else str(value))


class _ParquetSpool:
    """Batches on local disk as Parquet; a schema change starts a new part, merged at the end."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, pa.Schema]] = []
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0

    def add(self, batch: pa.RecordBatch) -> None:
        batch = _parquet_ready(batch)
        if self.writer is None or not batch.schema.equals(self.parts[-1][1]):
            self._close_writer()
            fd, path = tempfile.mkstemp(prefix="sluice-", suffix=".parquet")
            os.close(fd)
            self.parts.append((path, batch.schema))
            self.writer = pq.ParquetWriter(path, batch.schema)
        self.writer.write_batch(batch)
        self.rows += batch.num_rows

    def _close_writer(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def finish(self) -> tuple[str, pa.Schema] | None:
        """One Parquet file with the union of all parts' columns (missing ones as nulls)."""
        self._close_writer()
        if len(self.parts) <= 1:
            return self.parts[0] if self.parts else None
        schema = pa.unify_schemas([s for _, s in self.parts])
        fd, path = tempfile.mkstemp(prefix="sluice-", suffix=".parquet")
        os.close(fd)
        with pq.ParquetWriter(path, schema) as writer:
            for part, _ in self.parts:
                for batch in pq.ParquetFile(part).iter_batches():
                    columns = [
                        batch.column(f.name)
                        if f.name in batch.schema.names
                        else pa.nulls(batch.num_rows, f.type)
                        for f in schema
                    ]
                    writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=schema))
        self.cleanup()
        self.parts = [(path, schema)]
        return path, schema

    def cleanup(self) -> None:
        self._close_writer()
        for path, _ in self.parts:
            with contextlib.suppress(OSError):
                os.unlink(path)


class BigQueryUnitWriter:
    def __init__(self, sink: BigQuerySink, ctx: LoadContext) -> None:
        self.sink = sink
        self.client = sink.client
        self.ctx = ctx
        self.dest: Destination = ctx.destination
        key = ctx.key
        self.key = (key.pipeline, key.task, key.unit, key.fingerprint)
        self.table_id = sink.table_id(ctx.table)
        self.data = _ParquetSpool()
        self.rejected = _ParquetSpool()

    def already_loaded(self) -> bool:
        key = self.ctx.key
        rows = self.sink.query(
            f"SELECT count(*) FROM {q(self.sink.ledger_id)} WHERE pipeline = @p AND task = @t "
            "AND unit_key = @u AND fingerprint = @f",
            [
                scalar_parameter("p", key.pipeline),
                scalar_parameter("t", key.task),
                scalar_parameter("u", key.unit),
                scalar_parameter("f", key.fingerprint),
            ],
        )
        return any(r[0] for r in rows)

    def write(self, batch: pa.RecordBatch) -> None:
        if self.dest.mode == "merge":
            # The stream position, so that the last row for a key wins in the MERGE.
            start = self.data.rows
            order = pa.array(range(start, start + batch.num_rows), pa.int64())
            batch = batch.append_column(_ORD, order)
        self.data.add(batch)

    def write_rejected(self, batch: pa.RecordBatch) -> None:
        batch = tag_rejects(batch, self.ctx)
        self.rejected.add(batch)

    # tables ------------------------------------------------------------------------------

    def _ensure_table(
        self, table_id: str, schema: pa.Schema, options: bool, policy: str, alter: bool = True
    ) -> bigquery.Table:
        """Create the table (with partitioning and clustering) or add new columns to it."""
        try:
            table = self.client.get_table(table_id)
        except gexc.NotFound:
            table = bigquery.Table(table_id, schema=bq_schema(schema))
            if options and self.dest.partition is not None:
                part = self.dest.partition
                table.time_partitioning = bigquery.TimePartitioning(
                    type_=part.granularity,
                    field=part.field,
                    expiration_ms=int(part.expiration_days * 86_400_000)
                    if part.expiration_days
                    else None,
                )
                table.require_partition_filter = part.require_filter
            if options and self.dest.cluster_by:
                table.clustering_fields = list(self.dest.cluster_by)
            return self.client.create_table(table, exists_ok=True)
        existing = {f.name for f in table.schema}
        new = [f for f in schema if f.name not in existing]
        refuse_frozen_columns([f.name for f in new], table_id, policy, self.ctx.key.unit)
        if new and alter:
            table.schema = list(table.schema) + bq_schema(pa.schema(new))
            table = self.client.update_table(table, ["schema"])
        return table

    def _load(
        self, path: str, table_id: str, disposition: str, step: str, add_fields: bool = False
    ) -> Any:
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET, write_disposition=disposition
        )
        if add_fields:
            config.schema_update_options = [bigquery.SchemaUpdateOption.ALLOW_FIELD_ADDITION]
        if self.dest.staging_bucket:
            return self._load_via_gcs(path, table_id, config, step)

        def start(jid: str) -> Any:
            with open(path, "rb") as handle:
                # No size given: always a resumable upload, whatever the file's size.
                return self.client.load_table_from_file(
                    handle, table_id, job_id=jid, job_config=config
                )

        return self.sink.jobs.run(job_id(self.key, step), start)

    def _load_via_gcs(
        self, path: str, table_id: str, config: bigquery.LoadJobConfig, step: str
    ) -> Any:
        from google.cloud import storage

        assert self.dest.staging_bucket is not None
        bucket_name, _, prefix = self.dest.staging_bucket[len("gs://") :].partition("/")
        name = "/".join(p for p in (prefix.strip("/"), job_id(self.key, step) + ".parquet") if p)
        blob = storage.Client(project=self.sink.where.project).bucket(bucket_name).blob(name)
        blob.upload_from_filename(path)
        uri = f"gs://{bucket_name}/{name}"
        job = self.sink.jobs.run(
            job_id(self.key, step),
            lambda jid: self.client.load_table_from_uri(
                uri, table_id, job_id=jid, job_config=config
            ),
        )
        with contextlib.suppress(gexc.GoogleAPICallError):
            blob.delete()
        return job

    # commit ------------------------------------------------------------------------------

    def commit(self, counts: WriteCounts) -> None:
        try:
            data = self.data.finish()
            rejected = self.rejected.finish()
            if data is not None:
                self._commit_data(*data)
            if rejected is not None:
                path, schema = rejected
                rejected_id = self.sink.table_id(self.ctx.table + "__rejected")
                self._ensure_table(rejected_id, schema, False, "evolve", alter=False)
                self._load(path, rejected_id, "WRITE_APPEND", "rejected", add_fields=True)
            self._insert_ledger(counts)
        except gexc.GoogleAPICallError as exc:
            raise DestinationError(
                f"BigQuery commit of {self.table_id} failed: {exc.message}"
            ) from None
        finally:
            self.abort()

    def _commit_data(self, path: str, schema: pa.Schema) -> None:
        policy = self.dest.schema_policy
        if self.dest.mode != "merge":
            # New columns are added by the load job itself (ALLOW_FIELD_ADDITION): atomically.
            self._ensure_table(self.table_id, schema, True, policy, alter=False)
            disposition = "WRITE_TRUNCATE" if self.dest.mode == "replace" else "WRITE_APPEND"
            self._load(path, self.table_id, disposition, "load", add_fields=policy == "evolve")
            return
        missing = [k for k in self.dest.keys if k not in schema.names]
        if missing:
            raise SchemaMismatch(
                f"merge key column(s) {', '.join(map(repr, missing))} are not in the unit's data",
                unit=self.ctx.key.unit,
            )
        staging_id = self.sink.table_id("_sluice_stage_" + job_id(self.key, "s")[7:31])
        self.client.create_table(bigquery.Table(staging_id, schema=bq_schema(schema)), True)
        self._load(path, staging_id, "WRITE_TRUNCATE", "stage")
        target_schema = pa.schema([f for f in schema if f.name != _ORD])
        self._ensure_table(self.table_id, target_schema, True, policy)
        keys = [q(k) for k in self.dest.keys]
        cols = [q(n) for n in target_schema.names]
        # Duplicate keys inside one unit: the last one wins (MERGE refuses duplicates).
        source = (
            f"SELECT * FROM {q(staging_id)} "
            f"QUALIFY ROW_NUMBER() OVER (PARTITION BY {', '.join(keys)} "
            f"ORDER BY {q(_ORD)} DESC) = 1"
        )
        self.sink.query(
            merge_statement(q(self.table_id), source, keys, cols), jid=job_id(self.key, "merge")
        )
        self.client.delete_table(staging_id, not_found_ok=True)

    def _insert_ledger(self, counts: WriteCounts) -> None:
        values = ledger_values(self.ctx, counts)
        self.sink.query(
            ledger_insert(
                q(self.sink.ledger_id),
                lambda i, name: "@" + name,
                computed=[("loaded_at", "CURRENT_TIMESTAMP()")],
            ),
            [scalar_parameter(n, v) for n, v in zip(LEDGER_COLUMNS, values, strict=True)],
            jid=job_id(self.key, "ledger"),
        )

    def abort(self) -> None:
        self.data.cleanup()
        self.rejected.cleanup()
