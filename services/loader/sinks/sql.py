"""SQL text helpers shared by the SQL sinks: identifier quoting and Arrow type mapping.

Every table and column name that reaches SQL goes through :func:`quote_ident`, so a column named
``"; DROP TABLE x; --`` is just a strange column name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

import pyarrow as pa


def quote_ident(name: str, quote: str = '"') -> str:
    """Quote one identifier, doubling embedded quote characters."""
    return quote + name.replace(quote, quote * 2) + quote


def add_columns(
    table: str,
    fields: Iterable[pa.Field],
    type_of: Callable[[pa.DataType], str],
    quote: str = '"',
) -> list[str]:
    """One ``ALTER TABLE ... ADD COLUMN`` per field: ``table`` already quoted, each column typed
    by ``type_of`` (the dialect's type map)."""
    return [
        f"ALTER TABLE {table} ADD COLUMN {quote_ident(f.name, quote)} {type_of(f.type)}"
        for f in fields
    ]


def quote_table(name: str, quote: str = '"') -> str:
    """Quote ``table`` or ``schema.table``."""
    return ".".join(quote_ident(part, quote) for part in name.split(".", 1))


def split_table(name: str) -> tuple[str | None, str]:
    """``schema.table`` as ``(schema, table)``; ``table`` alone as ``(None, table)``."""
    schema, dot, table = name.partition(".")
    return (schema, table) if dot else (None, name)


def derived_name(table: str, suffix: str, limit: int = 63) -> str:
    """A sibling table name (``<table><suffix>``) that fits the database's identifier limit."""
    name = table + suffix
    if len(name.encode()) <= limit:
        return name
    digest = hashlib.sha256(table.encode()).hexdigest()[:8]
    return table.encode()[: limit - len(suffix) - 9].decode(errors="ignore") + "_" + digest + suffix


def merge_statement(target: str, source: str, keys: Sequence[str], columns: Sequence[str]) -> str:
    """``MERGE`` of ``source`` (a query, one row per key) into ``target`` on ``keys``.

    All names come quoted. Keys match with ``IS NOT DISTINCT FROM`` so that null keys merge too;
    a table made only of key columns still needs an UPDATE clause, so it sets the first key.
    """
    on = " AND ".join(f"t.{k} IS NOT DISTINCT FROM s.{k}" for k in keys)
    updates = ", ".join(f"{c} = s.{c}" for c in columns if c not in keys) or (
        f"{keys[0]} = s.{keys[0]}"
    )
    return (
        f"MERGE INTO {target} AS t USING ({source}) AS s ON {on} "
        f"WHEN MATCHED THEN UPDATE SET {updates} "
        f"WHEN NOT MATCHED THEN INSERT ({', '.join(columns)}) "
        f"VALUES ({', '.join('s.' + c for c in columns)})"
    )


def postgres_type(arrow_type: pa.DataType) -> str:
    """The PostgreSQL column type for an Arrow type (text for anything exotic)."""
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if (
        pa.types.is_int8(arrow_type)
        or pa.types.is_int16(arrow_type)
        or pa.types.is_uint8(arrow_type)
    ):
        return "smallint"
    if pa.types.is_int32(arrow_type) or pa.types.is_uint16(arrow_type):
        return "integer"
    if pa.types.is_integer(arrow_type):
        return "bigint"
    if pa.types.is_float32(arrow_type):
        return "real"
    if pa.types.is_floating(arrow_type):
        return "double precision"
    if pa.types.is_decimal(arrow_type):
        return f"numeric({arrow_type.precision},{arrow_type.scale})"
    if pa.types.is_date(arrow_type):
        return "date"
    if pa.types.is_timestamp(arrow_type):
        return "timestamptz" if arrow_type.tz else "timestamp"
    if pa.types.is_time(arrow_type):
        return "time"
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return "bytea"
    return "text"


def mysql_type(arrow_type: pa.DataType, key: bool = False) -> str:
    """The MySQL/MariaDB column type for an Arrow type; key columns get an indexable VARCHAR."""
    if pa.types.is_boolean(arrow_type):
        return "TINYINT(1)"
    if pa.types.is_int8(arrow_type):
        return "TINYINT"
    if pa.types.is_int16(arrow_type) or pa.types.is_uint8(arrow_type):
        return "SMALLINT"
    if pa.types.is_int32(arrow_type) or pa.types.is_uint16(arrow_type):
        return "INT"
    if pa.types.is_uint64(arrow_type):
        return "BIGINT UNSIGNED"
    if pa.types.is_integer(arrow_type):
        return "BIGINT"
    if pa.types.is_float32(arrow_type):
        return "FLOAT"
    if pa.types.is_floating(arrow_type):
        return "DOUBLE"
    if pa.types.is_decimal(arrow_type):
        return f"DECIMAL({min(arrow_type.precision, 65)},{min(arrow_type.scale, 30)})"
    if pa.types.is_date(arrow_type):
        return "DATE"
    if pa.types.is_timestamp(arrow_type):
        return "DATETIME(6)"
    if pa.types.is_time(arrow_type):
        return "TIME(6)"
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return "VARBINARY(255)" if key else "LONGBLOB"
    return "VARCHAR(255)" if key else "LONGTEXT"
