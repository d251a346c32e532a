"""PostgreSQL destination: COPY inside the unit's transaction, ledger row in the same one.

Batches are rendered to CSV by Arrow's C++ writer and streamed with ``COPY ... FROM STDIN``, so
no row passes through Python objects. An advisory lock on the unit key makes two loaders racing on
the same unit queue behind each other; the second one then finds the ledger row and skips.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv

from services.common import lineage
from services.common.errors import SchemaMismatch
from services.common.spec.render import redact
from services.loader.errors import DestinationError
from services.loader.sinks.base import LEDGER_TABLE, LoadContext, WriteCounts
from services.loader.sinks.sql import postgres_type, quote_ident, quote_table

LEDGER_DDL = f"""
CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (
    pipeline text NOT NULL,
    task text NOT NULL,
    unit_key text NOT NULL,
    fingerprint text NOT NULL,
    run_id text NOT NULL,
    target_table text NOT NULL,
    rows_loaded bigint NOT NULL,
    rows_rejected bigint NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline, task, unit_key, fingerprint)
)
"""
_DDL_LOCK_KEY = 0x5_1C3_1ED6E
_STAGING = "_sluice_staging"


def connection_string(uri: str) -> str:
    scheme, rest = uri.split("://", 1)
    return "postgresql://" + rest if scheme.startswith("postgres") else uri


class PostgresSink:
    name = "postgresql"

    def __init__(self, uri: str) -> None:
        self.dsn = connection_string(uri)

    def _connect(self) -> psycopg.Connection:
        try:
            return psycopg.connect(self.dsn, autocommit=False, connect_timeout=10)
        except psycopg.Error as exc:
            raise DestinationError(
                f"cannot connect to {redact(self.dsn)}: {str(exc).strip()}"
            ) from None

    def _ensure_ledger(self, conn: psycopg.Connection) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK_KEY,))
            conn.execute(LEDGER_DDL)

    def open_unit(self, ctx: LoadContext) -> PostgresUnitWriter:
        conn = self._connect()
        try:
            self._ensure_ledger(conn)
            key = ctx.key
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (json.dumps([key.pipeline, key.task, key.unit]),),
            )
        except psycopg.Error as exc:
            conn.close()
            raise DestinationError(f"PostgreSQL: {str(exc).strip()}") from None
        return PostgresUnitWriter(conn, ctx)

    def loaded_units(self, pipeline: str, task: str, keys: Sequence[tuple[str, str]]) -> set[str]:
        with self._connect() as conn:
            self._ensure_ledger(conn)
            rows = conn.execute(
                f"SELECT unit_key, fingerprint FROM {LEDGER_TABLE} "
                "WHERE pipeline = %s AND task = %s",
                (pipeline, task),
            ).fetchall()
        loaded = {(r[0], r[1]) for r in rows}
        return {unit for unit, fingerprint in keys if (unit, fingerprint) in loaded}

    def execute(self, sql: str, params: dict[str, object]) -> int:
        with self._connect() as conn:
            try:
                cursor = conn.execute(sql.encode(), params or None)
                conn.commit()
                return max(cursor.rowcount, 0)
            except psycopg.Error as exc:
                conn.rollback()
                raise DestinationError(f"sql task failed: {str(exc).strip()}") from None


class PostgresUnitWriter:
    def __init__(self, conn: psycopg.Connection, ctx: LoadContext) -> None:
        self.conn = conn
        self.ctx = ctx
        self.table = quote_table(ctx.table)
        self.rejected_table = quote_table(ctx.table + "__rejected")
        self.columns: list[str] | None = None
        self.rejected_ready = False

    def already_loaded(self) -> bool:
        key = self.ctx.key
        row = self.conn.execute(
            f"SELECT 1 FROM {LEDGER_TABLE} WHERE pipeline=%s AND task=%s AND unit_key=%s "
            "AND fingerprint=%s",
            (key.pipeline, key.task, key.unit, key.fingerprint),
        ).fetchone()
        return row is not None

    def _existing_columns(self, table: str) -> list[str] | None:
        schema, _, name = table.rpartition(".")
        rows = self.conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
            "AND table_schema = COALESCE(NULLIF(%s, ''), current_schema()) "
            "ORDER BY ordinal_position",
            (name, schema),
        ).fetchall()
        return [r[0] for r in rows] or None

    def _prepare(self, schema: pa.Schema) -> None:
        existing = self._existing_columns(self.ctx.table)
        if existing is None:
            columns = ", ".join(f"{quote_ident(f.name)} {postgres_type(f.type)}" for f in schema)
            self.conn.execute(f"CREATE TABLE IF NOT EXISTS {self.table} ({columns})".encode())
        else:
            new = [f for f in schema if f.name not in existing]
            if new and self.ctx.destination.schema_policy == "freeze":
                raise SchemaMismatch(
                    f"new column(s) {', '.join(repr(f.name) for f in new)} not in table "
                    f"{self.ctx.table} and the task's schema policy is freeze",
                    unit=self.ctx.key.unit,
                )
            for field in new:
                self.conn.execute(
                    f"ALTER TABLE {self.table} ADD COLUMN {quote_ident(field.name)} "
                    f"{postgres_type(field.type)}".encode()
                )
        if self.ctx.destination.mode == "replace":
            self.conn.execute(f"DELETE FROM {self.table}".encode())
        if self.ctx.destination.mode == "merge":
            self.conn.execute(
                f"CREATE TEMP TABLE {_STAGING} (LIKE {self.table}) ON COMMIT DROP".encode()
            )
        self.columns = schema.names

    def _copy(self, table: str, batch: pa.RecordBatch) -> None:
        buffer = io.BytesIO()
        pacsv.write_csv(batch, buffer, pacsv.WriteOptions(include_header=False))
        columns = ", ".join(quote_ident(n) for n in batch.schema.names)
        with self.conn.cursor().copy(
            f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)".encode()
        ) as copy:
            copy.write(buffer.getbuffer())

    def write(self, batch: pa.RecordBatch) -> None:
        try:
            if self.columns is None:
                self._prepare(batch.schema)
            target = _STAGING if self.ctx.destination.mode == "merge" else self.table
            self._copy(target, batch)
        except psycopg.Error as exc:
            raise DestinationError(
                f"PostgreSQL write to {self.ctx.table} failed: {str(exc).strip()}"
            ) from None

    def write_rejected(self, batch: pa.RecordBatch) -> None:
        n = batch.num_rows
        batch = batch.append_column(lineage.RUN_ID, pa.array([self.ctx.run_id] * n))
        batch = batch.append_column(lineage.UNIT, pa.array([self.ctx.key.unit] * n))
        try:
            if not self.rejected_ready:
                existing = self._existing_columns(self.ctx.table + "__rejected")
                if existing is None:
                    cols = ", ".join(
                        f"{quote_ident(f.name)} {postgres_type(f.type)}" for f in batch.schema
                    )
                    self.conn.execute(f"CREATE TABLE {self.rejected_table} ({cols})".encode())
                else:
                    for field in batch.schema:
                        if field.name not in existing:
                            self.conn.execute(
                                f"ALTER TABLE {self.rejected_table} ADD COLUMN "
                                f"{quote_ident(field.name)} text".encode()
                            )
                self.rejected_ready = True
            self._copy(self.rejected_table, batch)
        except psycopg.Error as exc:
            raise DestinationError(f"PostgreSQL quarantine write failed: {exc}") from None

    def commit(self, counts: WriteCounts) -> None:
        key = self.ctx.key
        try:
            if self.ctx.destination.mode == "merge" and self.columns is not None:
                self._merge_staging(self.columns)
            self.conn.execute(
                f"INSERT INTO {LEDGER_TABLE} (pipeline, task, unit_key, fingerprint, run_id, "
                "target_table, rows_loaded, rows_rejected) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    key.pipeline,
                    key.task,
                    key.unit,
                    key.fingerprint,
                    self.ctx.run_id,
                    self.ctx.table,
                    counts.rows_loaded,
                    counts.rows_rejected,
                ),
            )
            self.conn.commit()
        except psycopg.Error as exc:
            self.abort()
            raise DestinationError(f"PostgreSQL commit failed: {str(exc).strip()}") from None
        finally:
            self.conn.close()

    def _merge_staging(self, columns: list[str]) -> None:
        # Last row wins inside the unit, then rows with the same keys are replaced.
        keys = [quote_ident(k) for k in self.ctx.destination.keys]
        cols = ", ".join(quote_ident(c) for c in columns)
        match = " AND ".join(f"t.{k} IS NOT DISTINCT FROM s.{k}" for k in keys)
        self.conn.execute(
            f"DELETE FROM {self.table} AS t USING {_STAGING} AS s WHERE {match}".encode()
        )
        self.conn.execute(
            f"INSERT INTO {self.table} ({cols}) SELECT DISTINCT ON ({', '.join(keys)}) {cols} "
            f"FROM (SELECT *, row_number() OVER () AS _sluice_ord FROM {_STAGING}) AS s "
            f"ORDER BY {', '.join(keys)}, _sluice_ord DESC".encode()
        )

    def abort(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self.conn.rollback()
        self.conn.close()
