"""SQL text helpers shared by the SQL sinks: identifier quoting and Arrow type mapping.

Every table and column name that reaches SQL goes through :func:`quote_ident`, so a column named
``"; DROP TABLE x; --`` is just a strange column name.
"""

from __future__ import annotations

import pyarrow as pa


def quote_ident(name: str, quote: str = '"') -> str:
    """Quote one identifier, doubling embedded quote characters."""
    return quote + name.replace(quote, quote * 2) + quote


def quote_table(name: str, quote: str = '"') -> str:
    """Quote ``table`` or ``schema.table``."""
    return ".".join(quote_ident(part, quote) for part in name.split(".", 1))


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
    if pa.types.is_null(arrow_type):
        return "text"
    return "text"
