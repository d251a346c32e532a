"""End to end: a zip of mixed csv / xlsx members into PostgreSQL through the four services."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path
from typing import Any

import openpyxl

from tests.conftest import pg_query, trigger, wait_for_run, write_pipeline


def xlsx_part(rows: list[list[Any]]) -> bytes:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Shop sales export"])  # a title row, skipped with header_row
    for row in rows:
        ws.append(row)
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


def make_drop(directory: Path) -> Path:
    directory.mkdir(parents=True)
    path = directory / "week.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "mon.csv",
            'Shop sales export\nreceipt;amount;day\nR1;1,50;2026-11-02\nR2;"2,25";2026-11-02\n',
        )
        archive.writestr(
            "tue.xlsx",
            xlsx_part(
                [
                    ["receipt", "amount", "day"],
                    ["R3", 4.75, dt.datetime(2026, 11, 3)],
                    ["R4", 10, dt.datetime(2026, 11, 3)],
                ]
            ),
        )
        archive.writestr("__MACOSX/._mon.csv", b"\x00\x05junk")
        archive.writestr("readme.txt", "not data")
    return path


PIPELINE = """\
name: weekly
tasks:
  - id: sales
    source:
      uri: file://{drop}/*.zip
      members: "*.[cx][sl]*"
      options: {{header_row: 2, decimal: ",", column_types: {{day: date}}}}
    transform:
      - cast: {{amount: "decimal(12,2)"}}
    destination:
      uri: {dsn}
      table: {schema}.sales
"""


def test_zip_of_csv_and_xlsx_loads_once_into_postgres(
    stack_factory: Any, tmp_path: Path, pg_dsn: str, pg_schema: str
) -> None:
    drop = make_drop(tmp_path / "drop").parent
    pipelines = tmp_path / "pipelines"
    write_pipeline(pipelines, PIPELINE.format(drop=drop, dsn=pg_dsn, schema=pg_schema), "w.yaml")
    stack = stack_factory(pipelines)

    run = wait_for_run(stack.url, trigger(stack.url, "weekly"))
    assert run["status"] == "succeeded", run
    units = run["tasks"][0]["units"]
    assert sorted(u["unit"].rsplit("!", 1)[-1] for u in units) == ["mon.csv", "tue.xlsx"]
    assert sum(u["rows_loaded"] for u in units) == 4

    loaded = pg_query(
        pg_dsn, f'SELECT receipt, amount, day FROM "{pg_schema}".sales ORDER BY receipt'
    )
    assert [(r, float(a), d) for r, a, d in loaded] == [
        ("R1", 1.5, dt.date(2026, 11, 2)),
        ("R2", 2.25, dt.date(2026, 11, 2)),
        ("R3", 4.75, dt.date(2026, 11, 3)),
        ("R4", 10.0, dt.date(2026, 11, 3)),
    ]
    columns = pg_query(
        pg_dsn,
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
        "AND table_name = 'sales' ORDER BY ordinal_position",
        (pg_schema,),
    )
    assert [c for (c,) in columns] == ["receipt", "amount", "day"]  # no lineage columns

    again = wait_for_run(stack.url, trigger(stack.url, "weekly"))
    assert again["status"] == "succeeded"
    assert [u["status"] for u in again["tasks"][0]["units"]] == ["skipped", "skipped"]
    assert pg_query(pg_dsn, f'SELECT count(*) FROM "{pg_schema}".sales') == [(4,)]
