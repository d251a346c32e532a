"""MySQL / MariaDB destination: ``LOAD DATA LOCAL INFILE`` into staging, one transaction at commit.

MySQL commits implicitly on every ``CREATE``/``ALTER TABLE``, so a unit cannot create or evolve
tables while its rows sit in an open transaction. Batches therefore stream into session-private
TEMPORARY staging tables (invisible to everyone, gone if the loader dies); at commit the tables
are created or evolved first, and then one transaction moves the staged rows into the target and
the quarantine table and inserts the ledger row.

Batches become ``LOAD DATA`` input with Arrow compute kernels (every value quoted, NULL as the
bare word ``NULL``), so no row passes through Python objects.

Modes: ``append`` inserts; ``replace`` deletes and inserts in the transaction (InnoDB readers see
the old rows until commit, never an empty table); ``merge`` is ``INSERT ... SELECT ... ON
DUPLICATE KEY UPDATE`` and needs a PRIMARY KEY or UNIQUE index on the keys (created with the
table when Sluice creates it). ``GET_LOCK`` on the unit key serialises loaders racing on a unit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pymysql

from services.common.errors import SchemaMismatch
from services.common.spec.render import redact
from services.loader.errors import DestinationError
from services.loader.sinks.base import (
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
from services.loader.sinks.sql import (
    add_columns,
    mysql_type,
    quote_ident,
    quote_table,
    split_table,
)

log = logging.getLogger(__name__)

LEDGER_DDL = f"""
CREATE TABLE IF NOT EXISTS `{LEDGER_TABLE}` (
    unit_hash CHAR(64) NOT NULL PRIMARY KEY,
    pipeline VARCHAR(512) NOT NULL,
    task VARCHAR(512) NOT NULL,
    unit_key TEXT NOT NULL,
    fingerprint VARCHAR(512) NOT NULL,
    run_id VARCHAR(128) NOT NULL,
    target_table VARCHAR(512) NOT NULL,
    rows_loaded BIGINT NOT NULL,
    rows_rejected BIGINT NOT NULL,
    loaded_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    KEY pipeline_task (pipeline(191), task(191))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""
_STAGING = "_sluice_staging"
_REJECTED_STAGING = "_sluice_rejected_staging"
_ORD = "_sluice_ord"
_LOCK_WAIT_SECONDS = 600


def q(name: str) -> str:
    """Quote one MySQL identifier (backticks)."""
    return quote_ident(name, "`")


def qt(name: str) -> str:
    """Quote ``table`` or ``database.table``."""
    return quote_table(name, "`")


def connect_args(uri: str) -> dict[str, Any]:
    """``mysql://user:pass@host:port/db?ssl_ca=...`` as ``pymysql.connect`` arguments."""
    parts = urlsplit(uri)
    args: dict[str, Any] = {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
        "database": parts.path.lstrip("/") or None,
        "charset": "utf8mb4",
        "local_infile": True,
        "autocommit": False,
        "connect_timeout": 10,
    }
    query = parse_qs(parts.query)
    if "ssl_ca" in query:
        args["ssl"] = {"ca": query["ssl_ca"][0]}
    return args


def load_data_bytes(batch: pa.RecordBatch) -> bytes:
    """The batch as ``LOAD DATA`` input: values quoted, NULL bare, built by Arrow kernels."""
    columns = []
    for column in batch.columns:
        if pa.types.is_boolean(column.type):
            column = pc.cast(column, pa.int8())
        elif pa.types.is_timestamp(column.type):
            # DATETIME has no zone and at most microseconds: UTC wall time, microseconds.
            column = pc.cast(column, pa.timestamp("us"), safe=False)
        elif pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        text = pc.cast(column, pa.string())
        quoted = pc.binary_join_element_wise('"', pc.replace_substring(text, '"', '""'), '"', "")
        columns.append(pc.fill_null(quoted, "NULL"))
    if batch.num_rows == 0:
        return b""
    lines = pc.binary_join_element_wise(*columns, ",") if len(columns) > 1 else columns[0]
    lines = pc.binary_join_element_wise(lines, "\n", "")
    array = lines.cast(pa.large_string())
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)
    start, end = offsets[array.offset], offsets[array.offset + len(array)]
    data: bytes = array.buffers()[2].to_pybytes()[start:end]
    return data


def _message(exc: BaseException) -> str:
    return redact(str(exc.args[1] if len(exc.args) > 1 else exc))


class MySQLSink:
    name = "mysql"

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.args = connect_args(uri)

    def _connect(self) -> pymysql.connections.Connection[Any]:
        try:
            return pymysql.connect(**self.args)
        except pymysql.Error as exc:
            raise DestinationError(
                f"cannot connect to {redact(self.uri)}: {_message(exc)}"
            ) from None

    def _ensure_ledger(self, conn: pymysql.connections.Connection[Any]) -> None:
        with conn.cursor() as cursor:
            cursor.execute(LEDGER_DDL)
        conn.commit()

    def open_unit(self, ctx: LoadContext) -> MySQLUnitWriter:
        conn = self._connect()
        key = ctx.key
        try:
            self._ensure_ledger(conn)
            with conn.cursor() as cursor:
                lock = "sluice:" + key_digest(key.pipeline, key.task, key.unit, "")[:40]
                cursor.execute("SELECT GET_LOCK(%s, %s)", (lock, _LOCK_WAIT_SECONDS))
                row = cursor.fetchone()
                if not row or row[0] != 1:
                    raise DestinationError(f"timed out waiting for the lock on unit {key.unit}")
        except pymysql.Error as exc:
            conn.close()
            raise DestinationError(f"MySQL: {_message(exc)}") from None
        except BaseException:
            conn.close()
            raise
        return MySQLUnitWriter(conn, ctx, self._connect)

    def loaded_units(self, pipeline: str, task: str, keys: Sequence[tuple[str, str]]) -> set[str]:
        conn = self._connect()
        try:
            self._ensure_ledger(conn)
            with conn.cursor() as cursor:
                cursor.execute(
                    f"SELECT unit_key, fingerprint FROM {q(LEDGER_TABLE)} "
                    "WHERE pipeline = %s AND task = %s",
                    (pipeline, task),
                )
                return loaded_among(keys, cursor.fetchall())
        except pymysql.Error as exc:
            raise DestinationError(f"MySQL: {_message(exc)}") from None
        finally:
            conn.close()

    def execute(self, sql: str, params: dict[str, object]) -> int:
        """Run a ``sql`` task; pymysql binds ``%(name)s`` placeholders (write ``%%`` for ``%``)."""
        conn = self._connect()
        try:
            with conn.cursor() as cursor:
                affected = cursor.execute(sql, params or None)
            conn.commit()
            return max(int(affected), 0)
        except pymysql.Error as exc:
            conn.rollback()
            raise DestinationError(f"sql task failed: {_message(exc)}") from None
        finally:
            conn.close()


class _Staging:
    """One TEMPORARY table that collects a stream of batches, widening as columns appear."""

    def __init__(self, writer: MySQLUnitWriter, name: str) -> None:
        self.writer = writer
        self.name = name
        self.fields: dict[str, pa.Field] = {}

    def load(self, batch: pa.RecordBatch) -> None:
        new = [f for f in batch.schema if f.name not in self.fields]
        if not self.fields:
            cols = ", ".join(f"{q(f.name)} {mysql_type(f.type)}" for f in batch.schema)
            self.writer.run(
                f"CREATE TEMPORARY TABLE {q(self.name)} "
                f"({q(_ORD)} BIGINT AUTO_INCREMENT PRIMARY KEY, {cols}) "
                "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
            )
        else:
            for statement in add_columns(q(self.name), new, mysql_type, quote="`"):
                self.writer.run(statement)
        self.fields.update({f.name: f for f in new})
        if batch.num_rows == 0:
            return
        with tempfile.NamedTemporaryFile(prefix="sluice-", suffix=".csv", delete=False) as handle:
            handle.write(load_data_bytes(batch))
        try:
            self.writer.run(
                f"LOAD DATA LOCAL INFILE %s INTO TABLE {q(self.name)} CHARACTER SET utf8mb4 "
                "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' "
                "LINES TERMINATED BY '\\n' "
                f"({', '.join(q(n) for n in batch.schema.names)})",
                (handle.name,),
            )
        finally:
            os.unlink(handle.name)


class MySQLUnitWriter:
    def __init__(
        self,
        conn: pymysql.connections.Connection[Any],
        ctx: LoadContext,
        connect: Callable[[], pymysql.connections.Connection[Any]],
    ) -> None:
        self.conn = conn
        self.ctx = ctx
        self.connect = connect
        self.mode = ctx.destination.mode
        self.keys = ctx.destination.keys
        self.data = _Staging(self, _STAGING)
        self.rejected = _Staging(self, _REJECTED_STAGING)
        self.checked: set[str] = set()
        self.idle = threading.Event()
        """Set while no statement runs on the connection (abort may come from another thread)."""
        self.idle.set()
        self.closing = threading.Lock()

    def run(self, sql: str, params: Sequence[object] | None = None) -> list[Any]:
        self.idle.clear()
        try:
            with self.conn.cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
        finally:
            self.idle.set()

    def already_loaded(self) -> bool:
        key = self.ctx.key
        rows = self.run(
            f"SELECT 1 FROM {q(LEDGER_TABLE)} WHERE unit_hash = %s",
            (key_digest(key.pipeline, key.task, key.unit, key.fingerprint),),
        )
        return bool(rows)

    def _columns(self, table: str) -> dict[str, str] | None:
        schema, name = split_table(table)
        rows = self.run(
            "SELECT column_name, column_type FROM information_schema.columns "
            "WHERE table_schema = COALESCE(%s, DATABASE()) AND table_name = %s "
            "ORDER BY ordinal_position",
            (schema, name),
        )
        return {r[0]: r[1] for r in rows} or None

    def _check_frozen(self, schema: pa.Schema) -> None:
        new_names = [n for n in schema.names if n not in self.checked]
        if not new_names:
            return
        self.checked.update(new_names)
        if self.ctx.destination.schema_policy != "freeze":
            return
        existing = self._columns(self.ctx.table)
        if existing is None:
            return
        new = [n for n in new_names if n not in existing]
        refuse_frozen_columns(new, self.ctx.table, "freeze", self.ctx.key.unit)

    def write(self, batch: pa.RecordBatch) -> None:
        try:
            self._check_frozen(batch.schema)
            self.data.load(batch)
        except pymysql.Error as exc:
            raise DestinationError(
                f"MySQL write to {self.ctx.table} failed: {_message(exc)}"
            ) from None

    def write_rejected(self, batch: pa.RecordBatch) -> None:
        batch = tag_rejects(batch, self.ctx)
        try:
            self.rejected.load(batch)
        except pymysql.Error as exc:
            raise DestinationError(f"MySQL quarantine write failed: {_message(exc)}") from None

    # commit ------------------------------------------------------------------------------

    def _ensure_table(self, table: str, fields: dict[str, pa.Field], keys: list[str]) -> None:
        """Create or widen a real table; runs before the transaction (DDL commits implicitly)."""
        existing = self._columns(table)
        if existing is None:
            cols = [f"{q(f.name)} {mysql_type(f.type, f.name in keys)}" for f in fields.values()]
            if keys:
                cols.append(f"UNIQUE KEY {q('sluice_merge_key')} ({', '.join(map(q, keys))})")
            self.run(
                f"CREATE TABLE IF NOT EXISTS {qt(table)} ({', '.join(cols)}) "
                "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
            )
            return
        missing = [f for f in fields.values() if f.name not in existing]
        for statement in add_columns(qt(table), missing, mysql_type, quote="`"):
            self.run(statement)

    def _check_unique_keys(self) -> None:
        schema, name = split_table(self.ctx.table)
        rows = self.run(
            "SELECT index_name, GROUP_CONCAT(column_name ORDER BY column_name SEPARATOR '\\0') "
            "FROM information_schema.statistics WHERE table_schema = COALESCE(%s, DATABASE()) "
            "AND table_name = %s AND non_unique = 0 GROUP BY index_name",
            (schema, name),
        )
        wanted = "\0".join(sorted(self.keys))
        if not any(r[1] == wanted for r in rows):
            raise SchemaMismatch(
                f"merge into {self.ctx.table} needs a PRIMARY KEY or UNIQUE index on exactly "
                f"({', '.join(self.keys)}); MySQL's ON DUPLICATE KEY UPDATE matches on it",
                unit=self.ctx.key.unit,
            )

    def commit(self, counts: WriteCounts) -> None:
        key = self.ctx.key
        table = qt(self.ctx.table)
        try:
            if self.data.fields:
                self._ensure_table(
                    self.ctx.table, self.data.fields, self.keys if self.mode == "merge" else []
                )
                if self.mode == "merge":
                    self._check_unique_keys()
            if self.rejected.fields:
                self._ensure_table(self.ctx.table + "__rejected", self.rejected.fields, [])
            self.conn.begin()
            if self.data.fields:
                cols = ", ".join(q(n) for n in self.data.fields)
                if self.mode == "replace":
                    self.run(f"DELETE FROM {table}")
                upsert = ""
                if self.mode == "merge":
                    updates = [n for n in self.data.fields if n not in self.keys] or self.keys[:1]
                    upsert = " ON DUPLICATE KEY UPDATE " + ", ".join(
                        f"{q(n)} = VALUES({q(n)})" for n in updates
                    )
                self.run(
                    f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {q(_STAGING)} "
                    f"ORDER BY {q(_ORD)}{upsert}"
                )
            if self.rejected.fields:
                cols = ", ".join(q(n) for n in self.rejected.fields)
                self.run(
                    f"INSERT INTO {qt(self.ctx.table + '__rejected')} ({cols}) "
                    f"SELECT {cols} FROM {q(_REJECTED_STAGING)} ORDER BY {q(_ORD)}"
                )
            self.run(
                ledger_insert(q(LEDGER_TABLE), lambda i, name: "%s", leading=("unit_hash",)),
                (
                    key_digest(key.pipeline, key.task, key.unit, key.fingerprint),
                    *ledger_values(self.ctx, counts),
                ),
            )
            self.conn.commit()
        except pymysql.Error as exc:
            self.abort()
            raise DestinationError(
                f"MySQL commit of {self.ctx.table} failed: {_message(exc)}"
            ) from None
        except BaseException:
            self.abort()
            raise
        finally:
            self._close()

    def abort(self) -> None:
        if not self.idle.is_set():
            # A statement stuck in the server (waiting for a table lock) is killed there, so
            # the unit's transaction ends when the run is cancelled, not when the lock goes.
            self._kill_running_statement()
            if not self.idle.wait(30):
                log.error("the statement on %s did not stop after KILL QUERY", self.ctx.table)
                return  # pymysql connections are not shared between threads
        with self.closing, contextlib.suppress(pymysql.Error):
            if self.conn.open:
                self.conn.rollback()
        self._close()

    def _kill_running_statement(self) -> None:
        with contextlib.suppress(pymysql.Error, DestinationError):
            killer = self.connect()
            try:
                with killer.cursor() as cursor:
                    cursor.execute(f"KILL QUERY {int(self.conn.thread_id())}")
            finally:
                killer.close()

    def _close(self) -> None:
        # Closing the session drops the TEMPORARY tables and releases GET_LOCK.
        with self.closing, contextlib.suppress(pymysql.Error):
            if self.conn.open:
                self.conn.close()
