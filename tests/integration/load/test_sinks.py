"""Every SQL destination, driven like the loader drives it: modes, ledger, schema, quarantine."""

from __future__ import annotations

import datetime as dt
import decimal

import psycopg
import pyarrow as pa
import pytest

from services.common import lineage
from services.common.errors import SchemaMismatch
from services.common.spec.destination import Destination
from services.common.spec.render import SecretResolver
from services.loader.sinks import sink_for
from services.loader.sinks.base import LoadContext, UnitKey, WriteCounts
from tests.conftest import my_query, pg_query
from tests.integration.load.conftest import Target, load


def sales(ids: list[int], amount: float = 1.5, **extra: list[object]) -> pa.RecordBatch:
    columns: dict[str, object] = {
        "id": pa.array(ids, pa.int64()),
        "name": pa.array([f"n{i}" if i % 3 else None for i in ids], pa.string()),
        "amount": pa.array([decimal.Decimal(str(amount + i)) for i in ids], pa.decimal128(12, 2)),
        "sold_at": pa.array(
            [dt.datetime(2026, 11, 1, 10, i % 60) for i in ids], pa.timestamp("us")
        ),
        "ok": pa.array([i % 2 == 0 for i in ids]),
    }
    columns.update({k: pa.array(v) for k, v in extra.items()})
    return pa.RecordBatch.from_pydict(columns)


def count(target: Target, suffix: str = "") -> int:
    return int(target.rows(f"SELECT count(*) FROM {target.qualified(suffix)}")[0][0])


def test_append_loads_each_unit_once(target: Target) -> None:
    assert load(target.uri, target.table, [sales([1, 2, 3]), sales([4, 5])], unit="a")
    assert load(target.uri, target.table, [sales([6])], unit="b")
    assert not load(target.uri, target.table, [sales([1, 2, 3])], unit="a")
    assert count(target) == 6
    rows = target.rows(f"SELECT id, name, amount, ok FROM {target.qualified()} ORDER BY id")
    assert rows[0][0] == 1 and rows[0][1] == "n1" and rows[2][1] is None
    assert decimal.Decimal(str(rows[1][2])) == decimal.Decimal("3.50")
    assert bool(rows[1][3]) is True
    sink = sink_for(target.uri, SecretResolver({}))
    assert sink.loaded_units("p", "t", [("a", "f1"), ("b", "f1"), ("b", "other")]) == {"a", "b"}


def test_a_new_fingerprint_loads_again(target: Target) -> None:
    assert load(target.uri, target.table, [sales([1])], unit="a", fingerprint="v1")
    assert load(target.uri, target.table, [sales([1])], unit="a", fingerprint="v2")
    assert count(target) == 2


def test_replace_swaps_the_contents(target: Target) -> None:
    load(target.uri, target.table, [sales([1, 2, 3])], unit="a")
    load(target.uri, target.table, [sales([7]), sales([8])], unit="b", mode="replace")
    assert [r[0] for r in target.rows(f"SELECT id FROM {target.qualified()} ORDER BY id")] == [
        7,
        8,
    ]


def test_merge_updates_by_key_and_the_last_row_of_a_unit_wins(target: Target) -> None:
    load(target.uri, target.table, [sales([1, 2, 3])], unit="a", mode="merge", keys=["id"])
    load(
        target.uri,
        target.table,
        [sales([2, 4], amount=100.0), sales([4], amount=500.0)],
        unit="b",
        mode="merge",
        keys=["id"],
    )
    rows = target.rows(f"SELECT id, amount FROM {target.qualified()} ORDER BY id")
    assert [r[0] for r in rows] == [1, 2, 3, 4]
    assert decimal.Decimal(str(rows[1][1])) == decimal.Decimal("102.00")
    assert decimal.Decimal(str(rows[3][1])) == decimal.Decimal("504.00")


def test_schema_evolves_or_is_refused(target: Target) -> None:
    load(target.uri, target.table, [sales([1])], unit="a")
    load(target.uri, target.table, [sales([2], region=["north"])], unit="b")
    rows = target.rows(f"SELECT id, region FROM {target.qualified()} ORDER BY id")
    assert rows == [(1, None), (2, "north")]
    with pytest.raises(SchemaMismatch, match=r"'channel'.*freeze"):
        load(target.uri, target.table, [sales([3], channel=["web"])], unit="c", schema="freeze")
    assert count(target) == 2


def test_hostile_identifiers_are_just_names(target: Target) -> None:
    evil = '"; DROP TABLE x; --'
    batch = pa.RecordBatch.from_pydict({evil: ["boom"], "a`b": [1]})
    load(target.uri, target.table + "_evil", [batch])
    column = target.quote + evil.replace(target.quote, target.quote * 2) + target.quote
    assert target.rows(f"SELECT {column} FROM {target.qualified('_evil')}") == [("boom",)]


def test_rejected_rows_go_to_quarantine_with_reason_and_run(target: Target) -> None:
    rejected = pa.RecordBatch.from_pydict(
        {
            "id": ["x"],
            lineage.CHECK: ["cast"],
            lineage.COLUMN: ["id"],
            lineage.REASON: ["'x' is not an int64"],
            lineage.LINE: pa.array([7], pa.int64()),
        }
    )
    load(target.uri, target.table, [sales([1])], rejected=[rejected], run_id="run-42")
    rows = target.rows(
        f"SELECT id, {lineage.REASON}, {lineage.LINE}, {lineage.RUN_ID}, {lineage.UNIT} "
        f"FROM {target.qualified('__rejected')}"
    )
    assert rows == [("x", "'x' is not an int64", 7, "run-42", "u1")]
    assert count(target) == 1


def test_a_failed_unit_leaves_nothing(target: Target) -> None:
    load(target.uri, target.table, [sales([1])], unit="a")
    with pytest.raises(SchemaMismatch):
        load(
            target.uri,
            target.table,
            [sales([2, 3]), sales([4], late=["x"])],
            unit="b",
            schema="freeze",
        )
    assert count(target) == 1
    assert load(target.uri, target.table, [sales([2, 3])], unit="b")
    assert count(target) == 3


def test_sql_task_binds_parameters(target: Target) -> None:
    load(target.uri, target.table, [sales([1, 2, 3])])
    sink = sink_for(target.uri, SecretResolver({}))
    placeholder = {"postgresql": "%(ds)s", "mariadb": "%(ds)s", "duckdb": "$ds"}[target.kind]
    affected = sink.execute(
        f"UPDATE {target.qualified()} SET name = {placeholder} WHERE id > 1",
        {"ds": "2026-11-24'; DROP TABLE sales; --"},
    )
    assert affected == 2
    rows = target.rows(f"SELECT name FROM {target.qualified()} WHERE id = 3")
    assert rows == [("2026-11-24'; DROP TABLE sales; --",)]


def test_readers_see_the_old_rows_until_a_replace_commits(target: Target) -> None:
    if target.kind == "duckdb":
        pytest.skip("DuckDB has one writing process; readers open the file between units")
    load(target.uri, target.table, [sales([1, 2, 3])], unit="a")
    destination = Destination.model_validate(
        {"uri": target.uri, "table": target.table, "mode": "replace"}
    )
    sink = sink_for(target.uri, SecretResolver({}))
    ctx = LoadContext(UnitKey("p", "t", "b", "f1"), "run-2", destination, target.table)
    writer = sink.open_unit(ctx)
    assert not writer.already_loaded()
    writer.write(sales([7, 8]))
    writer.write(sales([9]))
    assert count(target) == 3  # mid-unit: the old contents, not an empty table
    writer.commit(WriteCounts(rows_loaded=3))
    assert [r[0] for r in target.rows(f"SELECT id FROM {target.qualified()} ORDER BY id")] == [
        7,
        8,
        9,
    ]


def test_postgres_replace_keeps_dependent_views_working(
    pg_dsn: str, pg_schema: str, pg_url: str
) -> None:
    load(pg_url, "sales", [sales([1, 2, 3])], unit="a")
    pg_query_commit(
        pg_dsn, f'CREATE VIEW "{pg_schema}".big_sales AS SELECT id FROM "{pg_schema}".sales'
    )
    load(pg_url, "sales", [sales([7, 8])], unit="b", mode="replace")
    rows = pg_query(pg_dsn, f'SELECT id FROM "{pg_schema}".big_sales ORDER BY id')
    assert rows == [(7,), (8,)]


def test_postgres_replace_keeps_grants(pg_dsn: str, pg_schema: str, pg_url: str) -> None:
    load(pg_url, "sales", [sales([1, 2, 3])], unit="a")
    pg_query_commit(pg_dsn, f'GRANT SELECT ON "{pg_schema}".sales TO PUBLIC')
    load(pg_url, "sales", [sales([7, 8])], unit="b", mode="replace")
    acl = pg_query(
        pg_dsn,
        "SELECT relacl::text FROM pg_class WHERE oid = %s::regclass",
        (f'"{pg_schema}".sales',),
    )
    assert acl[0][0] is not None and "=r/" in acl[0][0]
    assert pg_query(pg_dsn, f'SELECT count(*) FROM "{pg_schema}".sales') == [(2,)]


def test_mysql_merge_needs_a_unique_key_on_the_keys(mysql_db: str, mysql_url: str) -> None:
    load(mysql_url, "sales", [sales([1, 2])], unit="a")  # created by append: no unique key
    with pytest.raises(SchemaMismatch, match=r"PRIMARY KEY or UNIQUE index on exactly \(id\)"):
        load(mysql_url, "sales", [sales([2, 3])], unit="b", mode="merge", keys=["id"])
    assert my_query(mysql_db, "SELECT count(*) FROM sales") == [(2,)]


def pg_query_commit(dsn: str, sql: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.encode())
