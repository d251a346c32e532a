"""DuckDB, the embedded default destination: Arrow batches are inserted without copying rows.

DuckDB allows one writing process per database file, and the loader is that process; units that
target the same file are serialised by a per-file lock, and the file is closed after each unit so
that users can open it between runs.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa

from services.loader.errors import DestinationError
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
from services.loader.sinks.sql import add_columns, quote_ident, quote_table

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()

LEDGER_DDL = f"""
CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (
    pipeline VARCHAR NOT NULL,
    task VARCHAR NOT NULL,
    unit_key VARCHAR NOT NULL,
    fingerprint VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    target_table VARCHAR NOT NULL,
    rows_loaded BIGINT NOT NULL,
    rows_rejected BIGINT NOT NULL,
    loaded_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (pipeline, task, unit_key, fingerprint)
)
"""


def database_path(uri: str) -> str:
    """``duckdb:///rel/path.duckdb`` is relative, ``duckdb:////abs/path.duckdb`` absolute."""
    return uri.split(":///", 1)[1] if ":///" in uri else uri.split("://", 1)[1]


def _lock_for(path: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(str(Path(path).resolve()), threading.Lock())


class DuckDBSink:
    name = "duckdb"

    def __init__(self, uri: str) -> None:
        self.path = database_path(uri)

    def _connect(self) -> duckdb.DuckDBPyConnection:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            return duckdb.connect(self.path)
        except duckdb.Error as exc:
            raise DestinationError(f"cannot open DuckDB database {self.path}: {exc}") from None

    def open_unit(self, ctx: LoadContext) -> DuckDBUnitWriter:
        lock = _lock_for(self.path)
        lock.acquire()
        try:
            con = self._connect()
            con.execute(LEDGER_DDL)
            con.begin()
        except BaseException:
            lock.release()
            raise
        return DuckDBUnitWriter(con, ctx, lock)

    def loaded_units(self, pipeline: str, task: str, keys: Sequence[tuple[str, str]]) -> set[str]:
        if not Path(self.path).exists():
            return set()
        with _lock_for(self.path):
            con = self._connect()
            try:
                con.execute(LEDGER_DDL)
                rows = con.execute(
                    f"SELECT unit_key, fingerprint FROM {LEDGER_TABLE} "
                    "WHERE pipeline = ? AND task = ?",
                    [pipeline, task],
                ).fetchall()
            finally:
                con.close()
        return loaded_among(keys, rows)

    def execute(self, sql: str, params: dict[str, object]) -> int:
        with _lock_for(self.path):
            con = self._connect()
            try:
                con.begin()
                # DuckDB refuses named parameters the statement does not use, and every run
                # offers the whole run context ($ds, $run_id, ...): bind only those named.
                used = {k: v for k, v in params.items() if re.search(rf"\${re.escape(k)}\b", sql)}
                cursor = con.execute(sql, used or None)
                try:
                    result = cursor.fetchall()
                    affected = (
                        int(result[0][0])
                        if result and len(result[0]) == 1 and isinstance(result[0][0], int)
                        else len(result)
                    )
                except duckdb.Error:
                    affected = 0
                con.commit()
                return affected
            except duckdb.Error as exc:
                con.rollback()
                raise DestinationError(f"sql task failed: {exc}") from None
            finally:
                con.close()


class DuckDBUnitWriter:
    def __init__(
        self, con: duckdb.DuckDBPyConnection, ctx: LoadContext, lock: threading.Lock
    ) -> None:
        self.con = con
        self.ctx = ctx
        self.lock = lock
        self.table = quote_table(ctx.table)
        self.rejected_table = quote_table(ctx.table + "__rejected")
        self.staging = "_sluice_staging"
        self.schema: pa.Schema | None = None
        self.rejected_columns: set[str] = set()

    def already_loaded(self) -> bool:
        key = self.ctx.key
        row = self.con.execute(
            f"SELECT 1 FROM {LEDGER_TABLE} "
            "WHERE pipeline=? AND task=? AND unit_key=? AND fingerprint=?",
            [key.pipeline, key.task, key.unit, key.fingerprint],
        ).fetchall()
        return bool(row)

    def _existing_columns(self, table: str) -> list[str] | None:
        schema, _, name = table.rpartition(".")
        rows = self.con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
            "AND (? = '' OR table_schema = ?) ORDER BY ordinal_position",
            [name, schema, schema],
        ).fetchall()
        return [r[0] for r in rows] or None

    def _prepare(self, batch: pa.RecordBatch) -> None:
        """Create or evolve the target (and the merge staging table) for this batch's schema."""
        self.con.register("_sluice_batch", batch)
        existing = self._existing_columns(self.ctx.table)
        if existing is None:
            self.con.execute(f"CREATE TABLE {self.table} AS SELECT * FROM _sluice_batch LIMIT 0")
        else:
            new = [f for f in batch.schema if f.name not in existing]
            refuse_frozen_columns(
                [f.name for f in new], self.ctx.table, self.ctx.destination.schema_policy,
                self.ctx.key.unit,
            )  # fmt: skip
            self._add_columns(self.table, new)
        if self.ctx.destination.mode == "replace" and self.schema is None:
            self.con.execute(f"DELETE FROM {self.table}")
        if self.ctx.destination.mode == "merge":
            if self.schema is None:
                self.con.execute(
                    f"CREATE TEMP TABLE {self.staging} AS SELECT * FROM _sluice_batch LIMIT 0"
                )
            else:
                staged = self._existing_columns(self.staging) or []
                missing = [f for f in batch.schema if f.name not in staged]
                self._add_columns(self.staging, missing)
        self.con.unregister("_sluice_batch")
        self.schema = batch.schema

    def write(self, batch: pa.RecordBatch) -> None:
        try:
            if self.schema is None or not batch.schema.equals(self.schema):
                self._prepare(batch)
            target = self.staging if self.ctx.destination.mode == "merge" else self.table
            self.con.register("_sluice_batch", batch)
            self.con.execute(f"INSERT INTO {target} BY NAME SELECT * FROM _sluice_batch")
            self.con.unregister("_sluice_batch")
        except duckdb.Error as exc:
            raise DestinationError(f"DuckDB write to {self.ctx.table} failed: {exc}") from None

    def _add_columns(
        self,
        table: str,
        fields: Iterable[pa.Field],
        type_of: Callable[[pa.DataType], str] | None = None,
    ) -> None:
        """Widen ``table`` (already quoted) with ``fields``, typed by ``type_of`` (by default
        the DuckDB type of each Arrow type)."""
        type_of = type_of or functools.partial(_duck_type, self.con)
        for statement in add_columns(table, fields, type_of):
            self.con.execute(statement)

    def write_rejected(self, batch: pa.RecordBatch) -> None:
        table = tag_rejects(batch, self.ctx)
        self.con.register("_sluice_rejects", table)
        # Rejects differ in shape (failed checks carry the row, ragged lines their raw text).
        if not set(table.schema.names) <= self.rejected_columns:
            existing = self._existing_columns(self.ctx.table + "__rejected")
            if existing is None:
                self.con.execute(
                    f"CREATE TABLE {self.rejected_table} AS SELECT * FROM _sluice_rejects LIMIT 0"
                )
            else:
                missing = [f for f in table.schema if f.name not in existing]
                self._add_columns(self.rejected_table, missing, lambda kind: "VARCHAR")
            self.rejected_columns = set(existing or ()) | set(table.schema.names)
        self.con.execute(f"INSERT INTO {self.rejected_table} BY NAME SELECT * FROM _sluice_rejects")
        self.con.unregister("_sluice_rejects")

    def commit(self, counts: WriteCounts) -> None:
        try:
            if self.ctx.destination.mode == "merge" and self.schema is not None:
                keys = [quote_ident(k) for k in self.ctx.destination.keys]
                key_list = ", ".join(keys)
                self.con.execute(
                    f"DELETE FROM {self.table} WHERE ({key_list}) IN "
                    f"(SELECT {key_list} FROM {self.staging})"
                )
                # Within the unit the last row for a key wins (rowid follows insertion order).
                self.con.execute(
                    f"INSERT INTO {self.table} BY NAME SELECT * FROM {self.staging} "
                    f"QUALIFY row_number() OVER (PARTITION BY {key_list} ORDER BY rowid DESC) = 1"
                )
            self.con.execute(
                ledger_insert(LEDGER_TABLE, lambda i, name: "?"),
                list(ledger_values(self.ctx, counts)),
            )
            self.con.commit()
        except duckdb.Error as exc:
            self.abort()
            raise DestinationError(f"DuckDB commit of {self.ctx.table} failed: {exc}") from None
        finally:
            self._close()

    def abort(self) -> None:
        with contextlib.suppress(duckdb.Error):
            self.con.rollback()
        self._close()

    def _close(self) -> None:
        if self.lock.locked():
            try:
                self.con.close()
            finally:
                self.lock.release()


def _duck_type(con: duckdb.DuckDBPyConnection, kind: pa.DataType) -> str:
    probe = pa.table({"c": pa.array([], type=kind)})
    con.register("_sluice_probe", probe)
    try:
        row = con.execute(
            "SELECT typeof(c) FROM (SELECT c FROM _sluice_probe UNION ALL SELECT NULL) LIMIT 1"
        ).fetchall()
    finally:
        con.unregister("_sluice_probe")
    return str(row[0][0]) if row else "VARCHAR"


__all__ = ["DuckDBSink", "DuckDBUnitWriter", "database_path"]
