"""Through the real stack into BigQuery (bqemulator): the loader reads SLUICE_BIGQUERY__*."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.loader.settings import BigQuerySettings
from services.loader.sinks.bigquery_sink import make_client, parse_uri
from tests.conftest import trigger, wait_for_run, write_pipeline
from tests.integration.load.conftest import BQ_REAL_PROJECT

PIPELINE = """\
name: to_bq
tasks:
  - id: sales
    source:
      uri: file://{data}/*.csv
      format: csv
    destination:
      uri: {uri}
      table: sales
      partition: {{field: day}}
      cluster_by: [store]
  - id: summary
    type: sql
    depends_on: [sales]
    destination: {{uri: {uri}}}
    sql: "UPDATE `{dataset}.sales` SET note = @run_id WHERE store = 1"
"""


@pytest.mark.skipif(bool(BQ_REAL_PROJECT), reason="the stack test uses the emulator only")
def test_pipeline_into_bigquery(
    stack_factory: Any, tmp_path: Path, bq_uri: str, bigquery_settings: BigQuerySettings
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for f in range(2):
        lines = ["id,store,day,note"] + [
            f"{f}{i},{i % 3},2026-11-0{i % 9 + 1},x" for i in range(50)
        ]
        (data / f"s{f}.csv").write_text("\n".join(lines) + "\n")
    pipelines = tmp_path / "pipelines"
    dataset = parse_uri(bq_uri).dataset
    write_pipeline(pipelines, PIPELINE.format(data=data, uri=bq_uri, dataset=dataset))
    assert bigquery_settings.api_endpoint
    stack = stack_factory(
        pipelines,
        service_env={"loader": {"SLUICE_BIGQUERY__API_ENDPOINT": bigquery_settings.api_endpoint}},
    )

    run_id = trigger(stack.url, "to_bq")
    run = wait_for_run(stack.url, run_id, timeout=240)
    assert run["status"] == "succeeded", [t.get("error") for t in run["tasks"]]
    client = make_client(parse_uri(bq_uri), bigquery_settings)
    table = f"`{client.project}.{dataset}.sales`"
    [(total, tagged)] = [
        tuple(r.values())
        for r in client.query(f"SELECT count(*), countif(note = '{run_id}') FROM {table}").result()
    ]
    assert (total, tagged) == (100, 34)
    assert client.get_table(f"{client.project}.{dataset}.sales").clustering_fields == ["store"]

    again = wait_for_run(stack.url, trigger(stack.url, "to_bq"), timeout=240)
    assert again["status"] == "succeeded"
    assert again["totals"]["rows_loaded"] == 0
