"""PostgreSQL destination: binary COPY from Arrow, in the unit's transaction with its ledger row.

A unit runs on one ADBC connection (``adbc-driver-postgresql``): its ``adbc_ingest`` encodes
Arrow buffers straight into PostgreSQL's binary COPY format in C, so no row passes through
Python objects, and it shares the connection's transaction with the DDL, the MERGE and the ledger
insert. The whole unit is one COPY stream (see :mod:`arrow_stream`).

Modes:

- ``append``: COPY into the target table.
- ``replace``: COPY into a shadow table (``LIKE`` the target), then in the same transaction the
  target is renamed away, the shadow takes its name and the old table is dropped. Readers see the
  old rows until commit and the new ones after: never an empty table.
- ``merge``: COPY into a temporary staging table, then one ``MERGE`` on the declared keys (last
  row of the unit wins for duplicate keys).

An advisory lock on the unit key makes two loaders racing on the same unit queue behind each
other; the second then finds the ledger row and skips. Units that create, replace or merge a
table also take a lock on the table name so concurrent DDL on one table cannot collide.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import adbc_driver_postgresql.dbapi as adbc
import psycopg
import pyarrow as pa

from services.common.errors import SchemaMismatch
from services.common.spec.render import redact
from services.loader.errors import DestinationError
from services.loader.sinks.arrow_stream import BatchPipe, Spool
from services.loader.sinks.base import (
    LEDGER_TABLE,
    LoadContext,
    WriteCounts,
    ledger_insert,
    ledger_values,
    loaded_among,
    refuse_frozen_columns,
    tag_rejects,
)
from services.loader.sinks.sql import (
    add_columns,
    derived_name,
    merge_statement,
    postgres_type,
    quote_ident,
    quote_table,
    split_table,
)

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
log = logging.getLogger(__name__)
_DDL_LOCK_KEY = 0x5_1C3_1ED6E
_STAGING = "_sluice_staging"


def _ensure_ledger(execute: Callable[[str], object]) -> None:
    """Create the ledger table if needed, under a lock: two concurrent ``CREATE TABLE IF NOT
    EXISTS`` can still collide. ``execute`` runs SQL on either driver, inside a transaction."""
    execute(f"SELECT pg_advisory_xact_lock({_DDL_LOCK_KEY})")
    execute(LEDGER_DDL)


def connection_string(uri: str) -> str:
    """``postgres://`` / ``postgresql+driver://`` as the libpq URI both drivers accept."""
    scheme, rest = uri.split("://", 1)
    return "postgresql://" + rest if scheme.startswith("postgres") else uri


def _message(exc: BaseException) -> str:
    return redact(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))


def _column_defs(fields: Iterable[pa.Field]) -> str:
    """``"name" type, ...`` for CREATE TABLE."""
    return ", ".join(f"{quote_ident(f.name)} {postgres_type(f.type)}" for f in fields)


class PostgresSink:
    name = "postgresql"

    def __init__(self, uri: str) -> None:
        self.dsn = connection_string(uri)

    def _connect(self) -> psycopg.Connection:
        try:
            return psycopg.connect(self.dsn, autocommit=False, connect_timeout=10)
        except psycopg.Error as exc:
            raise DestinationError(
                f"cannot connect to {redact(self.dsn)}: {_message(exc)}"
            ) from None

    def _connect_adbc(self) -> Any:
        try:
            return adbc.connect(self.dsn)
        except adbc.Error as exc:
            raise DestinationError(
                f"cannot connect to {redact(self.dsn)}: {_message(exc)}"
            ) from None

    def open_unit(self, ctx: LoadContext) -> PostgresUnitWriter:
        conn = self._connect_adbc()
        try:
            cursor = conn.cursor()
            _ensure_ledger(cursor.execute)
            conn.commit()
            key = ctx.key
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                (json.dumps([key.pipeline, key.task, key.unit]),),
            )
            cursor.fetchall()
        except adbc.Error as exc:
            conn.close()
            raise DestinationError(f"PostgreSQL: {_message(exc)}") from None
        return PostgresUnitWriter(conn, cursor, ctx)

    def loaded_units(self, pipeline: str, task: str, keys: Sequence[tuple[str, str]]) -> set[str]:
        with self._connect() as conn:
            with conn.transaction():
                _ensure_ledger(conn.execute)
            rows = conn.execute(
                f"SELECT unit_key, fingerprint FROM {LEDGER_TABLE} "
                "WHERE pipeline = %s AND task = %s",
                (pipeline, task),
            ).fetchall()
        return loaded_among(keys, rows)

    def execute(self, sql: str, params: dict[str, object]) -> int:
        """Run a ``sql`` task; parameters are bound by psycopg (``%(name)s`` placeholders)."""
        with self._connect() as conn:
            try:
                cursor = conn.execute(sql.encode(), params or None)
                conn.commit()
                return max(cursor.rowcount, 0)
            except psycopg.Error as exc:
                conn.rollback()
                raise DestinationError(f"sql task failed: {_message(exc)}") from None


class PostgresUnitWriter:
    def __init__(self, conn: Any, cursor: Any, ctx: LoadContext) -> None:
        self.conn = conn
        self.cursor = cursor
        self.ctx = ctx
        self.mode = ctx.destination.mode
        schema_name, self.name = split_table(ctx.table)
        self.rejected_name = ctx.table + "__rejected"
        self.shadow_name = derived_name(self.name, "__sluice_swap")
        self.pipe: BatchPipe | None = None
        """The unit's COPY stream; its cancel interrupts a COPY stuck in the server on abort."""
        self.columns: list[str] = []
        self.ingest_table: tuple[str | None, str] | None = None
        self.swap = False
        self.rejects = Spool()
        if schema_name is None:
            # ADBC ingest would otherwise pick "public" rather than the search path's schema.
            cursor.execute("SELECT current_schema()")
            row = cursor.fetchone()
            schema_name = str(row[0]) if row and row[0] else "public"
        self.schema_name: str = schema_name
        self.table = self._qualified(self.name)

    # ledger ------------------------------------------------------------------------------

    def already_loaded(self) -> bool:
        key = self.ctx.key
        self.cursor.execute(
            f"SELECT count(*) FROM {LEDGER_TABLE} WHERE pipeline=$1 AND task=$2 AND unit_key=$3 "
            "AND fingerprint=$4",
            (key.pipeline, key.task, key.unit, key.fingerprint),
        )
        row = self.cursor.fetchone()
        return bool(row and row[0])

    # schema ------------------------------------------------------------------------------

    def _existing_columns(self, schema: str, name: str) -> list[str] | None:
        self.cursor.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = $1 "
            "AND table_schema = $2 ORDER BY ordinal_position",
            (name, schema),
        )
        return [r[0] for r in self.cursor.fetchall()] or None

    def _qualified(self, name: str) -> str:
        return quote_table(f"{self.schema_name}.{name}")

    def _lock_table(self) -> None:
        self.cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 1))",
            (json.dumps(["table", self.schema_name, self.name]),),
        )
        self.cursor.fetchall()

    def _prepare(self, schema: pa.Schema) -> None:
        """Create or evolve the target (or its shadow), and choose where the COPY goes."""
        if self.mode != "append":
            self._lock_table()
        current = self.shadow_name if self.swap else self.name
        existing = self._existing_columns(self.schema_name, current)
        if existing is None and self.mode == "append":
            self._lock_table()
            existing = self._existing_columns(self.schema_name, self.name)
        created = existing is None
        if existing is None:
            self.cursor.execute(f"CREATE TABLE {self.table} ({_column_defs(schema)})")
            existing = list(schema.names)
        new = [f for f in schema if f.name not in existing]
        refuse_frozen_columns(
            [f.name for f in new], self.ctx.table, self.ctx.destination.schema_policy,
            self.ctx.key.unit,
        )  # fmt: skip
        # A table created by this unit is invisible until commit: no shadow needed.
        if self.mode == "replace" and self.ingest_table is None and not created:
            shadow = self._qualified(self.shadow_name)
            self.cursor.execute(f"CREATE TABLE {shadow} (LIKE {self.table} INCLUDING ALL)")
            self.swap = True
            self.ingest_table = (self.schema_name, self.shadow_name)
        self._add_columns(self._qualified(self.shadow_name) if self.swap else self.table, new)
        if self.ingest_table is None:
            self.ingest_table = (
                (None, _STAGING) if self.mode == "merge" else (self.schema_name, self.name)
            )

    def _add_columns(self, table: str, fields: Iterable[pa.Field]) -> None:
        """Widen ``table`` (already quoted) with ``fields``, typed as on creation."""
        for statement in add_columns(table, fields, postgres_type):
            self.cursor.execute(statement)

    def _start_stream(self, schema: pa.Schema) -> BatchPipe:
        assert self.ingest_table is not None
        db_schema, name = self.ingest_table
        staging = self.mode == "merge"
        first = not self.columns
        if staging and not first:
            added = [f for f in schema if f.name not in self.columns]
            self._add_columns(quote_ident(_STAGING), added)
        self.columns += [n for n in schema.names if n not in self.columns]
        cursor = self.conn.cursor()

        def consume(reader: pa.RecordBatchReader) -> object:
            if staging:
                return cursor.adbc_ingest(
                    name, reader, mode="create" if first else "append", temporary=True
                )
            return cursor.adbc_ingest(name, reader, mode="append", db_schema_name=db_schema)

        return BatchPipe(schema, consume, cancel=cursor.adbc_cancel)

    # data --------------------------------------------------------------------------------

    def write(self, batch: pa.RecordBatch) -> None:
        try:
            if self.pipe is not None and not batch.schema.equals(self.pipe.schema):
                self.pipe.close()
                self.pipe = None
            if self.pipe is None:
                self._prepare(batch.schema)
                self.pipe = self._start_stream(batch.schema)
            self.pipe.put(batch)
        except adbc.Error as exc:
            raise DestinationError(
                f"PostgreSQL write to {self.ctx.table} failed: {_message(exc)}"
            ) from None

    def write_rejected(self, batch: pa.RecordBatch) -> None:
        batch = tag_rejects(batch, self.ctx)
        # The connection may be in the middle of the unit's COPY: rejects wait on disk.
        self.rejects.add(batch)

    def _write_rejected(self) -> None:
        schema_name, name = split_table(self.rejected_name)
        schema_name = schema_name or self.schema_name
        table = quote_table(f"{schema_name}.{name}")
        for reader in self.rejects.readers():
            existing = self._existing_columns(schema_name, name)
            if existing is None:
                self.cursor.execute(f"CREATE TABLE {table} ({_column_defs(reader.schema)})")
            else:
                self._add_columns(table, [f for f in reader.schema if f.name not in existing])
            self.conn.cursor().adbc_ingest(name, reader, mode="append", db_schema_name=schema_name)

    # commit ------------------------------------------------------------------------------

    def commit(self, counts: WriteCounts) -> None:
        try:
            if self.pipe is not None:
                self.pipe.close()
                self.pipe = None
            if self.mode == "merge" and self.columns:
                self._merge_staging()
            if self.swap:
                self._swap()
            self._write_rejected()
            self.cursor.execute(
                ledger_insert(LEDGER_TABLE, lambda i, name: f"${i}"),
                ledger_values(self.ctx, counts),
            )
            self.conn.commit()
        except adbc.Error as exc:
            self.abort()
            raise DestinationError(
                f"PostgreSQL commit of {self.ctx.table} failed: {_message(exc)}"
            ) from None
        finally:
            self._close()

    def _pinned(self) -> bool:
        """True when views depend on the target or it has grants: a renamed table loses both."""
        self.cursor.execute(
            "SELECT (SELECT count(*) FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid "
            "WHERE d.refobjid = $1::regclass AND r.ev_class <> d.refobjid) "
            "+ (SELECT count(*) FROM pg_class WHERE oid = $1::regclass AND relacl IS NOT NULL)",
            (self.table,),
        )
        row = self.cursor.fetchone()
        return bool(row and row[0])

    def _swap(self) -> None:
        shadow = self._qualified(self.shadow_name)
        if self._pinned():
            # Swap the contents instead (still one transaction, so readers see the old rows
            # until commit under MVCC), keeping the table's views and grants.
            cols = ", ".join(quote_ident(c) for c in self.columns)
            self.cursor.execute(f"DELETE FROM {self.table}")
            self.cursor.execute(f"INSERT INTO {self.table} ({cols}) SELECT {cols} FROM {shadow}")
            self.cursor.execute(f"DROP TABLE {shadow}")
            return
        old = derived_name(self.name, "__sluice_old")
        self.cursor.execute(f"ALTER TABLE {self.table} RENAME TO {quote_ident(old)}")
        self.cursor.execute(f"ALTER TABLE {shadow} RENAME TO {quote_ident(self.name)}")
        self.cursor.execute(f"DROP TABLE {self._qualified(old)}")

    def _merge_staging(self) -> None:
        keys = [quote_ident(k) for k in self.ctx.destination.keys]
        missing = [k for k in self.ctx.destination.keys if k not in self.columns]
        if missing:
            raise SchemaMismatch(
                f"merge key column(s) {', '.join(map(repr, missing))} are not in the unit's data",
                unit=self.ctx.key.unit,
            )
        cols = [quote_ident(c) for c in self.columns]
        # Within the unit the last row for a key wins (COPY keeps the stream's order).
        source = (
            f"SELECT DISTINCT ON ({', '.join(keys)}) {', '.join(cols)} FROM "
            f"(SELECT *, row_number() OVER () AS _sluice_ord FROM {quote_ident(_STAGING)}) AS x "
            f"ORDER BY {', '.join(keys)}, _sluice_ord DESC"
        )
        self.cursor.execute(merge_statement(self.table, source, keys, cols))

    def abort(self) -> None:
        if self.pipe is not None:
            pipe, self.pipe = self.pipe, None
            # A COPY stuck in the server (waiting for a lock, a full disk) is cancelled there:
            # the unit's transaction must not stay open after the run has been cancelled.
            pipe.abort()
            if not pipe.finished:
                # libpq connections are not shared between threads: the connection is left to
                # the stuck thread (the server ends the transaction when its socket closes).
                log.error("the COPY into %s did not stop after a cancel", self.ctx.table)
                self.rejects.close()
                return
        with contextlib.suppress(adbc.Error):
            self.conn.rollback()
        self._close()

    def _close(self) -> None:
        self.rejects.close()
        with contextlib.suppress(adbc.Error):
            self.cursor.close()
        with contextlib.suppress(adbc.Error):
            self.conn.close()
