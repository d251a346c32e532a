"""lookup against a table in a MariaDB/MySQL destination (real server, fresh database)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pyarrow as pa
import pymysql
import pytest

from services.transformer.steps import UnitContext
from tests.unit.transform.conftest import transform


@pytest.fixture
def mysql_db() -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:10]}"
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
    with conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        cursor.execute(f"CREATE TABLE `{name}`.currencies (code VARCHAR(3), rate DOUBLE)")
        cursor.execute(f"INSERT INTO `{name}`.currencies VALUES ('EUR', 1.0), ('CHF', 1.05)")
    yield name
    with conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE `{name}`")
    conn.close()


def test_lookup_reads_a_mysql_destination_table(mysql_db: str) -> None:
    ctx = UnitContext(file="f.csv", unit="u", destination_uri=f"mysql://root@127.0.0.1/{mysql_db}")
    t = transform({"lookup": {"table": "currencies", "on": {"cur": "code"}}}, context=ctx)
    result = t.apply(pa.RecordBatch.from_pydict({"cur": ["CHF", "XXX", "EUR"]}), 0)
    assert result.good is not None
    assert result.good.to_pydict() == {"cur": ["CHF", "XXX", "EUR"], "rate": [1.05, None, 1.0]}
