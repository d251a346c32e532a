"""Cron fire times across daylight-saving changes, and the scheduler's catchup rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import REGISTRY

from services.orchestrator.registry import PipelineRegistry
from services.orchestrator.schedule import fire_times_between, next_fire_times
from services.orchestrator.scheduler import Scheduler
from services.orchestrator.settings import ExecutionSettings, OrchestratorSettings, StateSettings
from services.orchestrator.state.store import Store

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def local(times: list[datetime], zone: ZoneInfo) -> list[str]:
    return [t.astimezone(zone).strftime("%m-%d %H:%M%z") for t in times]


def test_daily_keeps_wall_clock_time_across_both_changes() -> None:
    after = datetime(2026, 3, 27, tzinfo=UTC)
    times = fire_times_between("0 5 * * *", "Europe/Berlin", after, after + timedelta(days=3))
    assert local(times, BERLIN) == ["03-27 05:00+0100", "03-28 05:00+0100", "03-29 05:00+0200"]
    assert [t.hour for t in times] == [4, 4, 3]  # UTC moves, the wall clock does not
    after = datetime(2026, 10, 24, tzinfo=UTC)
    times = fire_times_between("0 5 * * *", "Europe/Berlin", after, after + timedelta(days=2))
    assert local(times, BERLIN) == ["10-24 05:00+0200", "10-25 05:00+0100"]


def test_time_in_the_spring_gap_runs_once_right_after_the_gap() -> None:
    after = datetime(2026, 3, 28, 12, tzinfo=UTC)
    times = fire_times_between("30 2 * * *", "Europe/Berlin", after, after + timedelta(days=2))
    assert local(times, BERLIN) == ["03-29 03:00+0200", "03-30 02:30+0200"]


def test_time_repeated_in_autumn_runs_once_for_a_daily_job() -> None:
    after = datetime(2026, 10, 24, 12, tzinfo=UTC)
    times = fire_times_between("30 2 * * *", "Europe/Berlin", after, after + timedelta(days=1))
    assert local(times, BERLIN) == ["10-25 02:30+0200"]


def test_hourly_job_runs_every_real_hour_on_both_change_days() -> None:
    day = datetime(2026, 3, 29, tzinfo=BERLIN)
    spring = fire_times_between(
        "@hourly", "Europe/Berlin", day - timedelta(seconds=1), day + timedelta(hours=23)
    )
    assert len(spring) == 23  # the day has 23 hours
    assert len(set(spring)) == 23
    day = datetime(2026, 10, 25, tzinfo=BERLIN)
    autumn = fire_times_between(
        "@hourly",
        "Europe/Berlin",
        day - timedelta(seconds=1),
        datetime(2026, 10, 26, tzinfo=BERLIN) - timedelta(seconds=1),
    )
    assert len(autumn) == 25  # 02:00 happens twice and both run
    gaps = {b - a for a, b in pairwise(autumn)}
    assert gaps == {timedelta(hours=1)}


def test_other_zone_and_aliases() -> None:
    after = datetime(2026, 11, 1, 3, tzinfo=UTC)  # New York falls back at 06:00 UTC
    times = next_fire_times("@daily", "America/New_York", after, 2)
    assert local(times, NEW_YORK) == ["11-01 00:00-0400", "11-02 00:00-0500"]
    weekly = next_fire_times("@weekly", "UTC", datetime(2026, 11, 24, tzinfo=UTC), 1)
    assert weekly[0] == datetime(2026, 11, 29, tzinfo=UTC)  # Sunday midnight


# scheduler -----------------------------------------------------------------------------

PIPELINE = """\
name: hourly
schedule: "@hourly"
timezone: Europe/Berlin
catchup: {catchup}
tasks:
  - id: noop
    type: job
    command: ["true"]
"""


def make_scheduler(tmp_path: Path, catchup: str, max_queued: int = 50) -> Scheduler:
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir(exist_ok=True)
    (pipelines / "p.yaml").write_text(PIPELINE.format(catchup=catchup))
    settings = OrchestratorSettings(
        state=StateSettings(url=f"sqlite:///{tmp_path / 'state.db'}"),
        execution=ExecutionSettings(max_queued_runs=max_queued),
    )
    store = Store(settings.state.url)
    store.migrate()
    registry = PipelineRegistry(pipelines)
    registry.reload()
    return Scheduler(settings, store, registry)


def scheduled_dates(scheduler: Scheduler) -> list[str]:
    runs = scheduler.store.list_runs(pipeline="hourly", limit=500)
    return sorted(r["logical_date"][11:16] for r in runs if r["trigger"] == "schedule")


T0 = datetime(2026, 11, 24, 8, 0, 30, tzinfo=UTC)


def test_new_pipeline_starts_now_and_each_fire_time_runs_once(tmp_path: Path) -> None:
    scheduler = make_scheduler(tmp_path, "all")
    assert scheduler.tick(T0) == []  # no backfill of a pipeline's whole past
    assert len(scheduler.tick(T0 + timedelta(hours=1))) == 1
    assert scheduler.tick(T0 + timedelta(hours=1, seconds=5)) == []
    assert scheduled_dates(scheduler) == ["09:00"]


@pytest.mark.parametrize(
    ("catchup", "expected"),
    [
        ("all", ["09:00", "10:00", "11:00", "12:00"]),
        ("latest", ["09:00", "12:00"]),
        ("none", ["09:00"]),
    ],
)
def test_catchup_after_downtime(tmp_path: Path, catchup: str, expected: list[str]) -> None:
    scheduler = make_scheduler(tmp_path, catchup)
    scheduler.tick(T0)
    scheduler.tick(T0 + timedelta(hours=1))
    # The orchestrator was down for three hours; a fresh scheduler has no memory of its cursor.
    later = make_scheduler(tmp_path, catchup)
    later.tick(T0 + timedelta(hours=4, minutes=10))
    assert scheduled_dates(later) == expected


def test_catchup_none_still_runs_a_time_just_missed(tmp_path: Path) -> None:
    scheduler = make_scheduler(tmp_path, "none")
    scheduler.tick(T0)
    scheduler.tick(T0 + timedelta(hours=1, minutes=2))  # within the misfire grace
    assert scheduled_dates(scheduler) == ["09:00"]


def test_queue_cap_holds_back_scheduled_runs_until_there_is_room(tmp_path: Path) -> None:
    scheduler = make_scheduler(tmp_path, "all", max_queued=2)
    scheduler.tick(T0)
    scheduler.tick(T0 + timedelta(hours=5, minutes=1))
    assert scheduled_dates(scheduler) == ["09:00", "10:00"]
    lag = REGISTRY.get_sample_value("sluice_schedule_lag_seconds", {"pipeline": "hourly"})
    assert lag == pytest.approx(timedelta(hours=2, minutes=1, seconds=30).total_seconds())
    queued = scheduler.store.list_runs(pipeline="hourly", status="queued")
    scheduler.store.request_cancel(queued[0]["run_id"])
    scheduler.tick(T0 + timedelta(hours=5, minutes=2))
    assert scheduled_dates(scheduler) == ["09:00", "10:00", "11:00"]


def test_a_follower_taking_over_keeps_the_first_seen_time(tmp_path: Path) -> None:
    follower = make_scheduler(tmp_path, "all")
    follower.observe(T0)  # sees the new pipeline while another replica leads
    # The leader died before scheduling anything; the follower leads from 10:05.
    follower.tick(T0 + timedelta(hours=2, minutes=5))
    assert scheduled_dates(follower) == ["09:00", "10:00"]
