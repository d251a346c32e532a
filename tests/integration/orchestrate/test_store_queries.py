"""State-store queries that alerts rely on, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.orchestrator.state.store import Store


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    store = Store(url)
    store.migrate()
    yield store
    store.engine.dispose()


def add_run(store: Store, pipeline: str = "sales", unit_statuses: tuple[str, ...] = ()) -> str:
    """A manual run of ``pipeline`` with one unit per status; its id."""
    run = store.create_run(
        pipeline=pipeline,
        trigger="manual",
        logical_date=datetime.now(UTC),
        params={},
        tasks=[("load", "etl")],
    ).run
    for number, status in enumerate(unit_statuses):
        store.record_unit(
            run["run_id"], "load", unit_key=f"file{number}.csv", fingerprint="f", status=status
        )
    return str(run["run_id"])


def test_units_loaded_since_counts_succeeded_units_of_the_pipeline(store: Store) -> None:
    add_run(store, "sales", ("succeeded", "failed", "skipped"))
    add_run(store, "sales", ("succeeded",))
    add_run(store, "stock", ("succeeded",))
    # A local-time bound (Berlin is ahead of UTC) must compare as the same instant in UTC.
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).astimezone(ZoneInfo("Europe/Berlin"))
    assert store.units_loaded_since("sales", an_hour_ago) == 2
    assert store.units_loaded_since("stock", an_hour_ago) == 1
    assert store.units_loaded_since("other", an_hour_ago) == 0
    in_ten_minutes = (datetime.now(UTC) + timedelta(minutes=10)).astimezone(
        ZoneInfo("America/New_York")
    )
    assert store.units_loaded_since("sales", in_ten_minutes) == 0


def test_a_run_we_finished_is_still_ours_and_an_adopted_one_is_not(store: Store) -> None:
    run_id = add_run(store)
    assert store.claim_run(run_id, "me")
    store.set_run_status(run_id, "succeeded")  # its alert hooks still run on this replica
    assert store.heartbeat("me", [run_id]) == (set(), set())
    other = add_run(store)
    assert store.claim_run(other, "me")
    store.requeue_run(other)  # e.g. given back to the queue: no longer ours
    assert store.heartbeat("me", [other]) == (set(), {other})
