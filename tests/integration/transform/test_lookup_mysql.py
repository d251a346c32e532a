"""lookup against a table in a MariaDB/MySQL destination (real server, fresh database)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from services.transformer.steps import UnitContext
from tests.conftest import mysql_conn
from tests.unit.transform.conftest import transform


@pytest.fixture
def currencies(mysql_db: str, mysql_url: str) -> str:
    """A rates table in a fresh MariaDB database; the database's URI."""
    conn = mysql_conn(mysql_db)
    with conn.cursor() as cursor:
        cursor.execute("CREATE TABLE currencies (code VARCHAR(3), rate DOUBLE)")
        cursor.execute("INSERT INTO currencies VALUES ('EUR', 1.0), ('CHF', 1.05)")
    conn.commit()
    conn.close()
    return mysql_url


def test_lookup_reads_a_mysql_destination_table(currencies: str) -> None:
    ctx = UnitContext(file="f.csv", unit="u", destination_uri=currencies)
    t = transform({"lookup": {"table": "currencies", "on": {"cur": "code"}}}, context=ctx)
    result = t.apply(pa.RecordBatch.from_pydict({"cur": ["CHF", "XXX", "EUR"]}), 0)
    assert result.good is not None
    assert result.good.to_pydict() == {"cur": ["CHF", "XXX", "EUR"], "rate": [1.05, None, 1.0]}
